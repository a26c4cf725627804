"""AsyncVaultClient: VaultClient's methods, awaitable, over a grpc.aio channel."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from types import TracebackType
from typing import Self, TypeVar

import grpc

from vaultd.client import _local, _rpc
from vaultd.client._base import ClientBase
from vaultd.client.errors import from_rpc_error
from vaultd.client.models import DataKey, ObjectDigest, ObjectMetadata, ObjectVersion, VaultObject

T = TypeVar("T")


class AsyncVaultClient(ClientBase):
    """The asyncio twin of VaultClient: same constructor, same methods, awaited.

        async with AsyncVaultClient("127.0.0.1:50051", api_key="sk_...") as vault:
            obj = await vault.get_object_by_name("db-password")
            async for digest in vault.list_objects(name_prefix="db-"):
                ...

    Make it inside the event loop that will use it (grpc.aio binds the channel to that loop).
    """

    _grpc = grpc.aio

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    async def _invoke(self, call: _rpc.Call[T]) -> T:
        try:
            response = await self._method(call)(
                call.request, timeout=self._timeout, metadata=self._metadata
            )
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from exc
        return call.parse(response)

    async def _run(self, flow: _local.Flow[T]) -> T:
        return await _local.run_async(flow, self._invoke)

    # ObjectService

    async def create_object(
        self, name: str, value: bytes, key_context: Mapping[str, str]
    ) -> ObjectMetadata:
        return await self._invoke(_rpc.create_object(name, value, key_context))

    async def get_object(
        self, object_id: str, key_context: Mapping[str, str] | None = None
    ) -> VaultObject:
        return await self._invoke(_rpc.get_object(object_id, key_context))

    async def get_object_by_name(
        self, name: str, key_context: Mapping[str, str] | None = None
    ) -> VaultObject:
        return await self._invoke(_rpc.get_object_by_name(name, key_context))

    async def describe_object(self, object_id: str) -> ObjectMetadata:
        return await self._invoke(_rpc.describe_object(object_id))

    async def update_object(
        self, object_id: str, value: bytes, version_check: str | None = None
    ) -> ObjectMetadata:
        return await self._invoke(_rpc.update_object(object_id, value, version_check))

    async def delete_object(self, object_id: str, version_check: str | None = None) -> None:
        return await self._invoke(_rpc.delete_object(object_id, version_check))

    async def undelete_object(self, object_id: str) -> ObjectMetadata:
        return await self._invoke(_rpc.undelete_object(object_id))

    async def list_objects(
        self,
        *,
        limit: int | None = None,
        order: _rpc.Order = "desc",
        name_prefix: str | None = None,
        updated_after: datetime | None = None,
        after: str | None = None,
        key_context: Mapping[str, str] | None = None,
    ) -> AsyncIterator[ObjectDigest]:
        call: _rpc.Call[_rpc.Page] | None = _rpc.list_objects(
            limit=limit, order=order, name_prefix=name_prefix,
            updated_after=updated_after, after=after, key_context=key_context,
        )  # fmt: skip
        while call is not None:
            page = await self._invoke(call)
            for digest in page.objects:
                yield digest
            call = page.next

    async def list_object_versions(self, object_id: str) -> list[ObjectVersion]:
        return await self._invoke(_rpc.list_object_versions(object_id))

    async def get_object_version(self, object_id: str, version_id: str) -> VaultObject:
        return await self._invoke(_rpc.get_object_version(object_id, version_id))

    # KeyService

    async def create_data_key(self, key_context: Mapping[str, str]) -> DataKey:
        return await self._invoke(_rpc.create_data_key(key_context))

    async def decrypt_data_key(self, encrypted_keys: bytes) -> DataKey:
        return await self._invoke(_rpc.decrypt_data_key(encrypted_keys))

    async def rekey_data_key(
        self, encrypted_keys: bytes, key_context: Mapping[str, str]
    ) -> DataKey:
        return await self._invoke(_rpc.rekey_data_key(encrypted_keys, key_context))

    async def encrypt(
        self, data: bytes, key_context: Mapping[str, str], associated_data: bytes | None = None
    ) -> bytes:
        blob = _local.cached_encrypt(data, key_context, associated_data, self._cache)
        if blob is not None:
            return blob
        return await self._run(
            _local.encrypt(data, key_context, associated_data, self._cache, self._committing)
        )

    async def decrypt(self, blob: bytes, associated_data: bytes | None = None) -> bytes:
        return await self._run(_local.decrypt(blob, associated_data, self._require_commitment))
