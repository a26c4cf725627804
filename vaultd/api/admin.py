"""AdminService: API keys, audit events and key lifecycle (api/lifecycle.py) of the caller's
environment, proto <-> domain."""

from __future__ import annotations

from typing import TypeAlias

import grpc

from vaultd.api import convert, paging
from vaultd.api.caller import caller_of
from vaultd.api.lifecycle import LifecycleRpcs
from vaultd.core.apikeys import ApiKeys
from vaultd.core.audit import AuditLog
from vaultd.core.lifecycle import KeyLifecycle
from vaultd.core.rules import KeyRules
from vaultd.storage.base import ApiKeyRecord, AuditEvent, AuditQuery
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


class AdminServicer(LifecycleRpcs, pb_grpc.AdminServiceServicer):
    def __init__(
        self, api_keys: ApiKeys, audit_log: AuditLog, lifecycle: KeyLifecycle, rules: KeyRules
    ) -> None:
        super().__init__(lifecycle, rules)
        self._keys = api_keys
        self._audit = audit_log

    async def CreateApiKey(
        self, request: pb.CreateApiKeyRequest, context: Context
    ) -> pb.CreateApiKeyResponse:
        own = caller_of(context).environment_id
        new = await self._keys.create(
            request.environment_id or own, request.permissions, request.name, scope=own
        )
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
