"""Rate limiting per API key: a token bucket each, RESOURCE_EXHAUSTED with RetryInfo past it.

server.py places this after ErrorInterceptor, so the RateLimited it raises leaves as the
documented status with a google.rpc.RetryInfo delay, and before AuthInterceptor, so a flood is
refused before any key lookup. The bucket is keyed by the SHA-256 of the bearer token, which
is how the store knows the key, so the key itself is never kept; calls without one share a
bucket. Health checks
are never limited: a load balancer's probe must not fail because a client is busy.

The decision is made when the call arrives, before its request is read: an allowed call runs
its own handler untouched, so the limiter adds no wrapper to the calls it lets through.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NoReturn

import grpc

from vaultd.api.auth import HEALTH_PREFIX, bearer_token
from vaultd.core.errors import RateLimited, Unauthenticated
from vaultd.core.ratelimit import TokenBuckets


def bucket_key(metadata: Sequence[tuple[str, Any]] | None) -> bytes:
    """The SHA-256 of the bearer token (what identifies an API key in the store), or b"" for
    a call without a well-formed one, which AuthInterceptor refuses next anyway."""
    try:
        return hashlib.sha256(bearer_token(metadata).encode()).digest()
    except Unauthenticated:
        return b""


class RateLimitInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    def __init__(self, buckets: TokenBuckets[bytes]) -> None:
        self._buckets = buckets

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if (
            handler is None
            or handler.unary_unary is None
            or handler_call_details.method.startswith(HEALTH_PREFIX)
        ):
            return handler
        wait = self._buckets.take(bucket_key(handler_call_details.invocation_metadata))
        if not wait:
            return handler

        async def refuse(request: Any, context: grpc.aio.ServicerContext) -> NoReturn:
            raise RateLimited(wait)

        return grpc.unary_unary_rpc_method_handler(
            refuse,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
