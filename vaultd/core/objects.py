"""The object vault: named values, each version encrypted under a fresh DEK.

A version's DEK is wrapped under the KEK of every context item (section 4), and its id is the
version's ULID, so a wrapped DEK is bound to exactly one version: a reader checks the id against
the version. Its entries are labelled Purpose.OBJECT_VERSION, so no data key can stand in for it
and DecryptDataKey does not unwrap it. The value is sealed with
associated data naming the environment, object and version, so ciphertext moved between
versions or objects does not open.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from ulid import ULID

from vaultd import storage
from vaultd.core.envelope import (
    Purpose,
    open_sealed,
)
from vaultd.core.errors import (
    BackendUnavailable,
    DecryptionFailed,
    IntegrityViolation,
    InvalidArgument,
    InvalidCursor,
    NameTaken,
    ObjectNotFound,
    VersionConflict,
)
from vaultd.core.keyring import Keyring
from vaultd.core.objectviews import (
    ListPage,
    ListQuery,
    ObjectMetadata,
    ObjectVersion,
    VaultObject,
    metadata_of,
    not_found,
)
from vaultd.core.scope import UNSCOPED, ContextScope
from vaultd.core.types import DEFAULT_MAX_VALUE_BYTES, Actor, store_errors
from vaultd.core.validation import (
    OBJECT_ID,
    stored_key_context,
    validate_key_context,
    validate_name,
    validate_object_id,
    validate_value_size,
    validate_version_id,
)
from vaultd.core.versions import (
    NewVersion,
    object_dek,
    seal_version,
    value_aad,
    value_aad_v1,
    version_keys,
)
from vaultd.storage.base import ObjectStore
from vaultd.storage.records import (
    Direction,
    KekStamp,
    ObjectEntry,
    ScanFilter,
    StoredObject,
    StoredVersion,
)

log = logging.getLogger(__name__)
DEFAULT_LIST_LIMIT = 10
MAX_LIST_LIMIT = 100


class ObjectVault:
    """Create, read, update, delete and list encrypted objects."""

    def __init__(
        self,
        store: ObjectStore,
        keyring: Keyring,
        max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        deleted_retention: timedelta = timedelta(0),
    ) -> None:
        self._store = store
        self._keyring = keyring
        self._max_value_bytes = max_value_bytes
        self._clock = clock
        self._deleted_retention = deleted_retention

    async def create(
        self,
        environment_id: str,
        actor: Actor,
        name: str,
        value: bytes,
        key_context: Mapping[str, str],
        *,
        scope: ContextScope = UNSCOPED,
    ) -> ObjectMetadata:
        name = validate_name(name)
        validate_value_size(value, self._max_value_bytes)
        context = validate_key_context(key_context)
        scope.check(dict(context))
        now = self._clock()
        object_id = f"secret_{ULID.from_datetime(now)}"

        async def write(version: StoredVersion, keks: Sequence[KekStamp]) -> StoredObject:
            obj = StoredObject(
                environment_id, object_id, name, dict(context), now, version, version_number=1
            )
            try:
                await self._store.create_object(obj, keks)
            except storage.NameTaken:
                raise NameTaken(
                    "an object with this name already exists in the environment"
                ) from None
            return obj

        sealed = NewVersion(environment_id, object_id, name, context, value, actor, now)
        return metadata_of(await self._write_sealed(sealed, write))

    async def get(
        self,
        environment_id: str,
        object_id: str,
        key_context: Mapping[str, str] | None = None,
        *,
        scope: ContextScope = UNSCOPED,
    ) -> VaultObject:
        """The object's current value. With `key_context`, NOT_FOUND (as for a missing object)
        unless the object's context holds every item given."""
        wanted = _context_filter(key_context)
        obj = await self._stored(environment_id, object_id, scope)
        if not _holds(obj, wanted):
            raise not_found(object_id)
        return await self._open(obj, current=True)

    async def get_by_name(
        self,
        environment_id: str,
        name: str,
        key_context: Mapping[str, str] | None = None,
        *,
        scope: ContextScope = UNSCOPED,
    ) -> VaultObject:
        """As `get`, by name."""
        wanted = _context_filter(key_context)
        normalised = validate_name(name)
        with store_errors():
            obj = await self._store.get_object_by_name(environment_id, normalised)
            if obj is None and normalised != name:
                # Stored before names were NFC-normalised, under the caller's very spelling.
                obj = await self._store.get_object_by_name(environment_id, name)
        if obj is None or not _holds(obj, wanted) or not scope.allows(obj.key_context):
            # Out of the caller's scope reads as missing: no tenant learns another's names.
            raise ObjectNotFound("no object with this name in the environment")
        if obj.name not in (normalised, name):
            # The store's name index points at an object of another name.
            raise _integrity(obj, "the name index points at an object of another name")
        return await self._open(obj, current=True)

    async def describe(
        self, environment_id: str, object_id: str, *, scope: ContextScope = UNSCOPED
    ) -> ObjectMetadata:
        return metadata_of(await self._stored(environment_id, object_id, scope))

    async def update(
        self,
        environment_id: str,
        actor: Actor,
        object_id: str,
        value: bytes,
        version_check: str | None,
        *,
        scope: ContextScope = UNSCOPED,
    ) -> ObjectMetadata:
        validate_value_size(value, self._max_value_bytes)
        if version_check is not None:
            validate_version_id(version_check, "version_check")
        current = await self._stored(environment_id, object_id, scope)
        # The stored name and context decide the new version's KEKs: check they are the ones
        # the current value was sealed with before wrapping anything under them.
        await self._open(current, current=True)
        # As stored: the same items, so the same KEKs, even for a context accepted before
        # today's character rules and normalisation.
        context = stored_key_context(current.key_context)

        async def write(version: StoredVersion, keks: Sequence[KekStamp]) -> StoredObject:
            try:
                number = await self._store.update_object(
                    environment_id, object_id, version, version_check, keks
                )
            except storage.VersionMismatch as exc:
                raise VersionConflict(object_id, exc.current_version_id) from None
            except storage.ObjectMissing:
                raise not_found(object_id) from None
            return replace(current, version=version, version_number=number)

        sealed = NewVersion(
            environment_id, object_id, current.name, context, value, actor, self._clock()
        )
        return metadata_of(await self._write_sealed(sealed, write))

    async def delete(
        self,
        environment_id: str,
        object_id: str,
        version_check: str | None,
        *,
        scope: ContextScope = UNSCOPED,
    ) -> None:
        """Mark the object deleted: gone to every read at once, recoverable for the retention
        (core/deleted.py), destroyed by the purge job after it. With no retention it is
        destroyed here; were this process to die in between, the purge job finishes it."""
        validate_object_id(object_id)
        if version_check is not None:
            validate_version_id(version_check, "version_check")
        await self._check_in_scope(environment_id, object_id, scope)
        with store_errors():
            try:
                await self._store.delete_object(
                    environment_id, object_id, version_check, self._clock()
                )
            except storage.VersionMismatch as exc:
                raise VersionConflict(object_id, exc.current_version_id) from None
            except storage.ObjectMissing:
                raise not_found(object_id) from None
            if not self._deleted_retention:
                with suppress(storage.ObjectMissing):  # an admin's PurgeObject came first
                    await self._store.purge_object(environment_id, object_id)

    async def list_versions(
        self, environment_id: str, object_id: str, *, scope: ContextScope = UNSCOPED
    ) -> list[ObjectVersion]:
        validate_object_id(object_id)
        await self._check_in_scope(environment_id, object_id, scope)
        with store_errors():
            found = await self._store.list_versions(environment_id, object_id)
        if found is None:
            raise not_found(object_id)
        infos, current_id = found
        # Kept oldest first and never removed singly: a version's place is its number.
        return [
            ObjectVersion(info, info.version_id == current_id, number)
            for number, info in enumerate(infos, start=1)
        ]

    async def get_version(
        self,
        environment_id: str,
        object_id: str,
        version_id: str,
        *,
        scope: ContextScope = UNSCOPED,
    ) -> VaultObject:
        validate_object_id(object_id)
        validate_version_id(version_id)
        with store_errors():
            obj = await self._store.get_object_version(environment_id, object_id, version_id)
        if obj is None or not scope.allows(obj.key_context):
            raise ObjectNotFound(
                f"object {object_id} has no version {version_id}",
                metadata={"object_id": object_id, "version_id": version_id},
            )
        return await self._open(obj)

    async def count(self, environment_id: str) -> int:
        """How many objects the environment holds (metadata only: the console's overview)."""
        with store_errors():
            return await self._store.count_objects(environment_id)

    async def list_objects(
        self, environment_id: str, query: ListQuery, *, scope: ContextScope = UNSCOPED
    ) -> ListPage:
        limit = query.limit or DEFAULT_LIST_LIMIT
        if not 1 <= limit <= MAX_LIST_LIMIT:
            raise InvalidArgument("limit", f"must be between 1 and {MAX_LIST_LIMIT}")
        if query.before and query.after:
            raise InvalidCursor("before", "cannot be combined with after")
        for side in ("before", "after"):
            cursor = getattr(query, side)
            if cursor and not OBJECT_ID.fullmatch(cursor):
                raise InvalidCursor(side, "is not an object id from a previous list")
        order = Direction.ASCENDING if query.ascending else Direction.DESCENDING
        in_scope = None if scope.unrestricted else scope.allows
        flt = ScanFilter(
            query.name_prefix,
            query.updated_after,
            dict(_context_filter(query.key_context)),
            in_scope,
        )

        async def scan(direction: Direction, cursor: str | None, n: int) -> list[ObjectEntry]:
            with store_errors():
                return await self._store.scan_objects(environment_id, direction, cursor, n, flt)

        if query.before:
            # The `limit` entries just before the cursor, walking backwards, shown in order.
            found = await scan(order.reverse(), query.before, limit + 1)
            page = list(reversed(found[:limit]))
            more_before = len(found) > limit
            more_after = bool(page) and bool(await scan(order, page[-1].id, 1))
        else:
            found = await scan(order, query.after or None, limit + 1)
            page = found[:limit]
            more_after = len(found) > limit
            more_before = bool(page) and bool(await scan(order.reverse(), page[0].id, 1))
        return ListPage(
            page,
            before=page[0].id if more_before else "",
            after=page[-1].id if more_after else "",
        )

    async def _stored(
        self, environment_id: str, object_id: str, scope: ContextScope = UNSCOPED
    ) -> StoredObject:
        """The object, or NOT_FOUND: also when it is outside the caller's scope, with the same
        message, so a scoped key cannot tell another tenant's object from none."""
        validate_object_id(object_id)
        with store_errors():
            obj = await self._store.get_object(environment_id, object_id)
        if obj is None or not scope.allows(obj.key_context):
            raise not_found(object_id)
        return obj

    async def _check_in_scope(
        self, environment_id: str, object_id: str, scope: ContextScope
    ) -> None:
        """NOT_FOUND for an object outside a scoped caller's scope. A key context never
        changes, so checking it before a separate delete or version list cannot go stale."""
        if not scope.unrestricted:
            await self._stored(environment_id, object_id, scope)

    async def _write_sealed(
        self,
        sealed: NewVersion,
        write: Callable[[StoredVersion, Sequence[KekStamp]], Awaitable[StoredObject]],
    ) -> StoredObject:
        """Seal a new version under the context's current KEKs and `write` it.

        The write carries the stamps of those KEKs, and the store refuses it if one is no longer
        stored as it was read (lost in a failover, shredded, re-wrapped): the DEK is then wrapped
        again under what the store holds now, once, so no acknowledged value ever depends on a
        KEK the store does not have.
        """
        for attempt in range(2):
            keks = await self._keyring.current_keks(sealed.environment_id, sealed.context)
            version = seal_version(sealed, keks)
            stamps = [KekStamp(k.kek_id, k.version, k.stamp) for k in keks]
            with store_errors():
                try:
                    return await write(version, stamps)
                except storage.KekChanged as exc:
                    changed = next(s for s in stamps if s.kek_id == exc.kek_id)
                    self._keyring.forget_changed(sealed.environment_id, changed)
                    if attempt:
                        raise BackendUnavailable(
                            "the store's keys changed while writing; retry later"
                        ) from None
        raise AssertionError("unreachable")

    async def _open(self, obj: StoredObject, *, current: bool = False) -> VaultObject:
        """The value, refused unless everything stored beside it authenticates: its key belongs
        to its version, and (for versions written since) its name and key context are the ones
        it was sealed with. `current`: the version was read as the object's current one, which
        must then be its newest (a pointer moved back to an older version is refused)."""
        v = obj.version
        newest = obj.newest_version_id
        if current and newest and newest != v.version_id:
            raise _integrity(obj, "the current-version pointer is not the newest version")
        try:
            keys = version_keys(v)
            dek, purpose = await object_dek(self._keyring, obj.environment_id, keys)
            if purpose is Purpose.OBJECT_VERSION:
                aad = value_aad(obj.environment_id, obj.id, v.version_id, obj.name, obj.key_context)
            else:
                aad = value_aad_v1(obj.environment_id, obj.id, v.version_id)
            value = open_sealed(dek, v.ciphertext, aad)
        except DecryptionFailed:
            log.error(
                "object %s version %s does not authenticate: its stored record was altered "
                "(name, key context, version or key swapped) or damaged",
                obj.id,
                v.version_id,
            )
            raise
        return VaultObject(metadata_of(obj), value)


def _integrity(obj: StoredObject, what: str) -> IntegrityViolation:
    log.error("object %s: %s; refusing to serve it", obj.id, what)
    return IntegrityViolation(
        f"object {obj.id} fails its integrity check: {what}", metadata={"object_id": obj.id}
    )


def _context_filter(key_context: Mapping[str, str] | None) -> dict[str, str]:
    """A read's or list's context filter, checked like any key context; empty: none."""
    return dict(validate_key_context(key_context)) if key_context else {}


def _holds(obj: StoredObject, wanted: Mapping[str, str]) -> bool:
    """Whether the object's key context has every wanted item, equal."""
    return all(obj.key_context.get(k) == v for k, v in wanted.items())
