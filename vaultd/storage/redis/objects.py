"""Objects and their versions in the Redis store (the ObjectStore part of RedisStore).

Each object is a hash (name, key context, created, current version id), a hash of its version
records by id and a list of its version infos in order; the environment keeps a name index, a
zset of object ids (the scan index: ULIDs sort in creation order), a digest per object
("<updated µs> <name>") that scans filter on, a zset per key context item of the ids of the
objects holding it (context_index.py), and a zset of deleted objects by deletion time (which
scans and counts leave out; soft delete's other half is in deleted.py). One script per change
keeps them together.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from vaultd.storage import codec
from vaultd.storage.errors import KekChanged, NameTaken, ObjectMissing, StoreError, VersionMismatch
from vaultd.storage.keys import OBJECT_ID, JobKind, Kind, check, job_key, key
from vaultd.storage.records import (
    Direction,
    KekStamp,
    ObjectEntry,
    ObjectVersions,
    ScanFilter,
    StoredObject,
    StoredVersion,
    VersionInfo,
)
from vaultd.storage.redis.connection import available, text
from vaultd.storage.redis.context_index import RedisContextIndex, context_keys


class ObjectKeys:
    """The keys one object's scripts touch."""

    def __init__(self, environment_id: str, object_id: str) -> None:
        self.object = key(environment_id, Kind.OBJECT, object_id)
        self.versions = key(environment_id, Kind.VERSIONS, object_id)
        self.history = key(environment_id, Kind.HISTORY, object_id)
        self.names = key(environment_id, Kind.NAMES)
        self.objects = key(environment_id, Kind.OBJECTS)
        self.digests = key(environment_id, Kind.DIGESTS)
        self.deleted = key(environment_id, Kind.DELETED)

    def all(self) -> list[str]:
        """In the order CREATE and PURGE declare them (PURGE adds `deleted`)."""
        return [self.object, self.versions, self.history, self.names, self.objects, self.digests]


