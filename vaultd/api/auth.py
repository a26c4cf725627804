"""Authentication: the layers every vaultd call passes between the rate limit and its servicer
(docs/ARCHITECTURE.md section 8), composed here in their order, outermost first:

    LoginBudget        loginbudget.py    a peer out of failed-login budget: refused, unaudited
    AuditRecording     auditing.py       one audit event per call, failed calls included
    KeyAuthentication  authenticate.py   the caller's API key; the caller for the servicer
    RequestParsing     parsing.py        the request's bytes read and parsed, only now
    Authorization      authorization.py  the method's permission, then a well-formed request

server.py places this inside ErrorMapping, which turns what is raised here (Unauthenticated,
PermissionDenied, InvalidArgument) into statuses with ErrorInfo, like any other error. The
health service needs no key and leaves no event: its requests are only parsed and checked.
Reflection (streaming) is authenticated and permission-checked before it reads a request, and
served unaudited once allowed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc

from vaultd.api.auditing import FAILURE_AUDIT_WAIT_SECONDS, AuditRecording, outcome_of
from vaultd.api.authenticate import AUTHORIZATION, KeyAuthentication, bearer_token
from vaultd.api.authlimit import FailedAuthentications
from vaultd.api.authorization import Authorization
from vaultd.api.bodygate import BodyGate
from vaultd.api.errors import to_status
from vaultd.api.loginbudget import LoginBudget
from vaultd.api.parsing import RequestParsing
from vaultd.api.readaudit import ReadAuditPolicy
from vaultd.api.rpcs import RPCS, UNLISTED
from vaultd.api.wrapping import Wrapper, wrap_all
from vaultd.core.apikeys import ApiKeyRevoked, ApiKeys, Permission, require
from vaultd.core.audit import ORIGIN, AuditLog, Subject
from vaultd.core.errors import VaultError
from vaultd.core.records import ApiKeyRecord
from vaultd.core.storeguard import StoreGuard

__all__ = [
    "AUTHORIZATION",
    "FAILURE_AUDIT_WAIT_SECONDS",
    "HEALTH_PREFIX",
    "ORIGIN",
    "Authentication",
    "BodyGate",
    "bearer_token",
    "outcome_of",
]

HEALTH_PREFIX = "/grpc.health.v1.Health/"


def _permission(method: str) -> Permission | None:
    # A method rpcs.py lacks needs the admin permission (UNLISTED): an RPC added without an
    # entry fails closed.
    return RPCS.get(method, UNLISTED).permission


def _public(method: str) -> Permission | None:
    return None


class Authentication:
    def __init__(
        self,
        api_keys: ApiKeys,
        audit_log: AuditLog,
        guard: StoreGuard | None = None,
        *,
        reads_best_effort: bool = False,
        failures: FailedAuthentications | None = None,
    ) -> None:
        self._budget = LoginBudget(failures, api_keys)
        self._auditing = AuditRecording(
            audit_log, ReadAuditPolicy(reads_best_effort=reads_best_effort)
        )
        self._authentication = KeyAuthentication(api_keys, guard)
        parsing = RequestParsing()
        self._layers: list[Wrapper] = [
            self._budget,
            self._auditing,
            self._authentication,
            parsing,
            Authorization(_permission),
        ]
        self._public: list[Wrapper] = [parsing, Authorization(_public)]

    def wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        if method.startswith(HEALTH_PREFIX):
            return wrap_all(self._public, method, handler)
        if handler.unary_unary is None:
            return self._streaming(method, handler)
        return wrap_all(self._layers, method, handler)

    def _streaming(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        """Reflection: authenticated before it reads a request; served unaudited once allowed."""
        if handler.stream_unary is not None:
            raise TypeError(f"{method}: client-streaming RPCs are not supported")
        behavior = handler.stream_stream or handler.unary_stream
        rpc = RPCS.get(method, UNLISTED)

        async def guarded(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            key: ApiKeyRecord | None = None
            try:
                if (refused := self._budget.refusal(context)) is not None:
                    status = to_status(refused)
                    await context.abort(status.code, status.details, status.trailing_metadata)
                key = await self._authentication.identify(context)
                if rpc.permission is not None:
                    require(key, rpc.permission)
            except VaultError as exc:
                if isinstance(exc, ApiKeyRevoked):
                    key = exc.key
                self._budget.count(exc, context)
                await self._auditing.record_failure(method, rpc, key, exc, context, Subject())
                status = to_status(exc)
                await context.abort(status.code, status.details, status.trailing_metadata)
            async for response in behavior(request, context):
                yield response

        make = (
            grpc.stream_stream_rpc_method_handler
            if handler.stream_stream is not None
            else grpc.unary_stream_rpc_method_handler
        )
        return make(
            guarded,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
