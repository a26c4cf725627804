"""The Store protocol: what core needs from a database, and nothing about crypto.

`Store` is composed of one narrow protocol per aggregate (objects, KEKs, API keys, audit events,
rewrap jobs, BYOK keys, KEK counts, the store's identity, its connection), the way redis-py
composes its command mixins; a consumer names only the ones it uses. Records are in records.py,
errors in errors.py. Each store keeps the same promises, proven per aggregate by
tests/storage/test_*_contract.py:

- every change is atomic: a crash never leaves half an object, a name without its object, or a
  version without its object;
- `expected_version_id` is a compare-and-set against the current version, checked inside the
  same atomic step as the write, so no update is lost under any interleaving;
- a deleted object disappears from every read, list and count at once, but keeps its versions
  and its name (reserved: NameTaken) until it is purged; an undelete within the retention brings
  it back exactly; a purge destroys every byte of it and frees its name;
- API keys are stored by the SHA-256 of their secret, never the secret; a revocation is final;
- audit events are appended in order, read back in that order from an opaque cursor, and
  trimmed by age on write.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from vaultd.storage.records import (
    ApiKeyRecord,
    AuditEvent,
    AuditPage,
    AuditQuery,
    ByokKeyRecord,
    DeletedObject,
    Direction,
    Durability,
    KekRecord,
    KekStamp,
    KekVersion,
    ObjectEntry,
    ObjectVersions,
    RewrapJob,
    ScanFilter,
    StoredObject,
    StoredVersion,
    StoreIdentity,
    VersionInfo,
)


class KekStore(Protocol):
    """Key-encryption keys: their versions, wrapped by provider keys, and their lifecycle state."""

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


class ObjectStore(Protocol):
    """Objects and their immutable versions, namespaced by environment."""

    async def create_object(self, obj: StoredObject, keks: Sequence[KekStamp] = ()) -> None:
        """Store a new object with its first version; NameTaken if the name is in use.

        KekChanged, writing nothing, unless every KEK version in `keks` is stored as stamped.
        """
        ...

    async def get_object(self, environment_id: str, object_id: str) -> StoredObject | None:
        """The object with its current version (version_number set, as by every read of an
        object), or None."""
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
    ) -> int:
        """Make `version` current and return its number (how many versions the object now
        has). ObjectMissing, or VersionMismatch when the check is stale; KekChanged as for
        create_object."""
        ...

    async def delete_object(
        self,
        environment_id: str,
        object_id: str,
        expected_version_id: str | None,
        at: datetime | None = None,
    ) -> None:
        """Mark the object deleted at `at` (None: now), atomically. From then on every read,
        list and count treats it as missing; its versions stay, and its name stays reserved,
        until purge_object. ObjectMissing (also when deleted already) or VersionMismatch."""
        ...

    async def deleted_context(self, environment_id: str, object_id: str) -> dict[str, str] | None:
        """The key context of a deleted, not yet purged object; None for any other (what a
        context-scoped UndeleteObject checks before it restores anything)."""
        ...

    async def undelete_object(
        self, environment_id: str, object_id: str, deleted_since: datetime
    ) -> bool:
        """Clear the deleted mark of an object deleted at or after `deleted_since`; False,
        changing nothing, when there is no such object, it is live, or was deleted earlier."""
        ...

    async def purge_object(
        self, environment_id: str, object_id: str, deleted_by: datetime | None = None
    ) -> bool:
        """Destroy a deleted object, every version and its name for good (the one hard-delete
        path). False, changing nothing, when it is live or (with `deleted_by`) was deleted
        after `deleted_by`; ObjectMissing when there is no such object."""
        ...

    async def due_for_purge(
        self, environment_id: str | None, before: datetime, limit: int
    ) -> list[DeletedObject]:
        """Up to `limit` objects of the environment (None: of every environment) deleted before
        `before` and not purged yet, read from an index of deleted objects by time."""
        ...

    async def index_object_contexts(self, *, force: bool = False) -> int:
        """Enter objects an older vaultd wrote into the key context index: once per store,
        unless `force` (then every object, again; idempotent). Returns how many it entered."""
        ...

    async def count_objects(self, environment_id: str) -> int:
        """How many live (not deleted) objects the environment has."""
        ...

    async def scan_object_versions(
        self, environment_id: str, after: str, limit: int
    ) -> list[ObjectVersions]:
        """Up to `limit` objects with every version, ascending by id, strictly after `after`
        ("" from the first). Deleted objects not yet purged are included: they may be
        undeleted, so a rewrap must move their keys too."""
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
        """Up to `limit` entries passing the filter, strictly past `cursor` in `direction`.

        With `scan_filter.key_context`, the store walks an index of the objects holding one of
        its items, reading no object that lacks it, and checks each candidate's own context.
        """
        ...


class ApiKeyStore(Protocol):
    """API keys, stored by the SHA-256 of their secret, never the secret; a revocation is final."""

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


class AuditStore(Protocol):
    """Audit events, appended in order per environment and trimmed by age on write."""

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


class JobStore(Protocol):
    """Rewrap jobs: one list, outside every environment's keyspace, for any process to resume;
    and named leases, which say which process runs a job only one may run (the purge job)."""

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

    async def take_lease(self, name: str, owner: str, until: datetime, now: datetime) -> bool:
        """Hold the lease `name` until `until`, unless another owner holds it until `now` or
        later; whether `owner` holds it now. Taking it again extends it."""
        ...

    async def release_lease(self, name: str, owner: str) -> None:
        """Give up `owner`'s hold on `name` (nothing, if another holds it)."""
        ...


