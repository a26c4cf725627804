"""The records a Store keeps and returns: plain frozen dataclasses, nothing about crypto.

Every value in them that reaches a store is already encrypted (wrapped keys, ciphertext) or is
metadata the caller chose to be plain (names, key contexts, timestamps).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum


@dataclass(frozen=True, slots=True)
class Wrapping:
    """A KEK version wrapped by one more provider key than its primary (a secondary key)."""

    provider_uri: str
    wrapped_key: bytes


@dataclass(frozen=True, slots=True)
class KekVersion:
    """One version of a key-encryption key, wrapped by a provider key (never stored in clear).

    The context item (item_key=item_value) it belongs to is kept in clear so that operators can
    find every KEK a rule governs and so that providers can bind it (AWS EncryptionContext).
    """

    item_key: str
    item_value: str
    version: int
    provider_uri: str
    wrapped_key: bytes
    created_at: datetime
    stamp: str = field(default="", compare=False)
    """Set by the store on every read: a fingerprint of the version exactly as stored. A write
    that names it (KekStamp) is refused with KekChanged once the store holds something else."""
    secondary: tuple[Wrapping, ...] = ()
    """The same KEK wrapped by the rule's secondary keys, in the rule's order: any one of
    them unwraps it when the primary key (provider_uri) cannot."""

    @property
    def wrappings(self) -> tuple[Wrapping, ...]:
        """Every wrapping of this version, the primary first."""
        return (Wrapping(self.provider_uri, self.wrapped_key), *self.secondary)

    @property
    def key_uris(self) -> tuple[str, ...]:
        return tuple(w.provider_uri for w in self.wrappings)


@dataclass(frozen=True, slots=True)
class KekStamp:
    """A KEK version a write depends on, as the store showed it (KekVersion.stamp).

    Object writes carry the stamps of the KEK versions that wrapped their DEK, and the store
    checks them inside the write's atomic step: a DEK is never stored wrapped under a KEK
    version the store does not hold exactly as it was read (docs/OPERATIONS.md).
    """

    kek_id: str
    version: int
    stamp: str


@dataclass(frozen=True, slots=True)
class KekRecord:
    """A KEK as stored: every version it has, and the state the lifecycle commands gave it.

    A shredded KEK keeps only this tombstone: its item, and no version, so nothing can ever
    unwrap under it again and no new version can be added (a shred is final).
    """

    kek_id: str
    item_key: str
    item_value: str
    versions: tuple[KekVersion, ...]
    """Oldest first; version i + 1 at index i. Empty once shredded."""
    min_decryption_version: int = 1
    """Entries wrapped under an older version are refused (retired), though still stored."""
    shredded_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class StoreIdentity:
    """Which store this is, written once when it is first initialised.

    `root_fingerprints` name the root key versions that served it (an HMAC of each, never the
    key): a vaultd whose root key file has none of them is pointed at another deployment's store.
    """

    store_id: str
    created_at: datetime
    root_fingerprints: frozenset[str]


@dataclass(frozen=True, slots=True)
class Durability:
    """What the store promises for a write it has acknowledged (docs/OPERATIONS.md).

    `durable` is True when an acknowledged write survives the store's process being killed and
    restarted, False when it may not, None when the store would not say (e.g. Redis with CONFIG
    disabled, as managed services do).
    """

    durable: bool | None
    description: str


class RewrapState(Enum):
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class RewrapJob:
    """A resumable job moving wrapped keys of some KEKs to their newest version and provider key.

    Jobs belong to no environment's keyspace (one list for every process to resume from), but
    each names the environment it works in. `owner` and `lease_until` say which process runs it:
    another may take it over once the lease has run out (its runner died).
    """

    id: str
    environment_id: str
    kek_ids: tuple[str, ...]
    state: RewrapState
    created_at: datetime
    updated_at: datetime
    cursor: str = ""
    """The last object id whose versions are all done, "" before the first."""
    objects_total: int = 0
    objects_done: int = 0
    versions_rewrapped: int = 0
    keks_rewrapped: int = 0
    error: str = ""
    owner: str = ""
    lease_until: datetime | None = None


@dataclass(frozen=True, slots=True)
class VersionInfo:
    """What ListObjectVersions shows of a version: no key material, no ciphertext."""

    version_id: str
    created_at: datetime
    size: int
    etag: str


@dataclass(frozen=True, slots=True)
class StoredVersion:
    """One immutable version of an object's value, encrypted."""

    version_id: str
    created_at: datetime
    size: int
    etag: str
    key_ids: tuple[str, ...]
    encrypted_keys: bytes
    ciphertext: bytes
    updated_by_id: str
    updated_by_name: str

    def info(self) -> VersionInfo:
        return VersionInfo(self.version_id, self.created_at, self.size, self.etag)


