"""One builder per RPC, shared by both clients: the request to send and how to read the answer.

A builder returns a `Call`; VaultClient runs it on a grpc channel, AsyncVaultClient on a
grpc.aio channel. Everything but the waiting lives here, once.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from vaultd.client import models
from vaultd.core.envelope import EncryptedKeys
from vaultd.core.errors import VaultError
from vaultd.v1 import key_service_pb2 as kpb
from vaultd.v1 import object_service_pb2 as opb

T = TypeVar("T")
Service = Literal["objects", "keys"]
Order = Literal["asc", "desc"]

OBJECT_SERVICE = opb.DESCRIPTOR.services_by_name["ObjectService"].full_name
KEY_SERVICE = kpb.DESCRIPTOR.services_by_name["KeyService"].full_name

# Calls that may run twice without harm: reads, and DecryptDataKey / Decrypt, which change
# nothing. Writes are never retried by the client: a CreateObject whose answer was lost may have
# happened, and only the caller knows whether to look before trying again.
RETRIED_METHODS: Mapping[str, tuple[str, ...]] = {
    OBJECT_SERVICE: (
        "GetObject",
        "GetObjectByName",
        "DescribeObject",
        "ListObjects",
        "ListObjectVersions",
        "GetObjectVersion",
    ),
    KEY_SERVICE: ("DecryptDataKey", "Decrypt"),
}
RETRY_POLICY: Mapping[str, Any] = {
    "maxAttempts": 4,
    "initialBackoff": "0.1s",
    "maxBackoff": "2s",
    "backoffMultiplier": 2,
    "retryableStatusCodes": ["UNAVAILABLE"],
}


def service_config() -> str:
    """gRPC's own retry policy for the idempotent methods: backoff with jitter, inside the
    call's deadline, and no retry once the server has begun to answer."""
    names = [
        {"service": service, "method": method}
        for service, methods in RETRIED_METHODS.items()
        for method in methods
    ]
    return json.dumps({"methodConfig": [{"name": names, "retryPolicy": dict(RETRY_POLICY)}]})


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One RPC to make: which stub and method, the request, and how to read the response."""

    service: Service
    method: str
    request: Message
    parse: Callable[[Any], T]


@dataclass(frozen=True, slots=True)
class Page:
    """One page of ListObjects, and the call for the next page (None on the last)."""

    objects: tuple[models.ObjectDigest, ...]
    next: Call[Page] | None


def create_object(
    name: str, value: bytes, key_context: Mapping[str, str]
) -> Call[models.ObjectMetadata]:
    request = opb.CreateObjectRequest(name=name, value=value, key_context=key_context)
    return Call("objects", "CreateObject", request, lambda r: models.metadata_from(r.metadata))


def get_object(
    object_id: str, key_context: Mapping[str, str] | None = None
) -> Call[models.VaultObject]:
    request = opb.GetObjectRequest(id=object_id, key_context=key_context or {})
    return Call("objects", "GetObject", request, lambda r: models.object_from(r.object))


def get_object_by_name(
    name: str, key_context: Mapping[str, str] | None = None
) -> Call[models.VaultObject]:
    request = opb.GetObjectByNameRequest(name=name, key_context=key_context or {})
    return Call("objects", "GetObjectByName", request, lambda r: models.object_from(r.object))


def describe_object(object_id: str) -> Call[models.ObjectMetadata]:
    request = opb.DescribeObjectRequest(id=object_id)
    return Call("objects", "DescribeObject", request, lambda r: models.metadata_from(r.metadata))


def update_object(
    object_id: str, value: bytes, version_check: str | None
) -> Call[models.ObjectMetadata]:
    # version_check is proto3 `optional`: leaving it unset (None) is "last write wins".
    request = opb.UpdateObjectRequest(id=object_id, value=value, version_check=version_check)
    return Call("objects", "UpdateObject", request, lambda r: models.metadata_from(r.metadata))


def delete_object(object_id: str, version_check: str | None) -> Call[None]:
    request = opb.DeleteObjectRequest(id=object_id, version_check=version_check)
    return Call("objects", "DeleteObject", request, lambda r: None)


def undelete_object(object_id: str) -> Call[models.ObjectMetadata]:
    request = opb.UndeleteObjectRequest(id=object_id)
    return Call("objects", "UndeleteObject", request, lambda r: models.metadata_from(r.metadata))


_ORDERS = {"asc": opb.LIST_ORDER_ASCENDING, "desc": opb.LIST_ORDER_DESCENDING}


def list_objects(
    *,
    limit: int | None,
    order: Order,
    name_prefix: str | None,
    updated_after: datetime | None,
    after: str | None,
    key_context: Mapping[str, str] | None = None,
) -> Call[Page]:
    if order not in _ORDERS:
        raise ValueError(f"order must be 'asc' or 'desc', not {order!r}")
    request = opb.ListObjectsRequest(
        limit=limit or 0,
        order=_ORDERS[order],
        name_prefix=name_prefix or "",
        after=after or "",
        key_context=key_context or {},
    )
    if updated_after is not None:
        stamp = Timestamp()
        stamp.FromDatetime(updated_after)  # a naive datetime is taken as UTC
        request.updated_after.CopyFrom(stamp)
    return _list_page(request)


def _list_page(request: opb.ListObjectsRequest) -> Call[Page]:
    def parse(response: opb.ListObjectsResponse) -> Page:
        cursor = response.list_metadata.after
        following = None
        if cursor:
            # The same query from just after this page's last object.
            next_request = opb.ListObjectsRequest()
            next_request.CopyFrom(request)
            next_request.after = cursor
            following = _list_page(next_request)
        return Page(tuple(models.digest_from(o) for o in response.objects), following)

    return Call("objects", "ListObjects", request, parse)


def list_object_versions(object_id: str) -> Call[list[models.ObjectVersion]]:
    request = opb.ListObjectVersionsRequest(id=object_id)
    return Call(
        "objects",
        "ListObjectVersions",
        request,
        lambda r: [models.version_from(v) for v in r.versions],
    )


def get_object_version(object_id: str, version_id: str) -> Call[models.VaultObject]:
    request = opb.GetObjectVersionRequest(id=object_id, version_id=version_id)
    return Call("objects", "GetObjectVersion", request, lambda r: models.object_from(r.object))


def create_data_key(key_context: Mapping[str, str]) -> Call[models.DataKey]:
    request = kpb.CreateDataKeyRequest(key_context=key_context)
    return Call("keys", "CreateDataKey", request, models.data_key_from)


def decrypt_data_key(encrypted_keys: bytes) -> Call[models.DataKey]:
    def parse(response: kpb.DecryptDataKeyResponse) -> models.DataKey:
        return models.DataKey(
            response.id, response.data_key, encrypted_keys, None, _key_ids(encrypted_keys)
        )

    request = kpb.DecryptDataKeyRequest(encrypted_keys=encrypted_keys)
    return Call("keys", "DecryptDataKey", request, parse)


def rekey_data_key(encrypted_keys: bytes, key_context: Mapping[str, str]) -> Call[models.DataKey]:
    request = kpb.RekeyDataKeyRequest(encrypted_keys=encrypted_keys, key_context=key_context)
    return Call("keys", "RekeyDataKey", request, models.data_key_from)


def _key_ids(encrypted_keys: bytes) -> tuple[str, ...]:
    """The "kek_<hex>.v<n>" ids in encrypted_keys, read locally (DecryptDataKey omits them)."""
    try:
        return EncryptedKeys.parse(encrypted_keys).key_ids
    except VaultError:  # the server opened it, so a newer format; the ids are only a courtesy
        return ()
