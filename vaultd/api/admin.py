"""AdminService: API keys, audit events, key lifecycle (api/lifecycle.py) and the purge of
deleted objects, of the caller's environment, proto <-> domain."""

from __future__ import annotations

from typing import TypeAlias

import grpc

from vaultd.api import convert, paging
from vaultd.api.caller import caller_of
from vaultd.api.callrecord import touched
from vaultd.api.lifecycle import LifecycleRpcs
from vaultd.core.apikeys import ApiKeys
from vaultd.core.audit import AuditLog, Subject
from vaultd.core.byok import ByokKeys
from vaultd.core.deleted import DeletedObjects
from vaultd.core.lifecycle import KeyLifecycle
from vaultd.core.records import ApiKeyRecord, AuditEvent, AuditQuery, ByokKeyRecord
from vaultd.core.rules import KeyRules
from vaultd.core.scope import format_constraint
from vaultd.v1 import admin_service_pb2 as pb
from vaultd.v1 import admin_service_pb2_grpc as pb_grpc
from vaultd.v1 import object_service_pb2 as object_pb

Context: TypeAlias = grpc.aio.ServicerContext


def api_key_metadata(key: ApiKeyRecord) -> pb.ApiKeyMetadata:
    meta = pb.ApiKeyMetadata(
        id=key.id,
        name=key.name,
        environment_id=key.environment_id,
        permissions=key.permissions,
        created_at=convert.timestamp(key.created_at),
        context_constraints=[format_constraint(c) for c in key.context_constraints],
    )
    if key.revoked_at is not None:
        meta.revoked_at.CopyFrom(convert.timestamp(key.revoked_at))
    return meta


def audit_event(event: AuditEvent) -> pb.AuditEvent:
    return pb.AuditEvent(
        id=event.id,
        type=event.type,
        time=convert.timestamp(event.time),
        environment_id=event.environment_id,
        actor=object_pb.Actor(id=event.actor_id, name=event.actor_name),
        outcome=event.outcome,
        request_id=event.request_id,
        method=event.method,
        peer=event.peer,
        object_id=event.object_id,
        object_name=event.object_name,
        key_ids=event.key_ids,
        key_context=event.key_context,
        data_key_id=event.data_key_id,
        api_key_id=event.api_key_id,
    )


def _byok_touched(record: ByokKeyRecord) -> ByokKeyRecord:
    """A BYOK key call: the key's id, and its match as a one-item context."""
    touched(Subject(key_ids=(record.id,), key_context={record.item_key: record.pattern}))
    return record


def byok_key(record: ByokKeyRecord) -> pb.ByokKey:
    message = pb.ByokKey(
        id=record.id,
        item_key=record.item_key,
        pattern=record.pattern,
        key_uri=record.key_uri,
        created_at=convert.timestamp(record.created_at),
        verified=record.verified,
        verification_error=record.verification_error,
    )
    if record.verified_at is not None:
        message.verified_at.CopyFrom(convert.timestamp(record.verified_at))
    return message


class AdminServicer(LifecycleRpcs, pb_grpc.AdminServiceServicer):
    def __init__(
        self,
        api_keys: ApiKeys,
        audit_log: AuditLog,
        lifecycle: KeyLifecycle,
        rules: KeyRules,
        byok_keys: ByokKeys,
        deleted: DeletedObjects,
    ) -> None:
        super().__init__(lifecycle, rules)
        self._keys = api_keys
        self._audit = audit_log
        self._byok = byok_keys
        self._deleted = deleted

    async def CreateByokKey(
        self, request: pb.CreateByokKeyRequest, context: Context
    ) -> pb.CreateByokKeyResponse:
        env = caller_of(context).environment_id
        record = await self._byok.create(env, dict(request.match), request.key_uri)
        return pb.CreateByokKeyResponse(byok_key=byok_key(_byok_touched(record)))

    async def ListByokKeys(
        self, request: pb.ListByokKeysRequest, context: Context
    ) -> pb.ListByokKeysResponse:
        records = await self._byok.list(caller_of(context).environment_id)
        return pb.ListByokKeysResponse(byok_keys=[byok_key(r) for r in records])

    async def GetByokKey(
        self, request: pb.GetByokKeyRequest, context: Context
    ) -> pb.GetByokKeyResponse:
        record = await self._byok.get(caller_of(context).environment_id, request.id)
        return pb.GetByokKeyResponse(byok_key=byok_key(_byok_touched(record)))

    async def VerifyByokKey(
        self, request: pb.VerifyByokKeyRequest, context: Context
    ) -> pb.VerifyByokKeyResponse:
        record = await self._byok.verify(caller_of(context).environment_id, request.id)
        return pb.VerifyByokKeyResponse(byok_key=byok_key(_byok_touched(record)))

    async def DeleteByokKey(
        self, request: pb.DeleteByokKeyRequest, context: Context
    ) -> pb.DeleteByokKeyResponse:
        record = await self._byok.delete(caller_of(context).environment_id, request.id)
        return pb.DeleteByokKeyResponse(byok_key=byok_key(_byok_touched(record)))

    async def PurgeObject(
        self, request: pb.PurgeObjectRequest, context: Context
    ) -> pb.PurgeObjectResponse:
        await self._deleted.purge(caller_of(context).environment_id, request.id)
        touched(Subject(request.id))
        return pb.PurgeObjectResponse()

    async def CreateApiKey(
        self, request: pb.CreateApiKeyRequest, context: Context
    ) -> pb.CreateApiKeyResponse:
        own = caller_of(context).environment_id
        new = await self._keys.create(
            request.environment_id or own,
            request.permissions,
            request.name,
            scope=own,
            context_constraints=request.context_constraints,
        )
        touched(Subject(api_key_id=new.record.id))
        return pb.CreateApiKeyResponse(api_key=new.secret, metadata=api_key_metadata(new.record))

    async def ListApiKeys(
        self, request: pb.ListApiKeysRequest, context: Context
    ) -> pb.ListApiKeysResponse:
        keys = await self._keys.list(caller_of(context).environment_id)
        shown, after = paging.page(
            keys, lambda k: (k.created_at.isoformat(), k.id), request.limit, request.after
        )
        return pb.ListApiKeysResponse(
            api_keys=[api_key_metadata(k) for k in shown],
            list_metadata=object_pb.ListMetadata(after=after),
        )

    async def RevokeApiKey(
        self, request: pb.RevokeApiKeyRequest, context: Context
    ) -> pb.RevokeApiKeyResponse:
        key = await self._keys.revoke(request.id, scope=caller_of(context).environment_id)
        touched(Subject(api_key_id=key.id))
        return pb.RevokeApiKeyResponse(metadata=api_key_metadata(key))

    async def ListAuditEvents(
        self, request: pb.ListAuditEventsRequest, context: Context
    ) -> pb.ListAuditEventsResponse:
        query = AuditQuery(
            after=request.after,
            since=convert.optional_timestamp(request, "since"),
            type=request.type,
            limit=request.limit,
        )
        page = await self._audit.read(caller_of(context).environment_id, query)
        return pb.ListAuditEventsResponse(
            events=[audit_event(e) for e in page.events], cursor=page.cursor
        )