class RedisObjects(RedisContextIndex):
    """ObjectStore on Redis."""

    @available
    async def create_object(self, obj: StoredObject, keks: Sequence[KekStamp] = ()) -> None:
        v = obj.version
        kek_keys, kek_args = _kek_checks(obj.environment_id, keks)
        item_keys = context_keys(obj.environment_id, obj.key_context)
        reply = await self._write(
            self._scripts.create,
            keys=ObjectKeys(obj.environment_id, obj.id).all() + item_keys + kek_keys,
            args=[
                obj.id,
                obj.name,
                codec.encode_context(obj.key_context),
                codec.to_micros(obj.created_at),
                v.version_id,
                codec.encode_version(v),
                codec.encode_version_info(v.info()),
                codec.to_micros(v.created_at),
                len(item_keys),
                *kek_args,
            ],
            changed=lambda reply: reply == b"ok",
        )
        _raise_if_kek_changed(reply, keks)
        if reply == b"name_taken":
            raise NameTaken("name taken")
        if reply == b"id_taken":
            raise StoreError("object id already in use")

    @available
    async def get_object(self, environment_id: str, object_id: str) -> StoredObject | None:
        return await self._get_object(environment_id, object_id, "")

    @available
    async def get_object_by_name(self, environment_id: str, name: str) -> StoredObject | None:
        # Two round trips: a script may only touch keys named in its call, and the object's key
        # is known only once the name is resolved. An object deleted in between reads as None,
        # as it would a moment later.
        object_id = await self._redis.hget(key(environment_id, Kind.NAMES), name)
        if object_id is None:
            return None
        return await self._get_object(environment_id, text(object_id), "")

    @available
    async def get_object_version(
        self, environment_id: str, object_id: str, version_id: str
    ) -> StoredObject | None:
        return await self._get_object(environment_id, object_id, version_id)

    @available
    async def list_versions(
        self, environment_id: str, object_id: str
    ) -> tuple[Sequence[VersionInfo], str] | None:
        o = ObjectKeys(environment_id, object_id)
        reply = await self._scripts.list_versions(keys=[o.object, o.history])
        if reply is None:
            return None
        current, *infos = reply
        return [codec.decode_version_info(info) for info in infos], text(current)

    @available
    async def update_object(
        self,
        environment_id: str,
        object_id: str,
        version: StoredVersion,
        expected_version_id: str | None,
        keks: Sequence[KekStamp] = (),
    ) -> int:
        o = ObjectKeys(environment_id, object_id)
        kek_keys, kek_args = _kek_checks(environment_id, keks)
        reply = await self._write(
            self._scripts.update,
            keys=[o.object, o.versions, o.history, o.digests, *kek_keys],
            args=[
                object_id,
                version.version_id,
                codec.encode_version(version),
                codec.encode_version_info(version.info()),
                codec.to_micros(version.created_at),
                expected_version_id or "",
                *kek_args,
            ],
            changed=_ok,
        )
        if reply[0] == b"kek_changed":
            raise KekChanged(keks[int(reply[1]) - 1].kek_id)
        _raise_for(reply)
        return int(reply[1])

    @available
    async def delete_object(
        self,
        environment_id: str,
        object_id: str,
        expected_version_id: str | None,
        at: datetime | None = None,
    ) -> None:
        o = ObjectKeys(environment_id, object_id)
        # Listed before the mark, outside the environment's slot (a script cannot reach both):
        # a crash in between leaves an environment listed with nothing due, never the reverse.
        await self._redis.sadd(job_key(JobKind.DELETED_ENVIRONMENTS), environment_id)
        reply = await self._write(
            self._scripts.delete,
            keys=[o.object, o.deleted],
            args=[
                object_id,
                expected_version_id or "",
                codec.to_micros(at or datetime.now(UTC)),
            ],
            changed=_ok,
        )
        _raise_for(reply)

    @available
    async def count_objects(self, environment_id: str) -> int:
        keys = [key(environment_id, Kind.OBJECTS), key(environment_id, Kind.DELETED)]
        return int(await self._scripts.count_live(keys=keys))

    @available
    async def scan_object_versions(
        self, environment_id: str, after: str, limit: int
    ) -> list[ObjectVersions]:
        if after:
            check(OBJECT_ID, after, "object id")
        if limit < 1:
            return []
        # Two steps: a script may only touch keys named in its call, and the versions' keys are
        # known only once the ids are read. An object deleted in between is left out.
        objects = key(environment_id, Kind.OBJECTS)
        start = f"({after}" if after else "-"
        ids = [text(i) for i in await self._redis.zrangebylex(objects, start, "+", 0, limit)]
        if not ids:
            return []
        object_keys = [ObjectKeys(environment_id, i) for i in ids]
        reply = await self._scripts.get_versions(
            keys=[name for o in object_keys for name in (o.history, o.versions)]
        )
        found: list[ObjectVersions] = []
        for object_id, (infos, records) in zip(ids, reply, strict=True):
            by_id = {v.version_id: v for v in map(codec.decode_version, records)}
            order = [codec.decode_version_info(info).version_id for info in infos]
            if order:
                found.append(ObjectVersions(object_id, tuple(by_id[vid] for vid in order)))
        return found

    @available
    async def replace_encrypted_keys(
        self,
        environment_id: str,
        object_id: str,
        expected: StoredVersion,
        encrypted_keys: bytes,
        key_ids: tuple[str, ...],
        keks: Sequence[KekStamp] = (),
    ) -> bool:
        kek_keys, kek_args = _kek_checks(environment_id, keks)
        swapped = await self._write(
            self._scripts.replace_keys,
            keys=[ObjectKeys(environment_id, object_id).versions, *kek_keys],
            args=[
                expected.version_id,
                expected.encrypted_keys,
                codec.encode_version_keys(key_ids, encrypted_keys),
                codec.FORMAT,
                codec.VERSION_FIELDS_BEFORE_KEYS,
                *kek_args,
            ],
            changed=lambda reply: reply == 1,
        )
        _raise_if_kek_changed(swapped, keks)
        return bool(swapped)

    @available
    async def scan_objects(
        self,
        environment_id: str,
        direction: Direction,
        cursor: str | None,
        limit: int,
        scan_filter: ScanFilter,
    ) -> list[ObjectEntry]:
        if scan_filter.key_context:
            return await self._scan_by_context(
                environment_id, direction, cursor, limit, scan_filter
            )
        after = scan_filter.updated_after
        fixed = [
            scan_filter.name_prefix,
            "" if after is None else codec.to_micros(after),
        ]
        keys = [
            key(environment_id, Kind.OBJECTS),
            key(environment_id, Kind.DIGESTS),
            key(environment_id, Kind.DELETED),
        ]
        entries: list[ObjectEntry] = []
        position = cursor or ""
        while len(entries) < limit:
            # A scoped scan drops entries after the script's step: ask for a whole step's worth,
            # so a sparse tenant costs one step per scan budget, not one per page.
            wanted = limit - len(entries) if scan_filter.in_scope is None else self._scan_budget
            reply = await self._scripts.scan(
                keys=keys, args=[direction.value, position, wanted, self._scan_budget, *fixed]
            )
            position = text(reply[0])
            found = [_entry(i, d) for i, d in zip(reply[1::2], reply[2::2], strict=True)]
            entries += await self._in_scope(environment_id, found, scan_filter)
            if not position:
                break
        return entries[:limit]

    async def _get_object(
        self, environment_id: str, object_id: str, version_id: str
    ) -> StoredObject | None:
        # The three keys the read needs, not all of ObjectKeys: each name is checked and built.
        keys = [
            key(environment_id, Kind.OBJECT, object_id),
            key(environment_id, Kind.VERSIONS, object_id),
            key(environment_id, Kind.HISTORY, object_id),
        ]
        reply = await self._script(self._scripts.get, keys=keys, args=[version_id])
        if reply is None:
            return None
        name, context, created, record, newest, place = reply
        return StoredObject(
            environment_id=environment_id,
            id=object_id,
            name=text(name),
            key_context=codec.decode_context(context),
            created_at=codec.from_micros(int(created)),
            version=codec.decode_version(record),
            newest_version_id=codec.decode_version_info(newest).version_id if newest else "",
            version_number=_place(place, version_id),
        )


