"""What each RPC needs and how it is audited: its permission, its event type, what it touched.

One table for every method the server serves, read by Authentication. A method missing from it
needs the admin permission, so an RPC added without an entry fails closed; a test checks that
every method of every vaultd service has one. docs/AUDIT.md is the same table for readers.

What a call touched (its Subject) is read from its request and, when it succeeded, its response:
ids, names, key contexts and the ids inside `encrypted_keys` blobs, never a value or a key. The
readers go by field name, so each covers every message that has the field.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from grpc_reflection.v1alpha import reflection
from ulid import ULID

from vaultd.core import audit
from vaultd.core.apikeys import Permission
from vaultd.core.audit import Subject
from vaultd.core.blob import LocalBlob
from vaultd.core.envelope import EncryptedKeys
from vaultd.core.errors import VaultError
from vaultd.v1 import admin_service_pb2, key_service_pb2, object_service_pb2

SubjectReader = Callable[[Any, Any], Subject]
"""(request, response or None) -> what the call touched."""


@dataclass(frozen=True, slots=True)
class Rpc:
    permission: Permission | None  # None: any valid API key will do
    event: str
    subject: SubjectReader


def _object(request: Any, response: Any) -> Subject:
    meta = getattr(response, "metadata", None)
    if meta is None and hasattr(response, "object"):
        meta = response.object.metadata
    if meta is not None:
        return Subject(meta.id, meta.name, tuple(meta.key_ids), dict(meta.key_context))
    # Failed, or a response without metadata: what the request named.
    context = getattr(request, "key_context", None)
    return Subject(getattr(request, "id", ""), getattr(request, "name", ""), key_context=context)


def _blob_ids(message: Any) -> tuple[tuple[str, ...], str]:
    """The KEK version ids and the data key id inside a message's encrypted_keys or
    ciphertext blob; nothing when there is none or it does not parse."""
    try:
        if blob := getattr(message, "encrypted_keys", b""):
            keys = EncryptedKeys.parse(blob)
        elif blob := getattr(message, "ciphertext", b""):
            keys = EncryptedKeys.parse(LocalBlob.parse(blob).encrypted_keys)
        else:
            return (), ""
    except VaultError:
        return (), ""
    return keys.key_ids, str(ULID.from_bytes(keys.dek_id))


def _data_key(request: Any, response: Any) -> Subject:
    key_ids, data_key_id = _blob_ids(request)
    if response is not None:
        # Encrypt's ciphertext, or the encrypted_keys of a new or rekeyed data key.
        new_ids, new_data_key_id = _blob_ids(response)
        key_ids = tuple(dict.fromkeys((*key_ids, *new_ids)))
        data_key_id = data_key_id or new_data_key_id
    return Subject(
        key_ids=key_ids,
        key_context=getattr(request, "key_context", None),
        data_key_id=data_key_id,
    )


def _api_key(request: Any, response: Any) -> Subject:
    meta = getattr(response, "metadata", None)
    return Subject(api_key_id=meta.id if meta is not None else getattr(request, "id", ""))


def _keks(request: Any, response: Any) -> Subject:
    """The KEK ids a lifecycle call touched; for one KEK, its item as a one-item context."""
    if response is None:  # failed: the item it named, if it named one
        key, sep, value = getattr(request, "item", "").partition("=")
        return Subject(key_context={key: value} if sep else None)
    if hasattr(response, "job"):
        return Subject(key_ids=tuple(response.job.kek_ids))
    keks = [response.kek] if hasattr(response, "kek") else list(response.keks)
    item = keks[0].item.split("=", 1) if len(keks) == 1 else None
    return Subject(key_ids=tuple(k.id for k in keks), key_context=dict([item]) if item else None)


def _byok_key(request: Any, response: Any) -> Subject:
    """A BYOK key call: the key's id, and its match as a one-item context."""
    key = getattr(response, "byok_key", None) if response is not None else None
    if key is None:
        match = dict(getattr(request, "match", {}))
        return Subject(key_ids=tuple(filter(None, [getattr(request, "id", "")])), key_context=match)
    return Subject(key_ids=(key.id,), key_context={key.item_key: key.pattern})


