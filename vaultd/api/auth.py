"""Authentication, permissions and the audit trail of every call (docs/ARCHITECTURE.md section 8).

Every call but the gRPC health service's must carry `authorization: Bearer <API key>`.
Reflection needs a valid key; each vaultd RPC needs the permission rpcs.py names for it. A
request reaches this wrapper as bytes and is parsed only once its caller is authenticated,
so nobody without a key gets the protobuf parser to work on their bytes. The key lookup runs
inside the call, under its deadline, its request id and its metrics.

server.py places this inside ErrorMapping, which turns what is raised here (Unauthenticated,
PermissionDenied, InvalidArgument) into statuses with ErrorInfo, like any other error.

Each unary call leaves exactly one audit event: its type, actor, environment, what it touched,
and its outcome ("success" or the error reason), failed and refused calls included. A call's
success is reported only once its event is stored: if the audit store cannot take it, the
caller gets UNAVAILABLE instead of the result, so no value is handed out unrecorded. (A change
the call made stays made: retry it with version_check.) With `audit_reads: best_effort` an
objects:read call is answered all the same, and the lost event logged. A failed call's event is
written on a best-effort basis, waited for at most FAILURE_AUDIT_WAIT_SECONDS: the caller gets
its real error even when the audit write fails too.

Before a caller is identified, the store guard may refuse every call (a store that was emptied,
replaced or lost its durability: UNAVAILABLE with the reason), and an API key the store does not
know makes the guard check the store at once, so a caller of an emptied store hears
STORE_IDENTITY_MISMATCH, not API_KEY_INVALID. Such refusals leave no audit event: the store
they would go to is the one vaultd will not write (the guard logs the refusal instead).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import grpc

from vaultd.api.authlimit import FailedAuthentications
from vaultd.api.caller import CALLER, Caller
from vaultd.api.errors import to_status
from vaultd.api.observe import request_id_from
from vaultd.api.rpcs import RPCS, UNLISTED, Rpc
from vaultd.core import audit
from vaultd.core.apikeys import (
    ApiKeyRevoked,
    ApiKeys,
    Permission,
    actor_of,
    require,
    secret_hash,
)
from vaultd.core.audit import AuditLog, Origin, Subject
from vaultd.core.envelope import key_id
from vaultd.core.errors import (
    ApiKeyInvalid,
    ApiKeyMalformed,
    ApiKeyMissing,
    InvalidArgument,
    RateLimited,
    StoreIdentityMismatch,
    StoreNotDurable,
    Unauthenticated,
    VaultError,
)
from vaultd.core.keyring import KekCreatedSink
from vaultd.core.quota import KekQuota
from vaultd.core.storeguard import StoreGuard
from vaultd.logs import REQUEST_ID
from vaultd.storage.base import ApiKeyRecord, KekVersion

log = logging.getLogger(__name__)

HEALTH_PREFIX = "/grpc.health.v1.Health/"
FAILURE_AUDIT_WAIT_SECONDS = 1.0
"""How long a failed call waits for its audit event before answering; the write goes on."""
AUTHORIZATION = "authorization"
_BEARER = "bearer"

# The call being served in this task, for events written from deeper down (a KEK created).
_ORIGIN: ContextVar[Origin | None] = ContextVar("vaultd_audit_origin", default=None)
CALL_ORIGIN = _ORIGIN  # public: the console serves calls too, and sets their origin here

Metadata = Sequence[tuple[str, Any]] | None


def bearer_token(metadata: Metadata) -> str:
    """The token of the one `authorization: Bearer <token>` entry; ApiKeyMissing/Malformed."""
    values = [value for key, value in metadata or () if key == AUTHORIZATION]
    if not values:
        raise ApiKeyMissing("send the metadata `authorization: Bearer <API key>`")
    if len(values) > 1:
        raise ApiKeyMalformed("send one authorization metadata entry, not several")
    scheme, _, token = str(values[0]).strip().partition(" ")
    if scheme.lower() != _BEARER or not token.strip():
        raise ApiKeyMalformed("the authorization metadata must be `Bearer <API key>`")
    return token.strip()


def outcome_of(error: BaseException, context: grpc.aio.ServicerContext) -> str:
    """The outcome an audit event records for a call that ended with `error`."""
    if isinstance(error, VaultError):
        return error.reason
    if isinstance(error, asyncio.CancelledError):
        remaining = context.time_remaining()
        return "DEADLINE_EXCEEDED" if remaining is not None and remaining <= 0 else "CANCELLED"
    return "INTERNAL"


def kek_created_sink(audit_log: AuditLog) -> KekCreatedSink:
    """For the Keyring: a vault.kek.created event, made by the call being served."""

    async def kek_created(environment_id: str, kek_id: str, kek: KekVersion) -> None:
        origin = _ORIGIN.get() or Origin(environment_id, None)
        subject = Subject(
            key_ids=(key_id(kek_id, kek.version),), key_context={kek.item_key: kek.item_value}
        )
        await audit_log.record(audit.KEK_CREATED, origin, subject=subject)

    return kek_created


def kek_admission(quota: KekQuota) -> Callable[[str], Awaitable[None]]:
    """For the Keyring: admit a new KEK against the quotas of the call being served."""

    async def admit(environment_id: str) -> None:
        origin = _ORIGIN.get()
        actor = origin.actor if origin is not None else None
        await quota.admit(environment_id, actor.id if actor is not None else None)

    return admit


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
        self._keys = api_keys
        self._audit = audit_log
        self._guard = guard
        self._reads_best_effort = reads_best_effort
        self._failures = failures

    def wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        if method.startswith(HEALTH_PREFIX):
            return handler
        call = _Call(method, RPCS.get(method, UNLISTED))
        if handler.unary_unary is None:
            return self._streaming(handler, call)
        return grpc.unary_unary_rpc_method_handler(
            self._audited(handler, call),
            # The request reaches `audited` as bytes, to be parsed only once its caller is known.
            request_deserializer=None,
            response_serializer=handler.response_serializer,
        )

    async def _identify(self, context: grpc.aio.ServicerContext) -> ApiKeyRecord:
        """The caller's key; Unauthenticated if there is no valid one."""
        token = bearer_token(context.invocation_metadata())
        if self._guard is None:
            return await self._keys.authenticate(token)
        self._guard.check_serving()
        try:
            return await self._keys.authenticate(token)
        except ApiKeyInvalid:
            await self._guard.suspect()  # an emptied store forgets every key: say that instead
            raise

    def _over_failure_budget(self, context: grpc.aio.ServicerContext) -> RateLimited | None:
        """The refusal for a peer that spent its failed-authentication budget, unless the call
        presents a key this process already knows to be valid (a known key costs no lookup)."""
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

    def _failed(self, error: BaseException, context: grpc.aio.ServicerContext) -> None:
        if self._failures is not None and isinstance(error, Unauthenticated):
            self._failures.failed(context.peer())

    def _audited(
        self, handler: grpc.RpcMethodHandler, call: _Call
    ) -> Callable[[bytes, grpc.aio.ServicerContext], Awaitable[Any]]:
        parse: Callable[[bytes], Any] = handler.request_deserializer or (lambda raw: raw)
        behavior = handler.unary_unary

        async def audited(raw: bytes, context: grpc.aio.ServicerContext) -> Any:
            key: ApiKeyRecord | None = None
            request: Any = None
            if (refused := self._over_failure_budget(context)) is not None:
                raise refused  # no lookup, no audit event: counted and logged in aggregate
            try:
                key = await self._identify(context)
                if isinstance(raw, _LazyBody):  # BodyGate: read only now the caller is known
                    raw = await raw.read()
                with contextlib.suppress(Exception):
                    request = parse(raw)
                if call.rpc.permission is not None:
                    require(key, call.rpc.permission)
                if request is None:
                    raise InvalidArgument("request", "is not a well-formed protobuf message")
                origin = _origin(call, key, context)
                # Each call runs in its own task, with its own copy of these variables.
                CALLER.set(Caller(key.environment_id, actor_of(key)))
                _ORIGIN.set(origin)
                response = await behavior(request, context)
            except BaseException as exc:
                if isinstance(exc, StoreIdentityMismatch | StoreNotDurable):
                    raise  # no event: the guard logged it, and this store is not to be written
                if isinstance(exc, ApiKeyRevoked):
                    key = exc.key  # refused, but the audit trail names the key
                self._failed(exc, context)
                subject = Subject() if request is None else call.rpc.subject(request, None)
                await self._record_failure(call, key, exc, context, subject)
                if isinstance(exc, VaultError) and not _is_admin(key):
                    shown = exc.for_non_admin()
                    if shown is not exc:
                        # The operator still learns which key failed; the caller does not.
                        log.warning("%s: %s (%s)", call.method, exc.message, exc.metadata)
                        raise shown from None
                raise
            try:
                await self._audit.record(
                    call.rpc.event, origin, subject=call.rpc.subject(request, response)
                )
            except VaultError:
                if self._reads_best_effort and call.rpc.permission is Permission.OBJECTS_READ:
                    log.error(
                        "answered %s without its audit event (audit_reads: best_effort): the"
                        " event could not be stored",
                        call.method,
                    )
                    return response
                log.error(
                    "withheld the result of %s: its audit event could not be stored", call.method
                )
                raise
            return response

        return audited

    async def _record_failure(
        self,
        call: _Call,
        key: ApiKeyRecord | None,
        error: BaseException,
        context: grpc.aio.ServicerContext,
        subject: Subject,
    ) -> None:
        if isinstance(error, ApiKeyRevoked):
            subject = Subject(api_key_id=error.key.id)
        event = self._audit.record(
            call.rpc.event, _origin(call, key, context), outcome_of(error, context), subject
        )
        try:
            await asyncio.wait_for(asyncio.shield(event), FAILURE_AUDIT_WAIT_SECONDS)
        except TimeoutError:
            log.warning("answering a failed %s call before its audit event is stored", call.method)
        except (VaultError, asyncio.CancelledError):
            log.error("could not store the audit event of a failed %s call", call.method)

    def _streaming(self, handler: grpc.RpcMethodHandler, call: _Call) -> grpc.RpcMethodHandler:
        """Reflection: authenticated before it reads a request; served unaudited once allowed."""
        if handler.stream_unary is not None:
            raise TypeError(f"{call.method}: client-streaming RPCs are not supported")
        behavior = handler.stream_stream or handler.unary_stream

        async def guarded(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            key: ApiKeyRecord | None = None
            try:
                if (refused := self._over_failure_budget(context)) is not None:
                    status = to_status(refused)
                    await context.abort(status.code, status.details, status.trailing_metadata)
                key = await self._identify(context)
                if call.rpc.permission is not None:
                    require(key, call.rpc.permission)
            except VaultError as exc:
                if isinstance(exc, ApiKeyRevoked):
                    key = exc.key
                self._failed(exc, context)
                await self._record_failure(call, key, exc, context, Subject())
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


def _is_admin(key: ApiKeyRecord | None) -> bool:
    return key is not None and Permission.ADMIN.value in key.permissions


class BodyGate:
    """Outermost wrapper: a unary call's request bytes are read only once its metadata has
    authenticated it (SECURITY.md section 5).

    grpc reads a unary request in full before its handler runs, granting flow-control credit
    up to the message size limit, so a caller without a key could make the server buffer
    megabytes per stream. Here each unary method is served as client-streaming: the handler
    runs at the headers, authenticates, and pulls the one message only for a known caller. A
    refused call is answered at once; what the client sent beyond the stream window is never
    buffered. The layers between (Observe, ErrorMapping, RateLimit) see every call as before.
    """

    def wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        # Only what Authentication serves takes raw bytes (no deserializer): it reads the body.
        if handler.unary_unary is None or handler.request_deserializer is not None:
            return handler
        behavior = handler.unary_unary

        async def gated(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> Any:
            return await behavior(_LazyBody(requests), context)

        return grpc.stream_unary_rpc_method_handler(
            gated,
            request_deserializer=None,
            response_serializer=handler.response_serializer,
        )


class _LazyBody:
    """A unary request's bytes, not read until Authentication asks for them."""

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


@dataclass(frozen=True, slots=True)
class _Call:
    method: str
    rpc: Rpc


def _origin(call: _Call, key: ApiKeyRecord | None, context: grpc.aio.ServicerContext) -> Origin:
    return Origin(
        environment_id=key.environment_id if key else audit.UNAUTHENTICATED_ENVIRONMENT,
        actor=actor_of(key) if key else None,
        # The id Observe chose for the call's logs, so the two can be joined.
        request_id=REQUEST_ID.get() or request_id_from(context.invocation_metadata()),
        method=call.method,
        peer=context.peer(),
    )