@dataclass(frozen=True, slots=True)
class ObjectVersions:
    """Every version of one object, oldest first: what a rewrap job walks."""

    object_id: str
    versions: tuple[StoredVersion, ...]


@dataclass(frozen=True, slots=True)
class StoredObject:
    """An object with one of its versions (the current one, unless asked for another)."""

    environment_id: str
    id: str
    name: str
    key_context: Mapping[str, str]
    created_at: datetime
    version: StoredVersion
    newest_version_id: str = field(default="", compare=False)
    """The id of the object's newest version, read in the same snapshot ("" when the store did
    not say): a reader of the current version refuses one that is not the newest. Not part of
    equality: it describes the read, not the object."""
    version_number: int = field(default=0, compare=False)
    """The place of `version` among the object's versions, 1 for the oldest (versions are kept
    oldest first and never removed singly, so the place is the number); 0 when not read."""


@dataclass(frozen=True, slots=True)
class DeletedObject:
    """An object deleted and not yet purged: what the purge job is shown."""

    environment_id: str
    object_id: str
    deleted_at: datetime


@dataclass(frozen=True, slots=True)
class ObjectEntry:
    """One row of a listing."""

    id: str
    name: str
    updated_at: datetime


class Direction(Enum):
    """Object ids sort in creation order (they are ULIDs), so scans run over ids."""

    ASCENDING = "asc"
    DESCENDING = "desc"

    def reverse(self) -> Direction:
        return Direction.DESCENDING if self is Direction.ASCENDING else Direction.ASCENDING


@dataclass(frozen=True, slots=True)
class ScanFilter:
    """Filters applied during a scan; an entry must pass every one that is set."""

    name_prefix: str = ""
    updated_after: datetime | None = None
    key_context: Mapping[str, str] = field(default_factory=dict)
    """Every item must be in the object's key context, with an equal value."""
    in_scope: Callable[[Mapping[str, str]], bool] | None = None
    """Asked of each object's stored key context (None: every context passes): how a
    context-scoped API key's listing leaves out other tenants' objects. The rule itself is
    core's (core/scope.py); a store only applies it."""


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    """An API key as stored: the SHA-256 of its secret (hex), never the secret itself."""

    id: str
    name: str
    environment_id: str
    permissions: tuple[str, ...]
    secret_hash: str
    created_at: datetime
    revoked_at: datetime | None = None
    context_constraints: tuple[tuple[str, str], ...] = ()
    """(context key, value) pairs the key is confined to; a value ending in `*` is a prefix.
    Empty: the key is not confined (core/scope.py says what they mean)."""


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One audited call or change. Never a value, plaintext, data key or API key: ids only.

    `environment_id` is "" for calls whose caller could not be authenticated; the stores keep
    those apart from every environment's events.
    """

    id: str
    type: str
    time: datetime
    environment_id: str
    actor_id: str
    actor_name: str
    outcome: str
    request_id: str
    method: str = ""
    peer: str = ""
    object_id: str = ""
    object_name: str = ""
    key_ids: tuple[str, ...] = ()
    key_context: Mapping[str, str] = field(default_factory=dict)
    data_key_id: str = ""
    api_key_id: str = ""
    # Its place in its writer's hash chain (core/auditchain.py); empty in events written
    # before chaining existed.
    chain: str = ""
    seq: int = 0
    mac: str = ""


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """Which events to read: strictly past `after` (a cursor), at or after `since`, of `type`."""

    after: str = ""
    since: datetime | None = None
    type: str = ""
    limit: int = 100


@dataclass(frozen=True, slots=True)
class AuditPage:
    """Events oldest first, and the cursor to continue from (`after` when nothing was read).

    A page shorter than the limit means the end was reached; reading on from `cursor` later
    returns only events appended since.
    """

    events: Sequence[AuditEvent]
    cursor: str


@dataclass(frozen=True, slots=True)
class ByokKeyRecord:
    """A BYOK key added at run time (AdminService.CreateByokKey): which provider key governs
    which context items of an environment.

    It matches one context item by key and value, or value prefix (`org_*`), and names the key
    URI whose KMS key wraps the matching items' KEKs.
    """

    id: str
    environment_id: str
    item_key: str
    pattern: str
    """The value matched: exact, or a prefix when it ends in a single `*`."""
    key_uri: str
    created_at: datetime
    verified_at: datetime | None = None
    verified: bool = False
    """The last verification's outcome (a wrap and unwrap of a probe through the provider)."""
    verification_error: str = ""
