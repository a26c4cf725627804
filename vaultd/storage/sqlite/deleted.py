"""Deleted objects in the embedded store: undelete, purge and what is due for purge (the soft
delete part of ObjectStore; the mark itself is objects.py's delete_object).

objects.deleted_at holds the deletion time; the partial index objects_deleted orders the
deleted objects by it for the purge job. A purge deletes the rows with secure_delete on
(connection.py), so the ciphertext is zeroed in the file, not left in free pages, and then
empties the write-ahead log, whose older frames still held it.
"""

from __future__ import annotations

import logging
import sqlite3
from datetime import datetime
from typing import Any

from vaultd.storage import codec
from vaultd.storage.errors import ObjectMissing
from vaultd.storage.records import DeletedObject
from vaultd.storage.sqlite.connection import SqliteConnection, check_ids, transaction
from vaultd.storage.sqlite.context_index import unindex_object

log = logging.getLogger(__name__)


class SqliteDeletedObjects(SqliteConnection):
    """Undelete, purge and the purge job's index, on SQLite."""

    async def deleted_context(self, environment_id: str, object_id: str) -> dict[str, str] | None:
        check_ids(environment_id, object_id)
        sql = (
            "SELECT key_context FROM objects"
            " WHERE environment_id = ? AND id = ? AND deleted_at IS NOT NULL"
        )
        row = await self._read(lambda c: c.execute(sql, (environment_id, object_id)).fetchone())
        return None if row is None else codec.decode_context(row[0])

    async def undelete_object(
        self, environment_id: str, object_id: str, deleted_since: datetime
    ) -> bool:
        check_ids(environment_id, object_id)
        sql = (
            "UPDATE objects SET deleted_at = NULL"
            " WHERE environment_id = ? AND id = ? AND deleted_at >= ?"
        )
        params = (environment_id, object_id, codec.to_micros(deleted_since))

        def restore(conn: sqlite3.Connection) -> bool:
            with transaction(conn):
                return bool(conn.execute(sql, params).rowcount == 1)

        return await self._run(restore)

    async def purge_object(
        self, environment_id: str, object_id: str, deleted_by: datetime | None = None
    ) -> bool:
        check_ids(environment_id, object_id)
        by = None if deleted_by is None else codec.to_micros(deleted_by)
        return await self._run(lambda c: _purge(c, environment_id, object_id, by) and _flush(c))

    async def due_for_purge(
        self, environment_id: str | None, before: datetime, limit: int
    ) -> list[DeletedObject]:
        if limit < 1:
            return []  # SQLite reads LIMIT -1 as "no limit"
        sql = "SELECT environment_id, id, deleted_at FROM objects WHERE deleted_at < ?"
        params: list[Any] = [codec.to_micros(before)]
        if environment_id is not None:
            check_ids(environment_id)
            sql += " AND environment_id = ?"
            params.append(environment_id)
        sql += " ORDER BY deleted_at LIMIT ?"
        params.append(limit)
        rows = await self._read(lambda c: c.execute(sql, params).fetchall())
        return [DeletedObject(env, i, codec.from_micros(at)) for env, i, at in rows]


def _flush(conn: sqlite3.Connection) -> bool:
    """Copy the write-ahead log into the file and empty it: secure_delete zeroes the purged
    rows in the pages written now, but the log's earlier frames still hold those pages as
    they were, ciphertext included, until a checkpoint overwrites them."""
    busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
    if busy:
        log.warning("a purged object's bytes stay in the sqlite log until its next checkpoint")
    return True


def _purge(conn: sqlite3.Connection, environment_id: str, object_id: str, by: int | None) -> bool:
    """The one hard-delete path: the object's versions, its key context index rows, then its
    row (and with it its name)."""
    ids = (environment_id, object_id)
    with transaction(conn):
        row = conn.execute(
            "SELECT deleted_at FROM objects WHERE environment_id = ? AND id = ?", ids
        ).fetchone()
        if row is None:
            raise ObjectMissing("no such object")
        deleted_at = row[0]
        if deleted_at is None or (by is not None and deleted_at > by):
            return False
        conn.execute("DELETE FROM versions WHERE environment_id = ? AND object_id = ?", ids)
        unindex_object(conn, environment_id, object_id)
        conn.execute("DELETE FROM objects WHERE environment_id = ? AND id = ?", ids)
        return True
