"""ObjectService: each RPC converts proto -> domain, awaits the vault, converts back, and tells
the audit layer what it touched from the vault's answer (callrecord.touched)."""

from __future__ import annotations

from typing import TypeAlias

import grpc

from vaultd.api import convert
from vaultd.api.caller import caller_of
from vaultd.api.callrecord import touched
from vaultd.core.audit import Subject
from vaultd.core.deleted import DeletedObjects
from vaultd.core.objects import ObjectVault
from vaultd.core.objectviews import ObjectMetadata
from vaultd.v1 import object_service_pb2 as pb
from vaultd.v1 import object_service_pb2_grpc as pb_grpc

Context: TypeAlias = grpc.aio.ServicerContext


def _touched(meta: ObjectMetadata) -> ObjectMetadata:
    touched(Subject(meta.id, meta.name, meta.key_ids, meta.key_context))
    return meta


def _named(object_id: str) -> None:
    """A call whose answer holds no metadata: it touched the object it named."""
    touched(Subject(object_id))


class ObjectServicer(pb_grpc.ObjectServiceServicer):
    def __init__(self, vault: ObjectVault, deleted: DeletedObjects) -> None:
        self._vault = vault
        self._deleted = deleted

    async def CreateObject(
        self, request: pb.CreateObjectRequest, context: Context
    ) -> pb.CreateObjectResponse:
        c = caller_of(context)
        meta = _touched(
            await self._vault.create(
                c.environment_id,
                c.actor,
                request.name,
                request.value,
                request.key_context,
                scope=c.scope,
            )
        )
        return pb.CreateObjectResponse(metadata=convert.metadata(meta))

    async def GetObject(
        self, request: pb.GetObjectRequest, context: Context
    ) -> pb.GetObjectResponse:
        c = caller_of(context)
        obj = await self._vault.get(
            c.environment_id, request.id, dict(request.key_context), scope=c.scope
        )
        _touched(obj.metadata)
        return pb.GetObjectResponse(object=convert.vault_object(obj))

    async def GetObjectByName(
        self, request: pb.GetObjectByNameRequest, context: Context
    ) -> pb.GetObjectByNameResponse:
        c = caller_of(context)
        obj = await self._vault.get_by_name(
            c.environment_id, request.name, dict(request.key_context), scope=c.scope
        )
        _touched(obj.metadata)
        return pb.GetObjectByNameResponse(object=convert.vault_object(obj))

    async def DescribeObject(
        self, request: pb.DescribeObjectRequest, context: Context
    ) -> pb.DescribeObjectResponse:
        c = caller_of(context)
        meta = _touched(await self._vault.describe(c.environment_id, request.id, scope=c.scope))
        return pb.DescribeObjectResponse(metadata=convert.metadata(meta))

    async def UpdateObject(
        self, request: pb.UpdateObjectRequest, context: Context
    ) -> pb.UpdateObjectResponse:
        c = caller_of(context)
        check = request.version_check if request.HasField("version_check") else None
        meta = _touched(
            await self._vault.update(
                c.environment_id, c.actor, request.id, request.value, check, scope=c.scope
            )
        )
        return pb.UpdateObjectResponse(metadata=convert.metadata(meta))

    async def DeleteObject(
        self, request: pb.DeleteObjectRequest, context: Context
    ) -> pb.DeleteObjectResponse:
        check = request.version_check if request.HasField("version_check") else None
        c = caller_of(context)
        await self._vault.delete(c.environment_id, request.id, check, scope=c.scope)
        _named(request.id)
        return pb.DeleteObjectResponse()

    async def ListObjects(
        self, request: pb.ListObjectsRequest, context: Context
    ) -> pb.ListObjectsResponse:
        c = caller_of(context)
        page = await self._vault.list_objects(
            c.environment_id, convert.list_query(request), scope=c.scope
        )
        return pb.ListObjectsResponse(
            objects=[convert.digest(e) for e in page.entries],
            list_metadata=pb.ListMetadata(before=page.before, after=page.after),
        )

    async def ListObjectVersions(
        self, request: pb.ListObjectVersionsRequest, context: Context
    ) -> pb.ListObjectVersionsResponse:
        c = caller_of(context)
        versions = await self._vault.list_versions(c.environment_id, request.id, scope=c.scope)
        _named(request.id)
        return pb.ListObjectVersionsResponse(versions=[convert.version(v) for v in versions])

    async def GetObjectVersion(
        self, request: pb.GetObjectVersionRequest, context: Context
    ) -> pb.GetObjectVersionResponse:
        c = caller_of(context)
        obj = await self._vault.get_version(
            c.environment_id, request.id, request.version_id, scope=c.scope
        )
        _touched(obj.metadata)
        return pb.GetObjectVersionResponse(object=convert.vault_object(obj))

    async def UndeleteObject(
        self, request: pb.UndeleteObjectRequest, context: Context
    ) -> pb.UndeleteObjectResponse:
        c = caller_of(context)
        restored = await self._deleted.undelete(c.environment_id, request.id, scope=c.scope)
        return pb.UndeleteObjectResponse(metadata=convert.metadata(_touched(restored)))
