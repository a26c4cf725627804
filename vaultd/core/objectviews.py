"""What the object vault's calls return (metadata, values, versions, pages of a listing), and
the NOT_FOUND every object call answers for an object it cannot or may not see."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from vaultd import storage
from vaultd.core.errors import ObjectNotFound
from vaultd.core.types import Actor
from vaultd.storage.records import ObjectEntry, StoredObject


@dataclass(frozen=True, slots=True)
class ObjectMetadata:
    id: str
    name: str
    environment_id: str
    key_context: Mapping[str, str]
    key_ids: tuple[str, ...]
    version_id: str
    created_at: datetime
    updated_at: datetime
    updated_by: Actor
    version_number: int = 0
    """1 for the first version, then 2, 3, ... in creation order."""


@dataclass(frozen=True, slots=True)
class VaultObject:
    metadata: ObjectMetadata
    value: bytes


@dataclass(frozen=True, slots=True)
class ObjectVersion:
    info: storage.VersionInfo
    current: bool
    number: int = 0


@dataclass(frozen=True, slots=True)
class ListQuery:
    limit: int = 0
    before: str = ""
    after: str = ""
    ascending: bool = False
    name_prefix: str = ""
    updated_after: datetime | None = None
    key_context: Mapping[str, str] = field(default_factory=dict)
    """Only objects whose key context holds every item (empty: no filter)."""


@dataclass(frozen=True, slots=True)
class ListPage:
    entries: Sequence[ObjectEntry]
    before: str
    after: str


def metadata_of(obj: StoredObject) -> ObjectMetadata:
    v = obj.version
    return ObjectMetadata(
        id=obj.id,
        name=obj.name,
        environment_id=obj.environment_id,
        key_context=dict(obj.key_context),
        key_ids=v.key_ids,
        version_id=v.version_id,
        created_at=obj.created_at,
        updated_at=v.created_at,
        updated_by=Actor(v.updated_by_id, v.updated_by_name),
        version_number=obj.version_number,
    )


def not_found(object_id: str) -> ObjectNotFound:
    return ObjectNotFound(f"no object with id {object_id}", metadata={"object_id": object_id})
