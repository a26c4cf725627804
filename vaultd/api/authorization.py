"""Authorization: the permission rpcs.py names for a method, then the request's well-formedness.

Permission comes first, so a caller without it learns nothing of how its bytes were read; it
runs after RequestParsing all the same, so the audit event of a refused call names what the
request named. A method served to anyone (health) has no permission: only its request is
checked.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from vaultd.api import callrecord
from vaultd.api.parsing import MALFORMED
from vaultd.core.apikeys import Permission, require
from vaultd.core.errors import InvalidArgument, Unauthenticated


class Authorization:
    def __init__(self, permission_of: Callable[[str], Permission | None]) -> None:
        # method -> the permission it needs; None: any caller (with a key, where
        # KeyAuthentication runs first) may call it.
        self._permission_of = permission_of

    def wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        if handler.unary_unary is None:
            return handler
        permission = self._permission_of(method)
        behavior = handler.unary_unary

        async def authorized(request: Any, context: grpc.aio.ServicerContext) -> Any:
            if permission is not None:
                key = callrecord.current().key
                if key is None:  # a wiring mistake: never serve it as if allowed
                    raise Unauthenticated("the call was not authenticated")
                require(key, permission)
            if request is MALFORMED:
                raise InvalidArgument("request", "is not a well-formed protobuf message")
            return await behavior(request, context)

        return grpc.unary_unary_rpc_method_handler(
            authorized,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
