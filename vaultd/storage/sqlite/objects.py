"""Objects and their versions in the embedded store (the ObjectStore part of SqliteStore).

The object's primary key (environment_id, id) is also the scan index: ids sort in creation
order. versions.seq records insertion order, so versions list oldest first, and a version's
number is how many versions of its object have a seq no greater than its own. The key context
index is in context_index.py. A deleted object keeps its rows with deleted_at set, which every
read, list and count filters on; undelete and purge are in deleted.py.
"""

from __future__ import annotations

import functools
import itertools
import json
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from vaultd.storage import codec
from vaultd.storage.errors import NameTaken, ObjectMissing, VersionMismatch
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
from vaultd.storage.sqlite.connection import SqliteConnection, check_ids, transaction
from vaultd.storage.sqlite.context_index import (
    index_object,
    reindex,
    scan_by_context,
)
from vaultd.storage.sqlite.keks import check_keks
from vaultd.storage.sqlite.scan import scan_conditions

_VERSION_COLUMNS = (
    "v.version_id, v.created_at, v.size, v.etag, v.key_ids, v.encrypted_keys, v.ciphertext,"
    " v.updated_by_id, v.updated_by_name"
)
_SELECT_OBJECT = f"""
SELECT o.id, o.name, o.key_context, o.created_at, {_VERSION_COLUMNS},
  (SELECT n.version_id FROM versions n
    WHERE n.environment_id = o.environment_id AND n.object_id = o.id ORDER BY n.seq DESC LIMIT 1),
  (SELECT COUNT(*) FROM versions n
    WHERE n.environment_id = o.environment_id AND n.object_id = o.id AND n.seq <= v.seq)
FROM objects o JOIN versions v
  ON v.environment_id = o.environment_id AND v.object_id = o.id AND v.version_id = {{version}}
WHERE o.environment_id = ? AND o.{{column}} = ? AND o.deleted_at IS NULL
"""
_BY_ID = _SELECT_OBJECT.format(version="o.current_version_id", column="id")
_BY_NAME = _SELECT_OBJECT.format(version="o.current_version_id", column="name")
_VERSION_BY_ID = _SELECT_OBJECT.format(version="?", column="id")


