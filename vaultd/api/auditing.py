"""AuditRecording: each unary call leaves exactly one audit event.

The event holds its type (rpcs.py), actor, environment, what it touched and its outcome
("success" or the error reason), failed and refused calls included. What a successful call
touched is what its servicer reported from core's result (callrecord.touched); what a failed
call touched is what its request named, if it parsed. A call's success is reported only once its
event is stored (readaudit.py says when a read may go without). A failed call's event is
written on a best-effort basis, waited for at most FAILURE_AUDIT_WAIT_SECONDS: the caller gets
its real error even when the audit write fails too, as far as it may see it (disclosure.py).

Calls the store guard refuses (a store emptied, replaced or no longer durable) leave no event:
the store they would go to is the one vaultd will not write (the guard logs the refusal).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import grpc

from vaultd.api import disclosure
from vaultd.api.caller import origin_of
from vaultd.api.callrecord import CALL_RECORD, CallRecord
from vaultd.api.readaudit import ReadAuditPolicy
from vaultd.api.rpcs import RPCS, UNLISTED, Rpc
from vaultd.core.apikeys import ApiKeyRevoked
from vaultd.core.audit import AuditLog, Subject
from vaultd.core.errors import StoreIdentityMismatch, StoreNotDurable, VaultError
from vaultd.core.records import ApiKeyRecord

log = logging.getLogger(__name__)

FAILURE_AUDIT_WAIT_SECONDS = 1.0
"""How long a failed call waits for its audit event before answering; the write goes on."""


def outcome_of(error: BaseException, context: grpc.aio.ServicerContext) -> str:
    """The outcome an audit event records for a call that ended with `error`."""
    if isinstance(error, VaultError):
        return error.reason
    if isinstance(error, asyncio.CancelledError):
        remaining = context.time_remaining()
        return "DEADLINE_EXCEEDED" if remaining is not None and remaining <= 0 else "CANCELLED"
    return "INTERNAL"


class AuditRecording:
    def __init__(self, audit_log: AuditLog, policy: ReadAuditPolicy) -> None:
        self._audit = audit_log
        self._policy = policy

    def wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        if handler.unary_unary is None:
            return handler
        rpc = RPCS.get(method, UNLISTED)
        behavior = handler.unary_unary

        async def recorded(raw: Any, context: grpc.aio.ServicerContext) -> Any:
            record = CallRecord()
            CALL_RECORD.set(record)  # this call's task has its own copy of the context
            try:
                response = await behavior(raw, context)
            except BaseException as exc:
                if isinstance(exc, StoreIdentityMismatch | StoreNotDurable):
                    raise  # no event: the guard logged it, and this store is not to be written
                if isinstance(exc, ApiKeyRevoked):
                    record.key = exc.key  # refused, but the audit trail names the key
                named = Subject() if record.request is None else rpc.named(record.request)
                await self.record_failure(method, rpc, record.key, exc, context, named)
                shown = disclosure.shown(exc, record.key, method)
                if shown is exc:
                    raise
                raise shown from None
            origin = origin_of(method, record.key, context)
            try:
                await self._audit.record(rpc.event, origin, subject=record.touched or Subject())
            except VaultError:
                if self._policy.answer_unrecorded(method, rpc):
                    return response
                raise
            return response

        return grpc.unary_unary_rpc_method_handler(
            recorded,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    async def record_failure(
        self,
        method: str,
        rpc: Rpc,
        key: ApiKeyRecord | None,
        error: BaseException,
        context: grpc.aio.ServicerContext,
        subject: Subject,
    ) -> None:
        if isinstance(error, ApiKeyRevoked):
            subject = Subject(api_key_id=error.key.id)
        event = self._audit.record(
            rpc.event, origin_of(method, key, context), outcome_of(error, context), subject
        )
        try:
            await asyncio.wait_for(asyncio.shield(event), FAILURE_AUDIT_WAIT_SECONDS)
        except TimeoutError:
            log.warning("answering a failed %s call before its audit event is stored", method)
        except (VaultError, asyncio.CancelledError):
            log.error("could not store the audit event of a failed %s call", method)