def _place(place: Any, version_id: str) -> int:
    """A version's number from the GET script's `place`: the count, or the infos to search."""
    if not version_id:
        return int(place)
    ids = [codec.decode_version_info(info).version_id for info in place]
    return ids.index(version_id) + 1 if version_id in ids else 0


def _kek_checks(environment_id: str, keks: Sequence[KekStamp]) -> tuple[list[str], list[str | int]]:
    """The KEYS and ARGV by which a write script checks KEK stamps (scripts.KEKS_CHANGED)."""
    keys = [key(environment_id, Kind.KEK, k.kek_id) for k in keks]
    args: list[str | int] = [part for k in keks for part in (k.version, k.stamp)]
    return keys, args


def _raise_if_kek_changed(reply: Any, keks: Sequence[KekStamp]) -> None:
    """KekChanged when a create or replace script said "kek_changed:<n>"."""
    if isinstance(reply, bytes) and reply.startswith(b"kek_changed:"):
        raise KekChanged(keks[int(reply.partition(b":")[2]) - 1].kek_id)


def _ok(reply: list[bytes]) -> bool:
    """Whether an update or delete script made its change."""
    return reply[0] == b"ok"


def _raise_for(reply: list[bytes]) -> None:
    """Raise what an update or delete script's refusal means; return on {"ok"}."""
    status = reply[0]
    if status == b"missing":
        raise ObjectMissing("no such object")
    if status == b"mismatch":
        raise VersionMismatch(text(reply[1]))
    if status == b"version_taken":
        raise StoreError("version id already in use")


def _entry(object_id: bytes, digest: bytes) -> ObjectEntry:
    updated, _, name = digest.partition(b" ")
    return ObjectEntry(text(object_id), text(name), codec.from_micros(int(updated)))