class SqliteObjects(SqliteConnection):
    """ObjectStore on SQLite."""

    async def create_object(self, obj: StoredObject, keks: Sequence[KekStamp] = ()) -> None:
        check_ids(obj.environment_id, obj.id)
        await self._run(lambda c: _create(c, obj, keks))

    async def get_object(self, environment_id: str, object_id: str) -> StoredObject | None:
        check_ids(environment_id, object_id)
        return await self._select(environment_id, _BY_ID, (environment_id, object_id))

    async def get_object_by_name(self, environment_id: str, name: str) -> StoredObject | None:
        check_ids(environment_id)
        return await self._select(environment_id, _BY_NAME, (environment_id, name))

    async def get_object_version(
        self, environment_id: str, object_id: str, version_id: str
    ) -> StoredObject | None:
        check_ids(environment_id, object_id)
        params = (version_id, environment_id, object_id)
        return await self._select(environment_id, _VERSION_BY_ID, params)

    async def list_versions(
        self, environment_id: str, object_id: str
    ) -> tuple[Sequence[VersionInfo], str] | None:
        check_ids(environment_id, object_id)
        # One statement, so the current id and the versions come from one snapshot.
        rows = await self._run(
            lambda c: c.execute(
                "SELECT o.current_version_id, v.version_id, v.created_at, v.size, v.etag"
                " FROM objects o JOIN versions v"
                "   ON v.environment_id = o.environment_id AND v.object_id = o.id"
                " WHERE o.environment_id = ? AND o.id = ? AND o.deleted_at IS NULL"
                " ORDER BY v.seq",
                (environment_id, object_id),
            ).fetchall()
        )
        if not rows:
            return None
        infos = [
            VersionInfo(vid, codec.from_micros(at), size, etag) for _, vid, at, size, etag in rows
        ]
        return infos, rows[0][0]

    async def update_object(
        self,
        environment_id: str,
        object_id: str,
        version: StoredVersion,
        expected_version_id: str | None,
        keks: Sequence[KekStamp] = (),
    ) -> int:
        check_ids(environment_id, object_id)
        return await self._run(
            lambda c: _update(c, environment_id, object_id, version, expected_version_id, keks)
        )

    async def delete_object(
        self,
        environment_id: str,
        object_id: str,
        expected_version_id: str | None,
        at: datetime | None = None,
    ) -> None:
        check_ids(environment_id, object_id)
        when = codec.to_micros(at or datetime.now(UTC))
        await self._run(lambda c: _delete(c, environment_id, object_id, expected_version_id, when))

    async def index_object_contexts(self, *, force: bool = False) -> int:
        # Opening the file did it once (schema.py); forced, it is done again.
        return await self._run(reindex) if force else 0

    async def count_objects(self, environment_id: str) -> int:
        check_ids(environment_id)
        sql = "SELECT COUNT(*) FROM objects WHERE environment_id = ? AND deleted_at IS NULL"
        count: int = await self._run(lambda c: c.execute(sql, (environment_id,)).fetchone()[0])
        return count

    async def scan_object_versions(
        self, environment_id: str, after: str, limit: int
    ) -> list[ObjectVersions]:
        check_ids(environment_id, after or None)
        if limit < 1:
            return []  # SQLite reads LIMIT -1 as "no limit"
        # One statement, so no object is seen half deleted.
        rows = await self._run(
            lambda c: c.execute(
                f"SELECT v.object_id, {_VERSION_COLUMNS} FROM versions v"
                " WHERE v.environment_id = ? AND v.object_id IN"
                "  (SELECT id FROM objects WHERE environment_id = ? AND id > ? ORDER BY id LIMIT ?)"
                " ORDER BY v.object_id, v.seq",
                (environment_id, environment_id, after, limit),
            ).fetchall()
        )
        return [
            ObjectVersions(object_id, tuple(_version(row[1:]) for row in group))
            for object_id, group in itertools.groupby(rows, key=lambda row: row[0])
        ]

    async def replace_encrypted_keys(
        self,
        environment_id: str,
        object_id: str,
        expected: StoredVersion,
        encrypted_keys: bytes,
        key_ids: tuple[str, ...],
        keks: Sequence[KekStamp] = (),
    ) -> bool:
        check_ids(environment_id, object_id)
        # One transaction: the KEK check, then the WHERE is the compare, the SET the swap. A
        # deleted object's versions are deleted with it, so they match nothing.
        sql = (
            "UPDATE versions SET key_ids = ?, encrypted_keys = ?"
            " WHERE environment_id = ? AND object_id = ? AND version_id = ?"
            " AND encrypted_keys = ?"
        )
        params = (
            _encode_key_ids(key_ids),
            encrypted_keys,
            environment_id,
            object_id,
            expected.version_id,
            expected.encrypted_keys,
        )

        def swap(conn: sqlite3.Connection) -> bool:
            with transaction(conn):
                check_keks(conn, environment_id, keks)
                return bool(conn.execute(sql, params).rowcount == 1)

        return await self._run(swap)

    async def scan_objects(
        self,
        environment_id: str,
        direction: Direction,
        cursor: str | None,
        limit: int,
        scan_filter: ScanFilter,
    ) -> list[ObjectEntry]:
        check_ids(environment_id)
        if limit < 1:
            return []  # SQLite reads LIMIT -1 as "no limit"
        in_scope = scan_filter.in_scope
        if in_scope is None:
            return await self._scan_step(environment_id, direction, cursor, limit, scan_filter)
        # Entries are read in batches and the scope applied to each stored context, until
        # enough pass or none are left.
        entries: list[ObjectEntry] = []
        batch = max(limit, _SCOPED_BATCH)
        while len(entries) < limit:
            step = await self._scan_step(environment_id, direction, cursor, batch, scan_filter)
            entries += await self._read(
                functools.partial(
                    _in_scope, environment_id=environment_id, entries=step, in_scope=in_scope
                )
            )
            if len(step) < batch:
                break
            cursor = step[-1].id
        return entries[:limit]

    async def _scan_step(
        self,
        environment_id: str,
        direction: Direction,
        cursor: str | None,
        limit: int,
        scan_filter: ScanFilter,
    ) -> list[ObjectEntry]:
        """Up to `limit` entries past the cursor that pass every filter but the scope."""
        if scan_filter.key_context:
            return await self._read(
                lambda c: scan_by_context(c, environment_id, direction, cursor, limit, scan_filter)
            )
        conditions, params, order = scan_conditions("objects", "id", direction, cursor, scan_filter)
        sql = (
            "SELECT id, name, updated_at FROM objects"
            " WHERE environment_id = ? AND deleted_at IS NULL"
            f"{conditions} ORDER BY id {order} LIMIT ?"
        )
        params = [environment_id, *params, limit]
        rows = await self._run(lambda c: c.execute(sql, params).fetchall())
        return [ObjectEntry(i, name, codec.from_micros(at)) for i, name, at in rows]

    async def _select(
        self, environment_id: str, sql: str, params: tuple[str, ...]
    ) -> StoredObject | None:
        row = await self._read(lambda c: c.execute(sql, params).fetchone())
        return None if row is None else _object(environment_id, row)


_SCOPED_BATCH = 100
"""Rows read at a time by a scoped scan, whose filter runs outside SQL."""


