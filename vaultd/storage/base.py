"""The Store protocol: what core needs from a database, and nothing about crypto.

Every value that reaches a Store is already encrypted (wrapped keys, ciphertext) or is metadata
the caller chose to be plain (names, key contexts, timestamps). Each store keeps the same
promises, proven by tests/storage/test_contract.py:

- every change is atomic: a crash never leaves half an object, a name without its object, or a
  version without its object;
- `expected_version_id` is a compare-and-set against the current version, checked inside the
  same atomic step as the write, so no update is lost under any interleaving;
- a deleted object disappears from every read and list at once, its name is free at once, and
  its versions are purged with it;
- API keys are stored by the SHA-256 of their secret, never the secret; a revocation is final;
- audit events are appended in order, read back in that order from an opaque cursor, and
  trimmed by age on write.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Protocol


class StoreError(Exception):
    """Base of the storage errors; core maps each one onto a domain error."""


class StoreUnavailable(StoreError):
    """The database cannot be reached, timed out, or cannot take the write now.

    `cause` is a short code an operator can act on (ENOSPC, SQLITE_FULL, NO_REPLICA, TIMEOUT,
    ...); the message says it in words. Neither ever holds a value or a key.
    """

    def __init__(self, message: str, cause: str = "UNAVAILABLE") -> None:
        super().__init__(message)
        self.cause = cause


class NameTaken(StoreError):
    """Another live object in the environment already has this name."""


class ObjectMissing(StoreError):
    """No object with this id exists in the environment."""


class VersionMismatch(StoreError):
    """The expected version id is not the current one."""

    def __init__(self, current_version_id: str) -> None:
        super().__init__("version mismatch")
        self.current_version_id = current_version_id


class BadCursor(StoreError):
    """A cursor that no read of this store returned."""


class KekChanged(StoreError):
    """A write named a KEK version (by its stamp) that the store no longer holds as it was:
    lost in a failover or an emptied store, shredded, or re-wrapped since it was read. Nothing
    was written; the caller reads the KEK again and retries."""

    def __init__(self, kek_id: str) -> None:
        super().__init__(f"KEK {kek_id} changed in the store")
        self.kek_id = kek_id


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


class Store(Protocol):
    """Durable storage of objects and KEKs, namespaced by environment."""

    async def get_kek(self, environment_id: str, kek_id: str) -> KekRecord | None:
        """The KEK with its versions and state; None when it does not exist yet.

        Only what the store holds durably: under a replication rule (Redis `wait_replicas`) the
        answer comes once enough replicas hold everything it shows, StoreUnavailable otherwise,
        so a KEK version written but never confirmed is not put to use.
        """
        ...

    async def add_kek_version(self, environment_id: str, kek_id: str, kek: KekVersion) -> bool:
        """Add `kek` only if the KEK's newest version is `kek.version - 1` (0: none yet).

        Returns False, changing nothing, when another writer got there first or the KEK was
        shredded. Version 1 also enters the KEK into its environment's list (list_keks); so
        does any later version of a KEK an older release made, which is not listed yet.
        """
        ...

    async def list_keks(self, environment_id: str) -> list[KekRecord]:
        """Every KEK of the environment, shredded ones too, ordered by (item_key, item_value,
        kek_id)."""
        ...

    async def rewrap_kek_version(
        self, environment_id: str, kek_id: str, expected: KekVersion, rewrapped: KekVersion
    ) -> bool:
        """Replace version `expected.version`'s wrappings (provider_uri, wrapped_key and
        secondary) by those of `rewrapped`.

        Only those are taken from `rewrapped`: the version keeps its number, item and
        created_at (which rotation by age reads). A compare-and-set: False, changing nothing,
        unless the stored version equals `expected` in full (another rewrap or a shred got
        there first).
        """
        ...

    async def set_min_decryption_version(
        self, environment_id: str, kek_id: str, version: int
    ) -> bool:
        """Refuse entries under versions below `version` from now on (1 allows all again).

        False, changing nothing, when the KEK does not exist, is shredded, or has no `version`.
        """
        ...

    async def shred_kek(
        self, environment_id: str, kek_id: str, item_key: str, item_value: str, at: datetime
    ) -> bool:
        """Destroy every version of the KEK and leave a tombstone (also for a KEK not made yet).

        True when this call shredded it; False when it was shredded before (the first time
        stays).
        """
        ...

    async def create_object(self, obj: StoredObject, keks: Sequence[KekStamp] = ()) -> None:
        """Store a new object with its first version; NameTaken if the name is in use.

        KekChanged, writing nothing, unless every KEK version in `keks` is stored as stamped.
        """
        ...

    async def get_object(self, environment_id: str, object_id: str) -> StoredObject | None:
        """The object with its current version, or None."""
        ...

    async def get_object_by_name(self, environment_id: str, name: str) -> StoredObject | None:
        """The object with its current version, or None."""
        ...

    async def get_object_version(
        self, environment_id: str, object_id: str, version_id: str
    ) -> StoredObject | None:
        """The object with the given version, or None if either does not exist."""
        ...

    async def list_versions(
        self, environment_id: str, object_id: str
    ) -> tuple[Sequence[VersionInfo], str] | None:
        """All versions oldest first and the current version id, or None if no such object."""
        ...

    async def update_object(
        self,
        environment_id: str,
        object_id: str,
        version: StoredVersion,
        expected_version_id: str | None,
        keks: Sequence[KekStamp] = (),
    ) -> None:
        """Make `version` current. ObjectMissing, or VersionMismatch when the check is stale;
        KekChanged as for create_object."""
        ...

    async def delete_object(
        self, environment_id: str, object_id: str, expected_version_id: str | None
    ) -> None:
        """Delete the object, its name and its versions. ObjectMissing or VersionMismatch."""
        ...

    async def count_objects(self, environment_id: str) -> int:
        """How many objects the environment has."""
        ...

    async def scan_object_versions(
        self, environment_id: str, after: str, limit: int
    ) -> list[ObjectVersions]:
        """Up to `limit` objects with every version, ascending by id, strictly after `after`
        ("" from the first)."""
        ...

    async def replace_encrypted_keys(
        self,
        environment_id: str,
        object_id: str,
        expected: StoredVersion,
        encrypted_keys: bytes,
        key_ids: tuple[str, ...],
        keks: Sequence[KekStamp] = (),
    ) -> bool:
        """Swap one version's encrypted_keys and key_ids, nothing else (ciphertext untouched).

        A compare-and-set: False, changing nothing, unless the version exists and its
        encrypted_keys still equal `expected.encrypted_keys` (deleted, or rewrapped by another).
        KekChanged as for create_object.
        """
        ...

    async def scan_objects(
        self,
        environment_id: str,
        direction: Direction,
        cursor: str | None,
        limit: int,
        scan_filter: ScanFilter,
    ) -> list[ObjectEntry]:
        """Up to `limit` entries passing the filter, strictly past `cursor` in `direction`."""
        ...

    async def add_api_key(self, record: ApiKeyRecord, *, only_if_none: bool = False) -> bool:
        """Store a new API key; StoreError if its id or secret hash is in use.

        With `only_if_none`, store it only if no API key (revoked or not) exists yet, and return
        False otherwise: several processes bootstrapping one store create one key between them.
        """
        ...

    async def get_api_key(self, key_id: str) -> ApiKeyRecord | None:
        """The API key with this id, revoked or not, or None."""
        ...

    async def find_api_key(self, secret_hash: str) -> ApiKeyRecord | None:
        """The API key whose secret has this SHA-256 (hex), revoked or not, or None."""
        ...

    async def list_api_keys(self) -> list[ApiKeyRecord]:
        """Every API key of every environment, revoked ones too, oldest first."""
        ...

    async def revoke_api_key(self, key_id: str, revoked_at: datetime) -> ApiKeyRecord | None:
        """Mark the key revoked (a key revoked earlier keeps its time); None if no such key."""
        ...

    async def append_audit_event(self, event: AuditEvent, keep_after: datetime) -> None:
        """Append `event` to its environment's events, dropping events older than `keep_after`.

        Trimming may be approximate (Redis trims whole stream nodes) and happens per
        environment, on that environment's writes.
        """
        ...

    async def append_audit_events(self, events: Sequence[AuditEvent], keep_after: datetime) -> None:
        """Append `events` in their order, each to its environment's events, as one write: one
        transaction on SQLite, one pipelined round trip on Redis. Trimming as above.

        All or nothing on SQLite; on Redis a failure part way leaves a prefix stored. Either way
        the caller learns of the failure and none of the events counts as recorded.
        """
        ...

    async def read_audit_events(self, environment_id: str, query: AuditQuery) -> AuditPage:
        """Events of one environment ("": unauthenticated calls) in the order they were appended.

        BadCursor when `query.after` is not a cursor this store returned.
        """
        ...

    async def save_rewrap_job(self, job: RewrapJob, now: datetime) -> bool:
        """Store `job` (new or updated) if no other process holds it.

        Writes when no job has its id, when the stored one has the same owner, or when the
        stored one has no lease or its lease ended before `now`; returns False, changing
        nothing, otherwise.
        """
        ...

    async def get_rewrap_job(self, job_id: str) -> RewrapJob | None:
        """The job with this id, or None."""
        ...

    async def list_rewrap_jobs(self) -> list[RewrapJob]:
        """Every job of every environment, oldest first."""
        ...

    async def ping(self) -> None:
        """Raise StoreUnavailable when the database cannot answer."""
        ...

    async def durability(self) -> Durability:
        """What an acknowledged write survives, as the database is configured right now."""
        ...

    async def get_identity(self) -> StoreIdentity | None:
        """The store's identity, or None if it was never initialised (or was emptied)."""
        ...

    async def create_identity(self, identity: StoreIdentity) -> bool:
        """Write the identity if the store has none; False, changing nothing, if it has one."""
        ...

    async def add_root_fingerprints(self, fingerprints: frozenset[str]) -> None:
        """Add root key fingerprints to the identity's (for a rotated root key); the identity
        must exist."""
        ...

    async def has_data(self) -> bool:
        """Whether the store holds anything vaultd wrote (an identity, a key, an object, ...)."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...