def _nothing(request: Any, response: Any) -> Subject:
    return Subject()


def _methods(module: Any, service: str, rpcs: dict[str, Rpc]) -> dict[str, Rpc]:
    full_name = module.DESCRIPTOR.services_by_name[service].full_name
    return {f"/{full_name}/{method}": rpc for method, rpc in rpcs.items()}


READ, WRITE = Permission.OBJECTS_READ, Permission.OBJECTS_WRITE
KEYS, ADMIN = Permission.KEYS_USE, Permission.ADMIN

RPCS: dict[str, Rpc] = {
    **_methods(
        object_service_pb2,
        "ObjectService",
        {
            "CreateObject": Rpc(WRITE, audit.DATA_CREATED, _object),
            "GetObject": Rpc(READ, audit.DATA_READ, _object),
            "GetObjectByName": Rpc(READ, audit.DATA_READ, _object),
            "GetObjectVersion": Rpc(READ, audit.DATA_READ, _object),
            "DescribeObject": Rpc(READ, audit.METADATA_READ, _object),
            "ListObjectVersions": Rpc(READ, audit.METADATA_READ, _object),
            "ListObjects": Rpc(READ, audit.NAMES_LISTED, _nothing),
            "UpdateObject": Rpc(WRITE, audit.DATA_UPDATED, _object),
            "DeleteObject": Rpc(WRITE, audit.DATA_DELETED, _object),
        },
    ),
    **_methods(
        key_service_pb2,
        "KeyService",
        {
            "CreateDataKey": Rpc(KEYS, audit.DEK_READ, _data_key),
            "DecryptDataKey": Rpc(KEYS, audit.DEK_DECRYPTED, _data_key),
            "RekeyDataKey": Rpc(KEYS, audit.DEK_REKEYED, _data_key),
            # What the WorkOS SDKs' local encrypt and decrypt record: a data key handed out
            # for a context, and a data key decrypted.
            "Encrypt": Rpc(KEYS, audit.DEK_READ, _data_key),
            "Decrypt": Rpc(KEYS, audit.DEK_DECRYPTED, _data_key),
        },
    ),
    **_methods(
        admin_service_pb2,
        "AdminService",
        {
            "CreateApiKey": Rpc(ADMIN, audit.APIKEY_CREATED, _api_key),
            "ListApiKeys": Rpc(ADMIN, audit.APIKEY_LISTED, _nothing),
            "RevokeApiKey": Rpc(ADMIN, audit.APIKEY_REVOKED, _api_key),
            "ListAuditEvents": Rpc(ADMIN, audit.AUDIT_READ, _nothing),
            "ListKeks": Rpc(ADMIN, audit.KEK_LISTED, _nothing),
            "RotateKeks": Rpc(ADMIN, audit.KEK_ROTATED, _keks),
            "StartRewrap": Rpc(ADMIN, audit.REWRAP_STARTED, _keks),
            "GetRewrapJob": Rpc(ADMIN, audit.REWRAP_READ, _nothing),
            "ListRewrapJobs": Rpc(ADMIN, audit.REWRAP_READ, _nothing),
            "RetireKekVersions": Rpc(ADMIN, audit.KEK_RETIRED, _keks),
            "ShredKek": Rpc(ADMIN, audit.KEK_SHREDDED, _keks),
            "CreateByokKey": Rpc(ADMIN, audit.BYOK_KEY_VERIFIED, _byok_key),
            "ListByokKeys": Rpc(ADMIN, audit.BYOK_KEY_READ, _nothing),
            "GetByokKey": Rpc(ADMIN, audit.BYOK_KEY_READ, _byok_key),
            "VerifyByokKey": Rpc(ADMIN, audit.BYOK_KEY_VERIFIED, _byok_key),
            "DeleteByokKey": Rpc(ADMIN, audit.BYOK_KEY_DELETED, _byok_key),
        },
    ),
    # Reflection shows only the public API; any valid key may read it.
    f"/{reflection.SERVICE_NAME}/ServerReflectionInfo": Rpc(None, audit.REFLECTION_READ, _nothing),
}

UNLISTED = Rpc(ADMIN, "vault.call", _nothing)
"""For a method the table lacks: fail closed."""