class ByokKeyStore(Protocol):
    """BYOK key records (docs/FORMAT.md, "BYOK key records").

    The store keeps at most one record per (environment, item key, pattern); adding a second is
    refused with the one already there. It knows nothing of providers or verification beyond
    the outcome it is told to record.
    """

    async def add_byok_key(self, record: ByokKeyRecord) -> ByokKeyRecord | None:
        """Add the record; None when added, or the record already holding its match."""
        ...

    async def get_byok_key(self, environment_id: str, byok_key_id: str) -> ByokKeyRecord | None: ...

    async def list_byok_keys(self, environment_id: str) -> list[ByokKeyRecord]:
        """The environment's records, oldest first."""
        ...

    async def set_byok_verification(
        self, environment_id: str, byok_key_id: str, verified_at: datetime, ok: bool, error: str
    ) -> ByokKeyRecord | None:
        """Record a verification's outcome; the updated record, None if there is none."""
        ...

    async def delete_byok_key(self, environment_id: str, byok_key_id: str) -> ByokKeyRecord | None:
        """Remove the record; the removed record, None if there was none."""
        ...


class NewKekCounts(Protocol):
    """Durable counts of the new KEKs admitted for each API key (docs/FORMAT.md, "KEK counts").

    A count lives in the store, not in a process, so the per-key total KEK quota (core/quota.py)
    holds across restarts and across the processes sharing one store. It is raised in one
    atomic check-and-add, so concurrent callers in any number of processes never pass the
    limit between them. An admitted KEK whose making then fails stays counted: the count is an
    upper bound of the KEKs the key made, never below it.
    """

    async def new_keks_of(self, environment_id: str, api_key_id: str) -> int:
        """How many new KEKs were admitted for the API key (0 when none)."""
        ...

    async def admit_new_kek(self, environment_id: str, api_key_id: str, limit: int) -> bool:
        """Count one more new KEK for the API key, unless `limit` (>= 1) are counted already;
        whether it was counted."""
        ...


class IdentityStore(Protocol):
    """Which store this is (StoreIdentity), and whether it holds anything at all."""

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


class StoreConnection(Protocol):
    """The database behind the store: whether it answers, what it promises, its release."""

    async def ping(self) -> None:
        """Raise StoreUnavailable when the database cannot answer."""
        ...

    async def durability(self) -> Durability:
        """What an acknowledged write survives, as the database is configured right now."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


class Store(
    KekStore,
    ObjectStore,
    ApiKeyStore,
    AuditStore,
    JobStore,
    ByokKeyStore,
    NewKekCounts,
    IdentityStore,
    StoreConnection,
    Protocol,
):
    """Durable storage of objects and KEKs, namespaced by environment: every aggregate."""
