"""LoginBudget: a peer that spent its failed-authentication budget (authlimit.py) is refused
before any key lookup, and without an audit event; every failed authentication is counted.

Outside AuditRecording, so a refusal here leaves no event: refusals are counted and logged in
aggregate instead. A call that presents a key this process already knows to be valid is served
all the same (a known key costs no lookup).
"""

from __future__ import annotations

from typing import Any

import grpc

from vaultd.api.authenticate import bearer_token
from vaultd.api.authlimit import FailedAuthentications
from vaultd.core.apikeys import ApiKeys, secret_hash
from vaultd.core.errors import RateLimited, Unauthenticated


class LoginBudget:
    def __init__(self, failures: FailedAuthentications | None, api_keys: ApiKeys) -> None:
        self._failures = failures
        self._keys = api_keys

    def refusal(self, context: grpc.aio.ServicerContext) -> RateLimited | None:
        """The refusal for a peer over its budget, unless it presents a known valid key."""
        if self._failures is None:
            return None
        wait = self._failures.wait(context.peer())
        if not wait:
            return None
        try:
            known = self._keys.cache.get(secret_hash(bearer_token(context.invocation_metadata())))
        except Unauthenticated:
            known = None
        if known is not None and known.revoked_at is None:
            return None
        self._failures.refused(context.peer())
        return RateLimited(wait)

    def count(self, error: BaseException, context: grpc.aio.ServicerContext) -> None:
        if self._failures is not None and isinstance(error, Unauthenticated):
            self._failures.failed(context.peer())

    def wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        if handler.unary_unary is None or self._failures is None:
            return handler
        behavior = handler.unary_unary

        async def budgeted(raw: Any, context: grpc.aio.ServicerContext) -> Any:
            if (refused := self.refusal(context)) is not None:
                raise refused
            try:
                return await behavior(raw, context)
            except Unauthenticated as exc:
                self.count(exc, context)
                raise

        return grpc.unary_unary_rpc_method_handler(
            budgeted,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
