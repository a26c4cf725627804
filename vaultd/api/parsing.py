"""RequestParsing: the one place a request's bytes become its message.

Placed inside authentication, so nobody without a key gets the protobuf parser to work on their
bytes. A request that does not parse is passed on as MALFORMED, and Authorization refuses it
after the permission check (a caller without the permission learns nothing of its bytes); the
request that did parse goes into the call's record, for the audit event of a call that fails.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import grpc

from vaultd.api import callrecord
from vaultd.api.bodygate import LazyBody


class Malformed:
    """Stands in for a request whose bytes did not parse."""


MALFORMED: Final = Malformed()


class RequestParsing:
    def wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        if handler.unary_unary is None:
            return handler
        deserialize: Callable[[bytes], Any] = handler.request_deserializer or (lambda raw: raw)
        behavior = handler.unary_unary

        async def parsed(raw: bytes | LazyBody, context: grpc.aio.ServicerContext) -> Any:
            if isinstance(raw, LazyBody):  # BodyGate: read only now the caller is known
                raw = await raw.read()
            try:
                request = deserialize(raw)
            except Exception:
                request = MALFORMED
            else:
                callrecord.current().request = request
            return await behavior(request, context)

        return grpc.unary_unary_rpc_method_handler(
            parsed,
            # The request reaches `parsed` as bytes, to be parsed only once its caller is known.
            request_deserializer=None,
            response_serializer=handler.response_serializer,
        )
