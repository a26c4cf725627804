"""What each RPC needs and how it is audited: its permission, its event type, what it touched.

One table for every method the server serves, read by Authentication. A method missing from it
needs the admin permission, so an RPC added without an entry fails closed; a test checks that
every method of every vaultd service has one. docs/AUDIT.md is the same table for readers.

What a successful call touched (its Subject) its servicer reports from core's result
(callrecord.touched). What a failed call touched is what its request named, read here: ids,
names, key contexts and the ids inside a request's `encrypted_keys` blob, never a value or a
key. The readers go by field name, so each covers every message that has the field.
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

RequestReader = Callable[[Any], Subject]
"""request -> what it named: the subject of the call's audit event when the call failed."""


@dataclass(frozen=True, slots=True)
class Rpc:
    permission: Permission | None  # None: any valid API key will do
    event: str
    named: RequestReader


def _object(request: Any) -> Subject:
    context = getattr(request, "key_context", None)
    return Subject(getattr(request, "id", ""), getattr(request, "name", ""), key_context=context)


def _data_key(request: Any) -> Subject:
    """The KEK version ids and the data key id inside the request's encrypted_keys or
    ciphertext blob; none when there is none or it does not parse."""
    context = getattr(request, "key_context", None)
    try:
        if blob := getattr(request, "encrypted_keys", b""):
            keys = EncryptedKeys.parse(blob)
        elif blob := getattr(request, "ciphertext", b""):
            keys = EncryptedKeys.parse(LocalBlob.parse(blob).encrypted_keys)
        else:
            return Subject(key_context=context)
    except VaultError:
        return Subject(key_context=context)
    return Subject(
        key_ids=keys.key_ids, key_context=context, data_key_id=str(ULID.from_bytes(keys.dek_id))
    )


def _api_key(request: Any) -> Subject:
    return Subject(api_key_id=getattr(request, "id", ""))


def _keks(request: Any) -> Subject:
    """The item a lifecycle call named, if it named one, as a one-item context."""
    key, sep, value = getattr(request, "item", "").partition("=")
    return Subject(key_context={key: value} if sep else None)


def _byok_key(request: Any) -> Subject:
    """A BYOK key call: the key's id, and the match it named."""
    match = dict(getattr(request, "match", {}))
    return Subject(key_ids=tuple(filter(None, [getattr(request, "id", "")])), key_context=match)


def _nothing(request: Any) -> Subject:
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
            "UndeleteObject": Rpc(WRITE, audit.DATA_UNDELETED, _object),
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
            "PurgeObject": Rpc(ADMIN, audit.DATA_PURGED, _object),
        },
    ),
    # Reflection shows only the public API; any valid key may read it.
    f"/{reflection.SERVICE_NAME}/ServerReflectionInfo": Rpc(None, audit.REFLECTION_READ, _nothing),
}

UNLISTED = Rpc(ADMIN, "vault.call", _nothing)
"""For a method the table lacks: fail closed."""
