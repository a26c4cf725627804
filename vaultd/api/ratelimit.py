"""Rate limiting per API key: a token bucket each, RESOURCE_EXHAUSTED with RetryInfo past it.

server.py places this inside ErrorMapping, so the RateLimited it raises leaves as the
documented status with a google.rpc.RetryInfo delay, and outside Authentication, so a flood is
refused before any key lookup. The bucket is keyed by the SHA-256 of the bearer token, which
is how the store knows the key, so the key itself is never kept; calls without one are kept
apart by peer address. FailedAuthentications (used by Authentication) limits failed
authentications per peer, whatever token each call presents. Health checks
are never limited: a load balancer's probe must not fail because a client is busy.

The decision is made when the call starts, before its request is parsed or its key looked up.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import grpc

from vaultd.api.auth import HEALTH_PREFIX, bearer_token
from vaultd.api.authlimit import peer_host
from vaultd.core.errors import RateLimited, Unauthenticated
from vaultd.core.ratelimit import TokenBuckets


def bucket_key(metadata: Sequence[tuple[str, Any]] | None, peer: str = "") -> bytes:
    """The SHA-256 of the bearer token (what identifies an API key in the store), or, for a
    call without a well-formed one, its peer's address: callers without a key do not share
    one bucket, so one of them cannot starve the others."""
    try:
        return hashlib.sha256(bearer_token(metadata).encode()).digest()
    except Unauthenticated:
        return b"peer:" + peer_host(peer).encode()


class RateLimit:
    def __init__(self, buckets: TokenBuckets[bytes]) -> None:
        self._buckets = buckets

    def wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        if handler.unary_unary is None or method.startswith(HEALTH_PREFIX):
            return handler
        behavior = handler.unary_unary
        buckets = self._buckets

        async def limited(request: Any, context: grpc.aio.ServicerContext) -> Any:
            wait = buckets.take(bucket_key(context.invocation_metadata(), context.peer()))
            if wait:
                raise RateLimited(wait)
            return await behavior(request, context)

        return grpc.unary_unary_rpc_method_handler(
            limited,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
