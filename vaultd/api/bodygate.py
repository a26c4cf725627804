"""A unary call's request bytes are read only once its metadata has authenticated it
(SECURITY.md section 5)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc


class BodyGate:
    """Outermost wrapper: each unary method whose handler takes raw bytes is served as
    client-streaming, so its body waits in the stream until RequestParsing reads it.

    grpc reads a unary request in full before its handler runs, granting flow-control credit
    up to the message size limit, so a caller without a key could make the server buffer
    megabytes per stream. Here the handler runs at the headers, authenticates, and pulls the one
    message only for a known caller. A refused call is answered at once; what the client sent
    beyond the stream window is never buffered. The layers between (Observe, ErrorMapping,
    RateLimit) see every call as before.
    """

    def wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        # Only what RequestParsing serves takes raw bytes (no deserializer): it reads the body.
        if handler.unary_unary is None or handler.request_deserializer is not None:
            return handler
        behavior = handler.unary_unary

        async def gated(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> Any:
            return await behavior(LazyBody(requests), context)

        return grpc.stream_unary_rpc_method_handler(
            gated,
            request_deserializer=None,
            response_serializer=handler.response_serializer,
        )


class LazyBody:
    """A unary request's bytes, not read until RequestParsing asks for them."""

    def __init__(self, requests: AsyncIterator[bytes]) -> None:
        self._requests = requests

    async def read(self) -> bytes:
        try:
            async for message in self._requests:
                return message
        except Exception:
            # The call ended while its body was awaited (client gone, server stopping): it is
            # cancelled, not an internal error.
            raise asyncio.CancelledError() from None
        return b""
