"""What the clients return: small frozen records with datetimes, built from the responses.

Values and data keys are secrets, so they are left out of every repr: a record logged or shown in
a traceback never carries one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from vaultd.v1 import key_service_pb2 as kpb
from vaultd.v1 import object_service_pb2 as opb


@dataclass(frozen=True, slots=True)
class Actor:
    """The API key that wrote a version."""

    id: str
    name: str


@dataclass(frozen=True, slots=True)
class ObjectMetadata:
    id: str
    name: str
    environment_id: str
    key_context: Mapping[str, str]
    # "kek_<32 hex>.v<version>" for each KEK version that wraps the current data key.
    key_ids: tuple[str, ...]
    version_id: str
    created_at: datetime
    updated_at: datetime
    updated_by: Actor
    version_number: int = 0
    """1 for the object's first version, then 2, 3, ... (0 from a vaultd that predates it)."""


@dataclass(frozen=True, slots=True)
class VaultObject:
    id: str
    name: str
    value: bytes = field(repr=False)
    metadata: ObjectMetadata


@dataclass(frozen=True, slots=True)
class ObjectDigest:
    """One object as list_objects yields it."""

    id: str
    name: str
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class ObjectVersion:
    id: str
    created_at: datetime
    current_version: bool
    size: int
    etag: str
    version_number: int = 0


@dataclass(frozen=True, slots=True)
class DataKey:
    """A data key in clear (`key`, 32 bytes) with what to store next to the data.

    `key_context` is None for a key from decrypt_data_key: encrypted_keys records KEK ids, which
    are digests, not the context itself.
    """

    id: str
    key: bytes = field(repr=False)
    encrypted_keys: bytes = field(repr=False)
    key_context: Mapping[str, str] | None
    key_ids: tuple[str, ...]

    @property
    def data_key(self) -> bytes:
        """`key` under the proto's field name (CreateDataKeyResponse.data_key)."""
        return self.key


def to_datetime(timestamp: Timestamp) -> datetime:
    """A google.protobuf.Timestamp as an aware UTC datetime."""
    return timestamp.ToDatetime(tzinfo=UTC)


def metadata_from(message: opb.ObjectMetadata) -> ObjectMetadata:
    return ObjectMetadata(
        id=message.id,
        name=message.name,
        environment_id=message.environment_id,
        key_context=dict(message.key_context),
        key_ids=tuple(message.key_ids),
        version_id=message.version_id,
        created_at=to_datetime(message.created_at),
        updated_at=to_datetime(message.updated_at),
        updated_by=Actor(message.updated_by.id, message.updated_by.name),
        version_number=message.version_number,
    )


def object_from(message: opb.Object) -> VaultObject:
    return VaultObject(message.id, message.name, message.value, metadata_from(message.metadata))


def digest_from(message: opb.ObjectDigest) -> ObjectDigest:
    return ObjectDigest(message.id, message.name, to_datetime(message.updated_at))


def version_from(message: opb.ObjectVersion) -> ObjectVersion:
    return ObjectVersion(
        message.id,
        to_datetime(message.created_at),
        message.current_version,
        message.size,
        message.etag,
        message.version_number,
    )


def data_key_from(message: kpb.CreateDataKeyResponse | kpb.RekeyDataKeyResponse) -> DataKey:
    """A DataKey from CreateDataKey's or RekeyDataKey's response (the same fields)."""
    return DataKey(
        message.id,
        message.data_key,
        message.encrypted_keys,
        dict(message.key_context),
        tuple(message.key_ids),
    )
