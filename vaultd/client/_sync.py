"""VaultClient: the blocking client. Each method is one line over the shared builders."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from types import TracebackType
from typing import Self, TypeVar

import grpc

from vaultd.client import _local, _rpc
from vaultd.client._base import ClientBase
from vaultd.client.errors import from_rpc_error
from vaultd.client.models import DataKey, ObjectDigest, ObjectMetadata, ObjectVersion, VaultObject

T = TypeVar("T")


class VaultClient(ClientBase):
    """A blocking vaultd client over one gRPC channel; safe to share between threads.

        with VaultClient("127.0.0.1:50051", api_key="sk_...") as vault:
            meta = vault.create_object("db-password", b"hunter2", {"organization_id": "org_1"})
            blob = vault.encrypt(b"card 4242", {"organization_id": "org_1"})

    TLS is on when any of root_certificates, private_key + certificate_chain (mutual TLS) is
    given, or with tls=True (system roots). Every call has a deadline of `timeout` seconds; reads
    and DecryptDataKey are retried on UNAVAILABLE with backoff inside it, writes never are.
    Failures raise vaultd.client.errors.VaultdError subclasses. With data_key_cache_ttl > 0,
    encrypt reuses a data key per key context for that many seconds (off by default).
    channel_options are extra gRPC channel arguments, e.g. ("grpc.max_receive_message_length",
    n) for values above the default 4 MiB limit. encrypt writes key-committing blobs
    (docs/FORMAT.md section 4.4); key_commitment=False writes the WorkOS layout instead, for
    readers that know only it. decrypt reads both; require_key_commitment=True refuses the
    WorkOS layout.
    """

    _grpc = grpc

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def _invoke(self, call: _rpc.Call[T]) -> T:
        try:
            response = self._method(call)(
                call.request, timeout=self._timeout, metadata=self._metadata
            )
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from exc
        return call.parse(response)

    def _run(self, flow: _local.Flow[T]) -> T:
        return _local.run(flow, self._invoke)

    # ObjectService

    def create_object(
        self, name: str, value: bytes, key_context: Mapping[str, str]
    ) -> ObjectMetadata:
        """Store a new object; NameTaken if the name is in use, InvalidKeyContext if bad."""
        return self._invoke(_rpc.create_object(name, value, key_context))

    def get_object(
        self, object_id: str, key_context: Mapping[str, str] | None = None
    ) -> VaultObject:
        """The object's current value and metadata; ObjectNotFound if there is none."""
        return self._invoke(_rpc.get_object(object_id, key_context))

    def get_object_by_name(
        self, name: str, key_context: Mapping[str, str] | None = None
    ) -> VaultObject:
        return self._invoke(_rpc.get_object_by_name(name, key_context))

    def describe_object(self, object_id: str) -> ObjectMetadata:
        """The metadata alone; vaultd decrypts nothing."""
        return self._invoke(_rpc.describe_object(object_id))

    def update_object(
        self, object_id: str, value: bytes, version_check: str | None = None
    ) -> ObjectMetadata:
        """Write a new version; with version_check, only if it is still the current version
        (else VersionConflict, whose current_version_id says which one is)."""
        return self._invoke(_rpc.update_object(object_id, value, version_check))

    def delete_object(self, object_id: str, version_check: str | None = None) -> None:
        return self._invoke(_rpc.delete_object(object_id, version_check))

    def undelete_object(self, object_id: str) -> ObjectMetadata:
        """Restore a deleted object with every version, within the server's deleted-object
        retention (else ObjectNotFound)."""
        return self._invoke(_rpc.undelete_object(object_id))

    def list_objects(
        self,
        *,
        limit: int | None = None,
        order: _rpc.Order = "desc",
        name_prefix: str | None = None,
        updated_after: datetime | None = None,
        after: str | None = None,
        key_context: Mapping[str, str] | None = None,
    ) -> Iterator[ObjectDigest]:
        """Every matching object, fetching pages of `limit` (10 by default, at most 100) as the
        iteration reaches them, each page once, following the `after` cursor."""
        call: _rpc.Call[_rpc.Page] | None = _rpc.list_objects(
            limit=limit, order=order, name_prefix=name_prefix,
            updated_after=updated_after, after=after, key_context=key_context,
        )  # fmt: skip
        while call is not None:
            page = self._invoke(call)
            yield from page.objects
            call = page.next

    def list_object_versions(self, object_id: str) -> list[ObjectVersion]:
        """Every stored version, oldest first."""
        return self._invoke(_rpc.list_object_versions(object_id))

    def get_object_version(self, object_id: str, version_id: str) -> VaultObject:
        return self._invoke(_rpc.get_object_version(object_id, version_id))

    # KeyService

    def create_data_key(self, key_context: Mapping[str, str]) -> DataKey:
        return self._invoke(_rpc.create_data_key(key_context))

    def decrypt_data_key(self, encrypted_keys: bytes) -> DataKey:
        return self._invoke(_rpc.decrypt_data_key(encrypted_keys))

    def rekey_data_key(self, encrypted_keys: bytes, key_context: Mapping[str, str]) -> DataKey:
        """The same data key, wrapped for another key context; no data is touched."""
        return self._invoke(_rpc.rekey_data_key(encrypted_keys, key_context))

    def encrypt(
        self, data: bytes, key_context: Mapping[str, str], associated_data: bytes | None = None
    ) -> bytes:
        """Seal `data` here (CreateDataKey, then AES-256-GCM) into the blob docs/FORMAT.md
        specifies; vaultd never sees the data."""
        blob = _local.cached_encrypt(data, key_context, associated_data, self._cache)
        if blob is not None:
            return blob
        return self._run(
            _local.encrypt(data, key_context, associated_data, self._cache, self._committing)
        )

    def decrypt(self, blob: bytes, associated_data: bytes | None = None) -> bytes:
        """Open a blob from encrypt or the server's Encrypt: one DecryptDataKey, then locally.
        DecryptionFailed if it is damaged or the associated data differs."""
        return self._run(_local.decrypt(blob, associated_data, self._require_commitment))