def _in_scope(
    conn: sqlite3.Connection,
    environment_id: str,
    entries: list[ObjectEntry],
    in_scope: Callable[[Mapping[str, str]], bool],
) -> list[ObjectEntry]:
    """The entries whose stored key context passes `in_scope`, in their order."""
    if not entries:
        return []
    marks = ",".join("?" * len(entries))
    rows = conn.execute(
        f"SELECT id, key_context FROM objects WHERE environment_id = ? AND id IN ({marks})",
        [environment_id, *(e.id for e in entries)],
    ).fetchall()
    contexts = dict(rows)
    # An object deleted since the step has no row left: it is not listed.
    return [
        e for e in entries if e.id in contexts and in_scope(codec.decode_context(contexts[e.id]))
    ]


def _create(conn: sqlite3.Connection, obj: StoredObject, keks: Sequence[KekStamp]) -> None:
    v = obj.version
    with transaction(conn):
        check_keks(conn, obj.environment_id, keks)
        taken = conn.execute(
            "SELECT 1 FROM objects WHERE environment_id = ? AND name = ?",
            (obj.environment_id, obj.name),
        ).fetchone()
        if taken:
            raise NameTaken("name taken")
        conn.execute(
            "INSERT INTO objects (environment_id, id, name, key_context, created_at,"
            " current_version_id, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                obj.environment_id,
                obj.id,
                obj.name,
                codec.encode_context(obj.key_context),
                codec.to_micros(obj.created_at),
                v.version_id,
                codec.to_micros(v.created_at),
            ),
        )
        _insert_version(conn, obj.environment_id, obj.id, v)
        index_object(conn, obj.environment_id, obj.id, obj.key_context)


def _update(
    conn: sqlite3.Connection,
    environment_id: str,
    object_id: str,
    version: StoredVersion,
    expected_version_id: str | None,
    keks: Sequence[KekStamp],
) -> int:
    """The new version's number, once it is current."""
    with transaction(conn):
        check_keks(conn, environment_id, keks)
        _check_current(conn, environment_id, object_id, expected_version_id)
        _insert_version(conn, environment_id, object_id, version)
        conn.execute(
            "UPDATE objects SET current_version_id = ?, updated_at = ?"
            " WHERE environment_id = ? AND id = ?",
            (version.version_id, codec.to_micros(version.created_at), environment_id, object_id),
        )
        sql = "SELECT COUNT(*) FROM versions WHERE environment_id = ? AND object_id = ?"
        number: int = conn.execute(sql, (environment_id, object_id)).fetchone()[0]
        return number


def _delete(
    conn: sqlite3.Connection,
    environment_id: str,
    object_id: str,
    expected_version_id: str | None,
    at: int,
) -> None:
    with transaction(conn):
        _check_current(conn, environment_id, object_id, expected_version_id)
        conn.execute(
            "UPDATE objects SET deleted_at = ? WHERE environment_id = ? AND id = ?",
            (at, environment_id, object_id),
        )


def _check_current(
    conn: sqlite3.Connection, environment_id: str, object_id: str, expected: str | None
) -> None:
    """ObjectMissing (also for a deleted object), or VersionMismatch when `expected` is given
    and is not current."""
    row = conn.execute(
        "SELECT current_version_id FROM objects"
        " WHERE environment_id = ? AND id = ? AND deleted_at IS NULL",
        (environment_id, object_id),
    ).fetchone()
    if row is None:
        raise ObjectMissing("no such object")
    if expected is not None and expected != row[0]:
        raise VersionMismatch(row[0])


def _insert_version(
    conn: sqlite3.Connection, environment_id: str, object_id: str, v: StoredVersion
) -> None:
    conn.execute(
        "INSERT INTO versions (environment_id, object_id, version_id, created_at, size, etag,"
        " key_ids, encrypted_keys, ciphertext, updated_by_id, updated_by_name)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            environment_id,
            object_id,
            v.version_id,
            codec.to_micros(v.created_at),
            v.size,
            v.etag,
            _encode_key_ids(v.key_ids),
            v.encrypted_keys,
            v.ciphertext,
            v.updated_by_id,
            v.updated_by_name,
        ),
    )


def _object(environment_id: str, row: tuple[Any, ...]) -> StoredObject:
    object_id, name, context, created = row[:4]
    context_map = codec.decode_context(context)
    return StoredObject(
        environment_id,
        object_id,
        name,
        context_map,
        codec.from_micros(created),
        _version(row[4:-2]),
        newest_version_id=row[-2],
        version_number=row[-1],
    )


def _version(row: Sequence[Any]) -> StoredVersion:
    """A version from its _VERSION_COLUMNS."""
    vid, created, size, etag, key_ids, encrypted_keys, ciphertext, by_id, by_name = row
    return StoredVersion(
        version_id=vid,
        created_at=codec.from_micros(created),
        size=size,
        etag=etag,
        key_ids=tuple(json.loads(key_ids)),
        encrypted_keys=encrypted_keys,
        ciphertext=ciphertext,
        updated_by_id=by_id,
        updated_by_name=by_name,
    )


def _encode_key_ids(key_ids: Sequence[str]) -> str:
    return json.dumps(list(key_ids))
