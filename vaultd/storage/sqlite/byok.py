"""BYOK key records in the embedded SQLite store (the ByokKeyStore part of SqliteStore).

One table, created on first use so older database files gain it without a migration step:
the record (codec.encode_byok_key) keyed by (environment, id), with the match unique per
environment.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

from vaultd.storage import codec
from vaultd.storage.records import ByokKeyRecord
from vaultd.storage.sqlite.connection import SqliteConnection

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS byok_keys (
    environment_id TEXT NOT NULL,
    id             TEXT NOT NULL,
    item_key       TEXT NOT NULL,
    pattern        TEXT NOT NULL,
    record         BLOB NOT NULL,
    PRIMARY KEY (environment_id, id),
    UNIQUE (environment_id, item_key, pattern)
) WITHOUT ROWID
"""


class SqliteByokKeys(SqliteConnection):
    """ByokKeyStore on SQLite."""

    _byok_ready = False

    async def _byok(self, work: Callable[[sqlite3.Connection], T]) -> T:
        if not self._byok_ready:
            await self._run(lambda c: c.execute(_SCHEMA))
            self._byok_ready = True
        result: T = await self._run(work)
        return result

    async def add_byok_key(self, record: ByokKeyRecord) -> ByokKeyRecord | None:
        def add(conn: sqlite3.Connection) -> ByokKeyRecord | None:
            conn.execute("BEGIN IMMEDIATE")
            try:
                row = conn.execute(
                    "SELECT record FROM byok_keys"
                    " WHERE environment_id = ? AND item_key = ? AND pattern = ?",
                    (record.environment_id, record.item_key, record.pattern),
                ).fetchone()
                if row is None:
                    conn.execute(
                        "INSERT INTO byok_keys VALUES (?, ?, ?, ?, ?)",
                        (
                            record.environment_id,
                            record.id,
                            record.item_key,
                            record.pattern,
                            codec.encode_byok_key(record),
                        ),
                    )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return None if row is None else codec.decode_byok_key(row[0])

        return await self._byok(add)

    async def get_byok_key(self, environment_id: str, byok_key_id: str) -> ByokKeyRecord | None:
        row = await self._byok(
            lambda c: c.execute(
                "SELECT record FROM byok_keys WHERE environment_id = ? AND id = ?",
                (environment_id, byok_key_id),
            ).fetchone()
        )
        return None if row is None else codec.decode_byok_key(row[0])

    async def list_byok_keys(self, environment_id: str) -> list[ByokKeyRecord]:
        rows = await self._byok(
            lambda c: c.execute(
                "SELECT record FROM byok_keys WHERE environment_id = ? ORDER BY id",
                (environment_id,),
            ).fetchall()
        )
        return [codec.decode_byok_key(r[0]) for r in rows]

    async def set_byok_verification(
        self, environment_id: str, byok_key_id: str, verified_at: datetime, ok: bool, error: str
    ) -> ByokKeyRecord | None:
        def update(conn: sqlite3.Connection) -> ByokKeyRecord | None:
            conn.execute("BEGIN IMMEDIATE")
            try:
                row = conn.execute(
                    "SELECT record FROM byok_keys WHERE environment_id = ? AND id = ?",
                    (environment_id, byok_key_id),
                ).fetchone()
                updated = None
                if row is not None:
                    updated = codec.byok_verified(
                        codec.decode_byok_key(row[0]), verified_at, ok, error
                    )
                    conn.execute(
                        "UPDATE byok_keys SET record = ? WHERE environment_id = ? AND id = ?",
                        (codec.encode_byok_key(updated), environment_id, byok_key_id),
                    )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return updated

        return await self._byok(update)

    async def delete_byok_key(self, environment_id: str, byok_key_id: str) -> ByokKeyRecord | None:
        def delete(conn: sqlite3.Connection) -> ByokKeyRecord | None:
            row = conn.execute(
                "DELETE FROM byok_keys WHERE environment_id = ? AND id = ? RETURNING record",
                (environment_id, byok_key_id),
            ).fetchone()
            return None if row is None else codec.decode_byok_key(row[0])

        return await self._byok(delete)
