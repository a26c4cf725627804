"""Per-API-key KEK counts in the embedded SQLite store (the NewKekCounts part of SqliteStore).

One table, created on first use so older database files gain it without a migration step.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import TypeVar

from vaultd.storage.sqlite.connection import SqliteConnection

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kek_counts (
    environment_id TEXT NOT NULL,
    api_key_id     TEXT NOT NULL,
    new_keks       INTEGER NOT NULL,
    PRIMARY KEY (environment_id, api_key_id)
) WITHOUT ROWID
"""

# One statement, so the check and the add are one write on the one writer connection: no
# other process's add can land between them (SQLite serialises writers on the file).
_ADMIT = """
INSERT INTO kek_counts VALUES (?, ?, 1)
ON CONFLICT (environment_id, api_key_id) DO UPDATE SET new_keks = new_keks + 1
    WHERE new_keks < ?
RETURNING new_keks
"""


class SqliteKekCounts(SqliteConnection):
    """NewKekCounts on SQLite."""

    _kek_counts_ready = False

    async def _kek_counts(self, work: Callable[[sqlite3.Connection], T]) -> T:
        if not self._kek_counts_ready:
            await self._run(lambda c: c.execute(_SCHEMA))
            self._kek_counts_ready = True
        result: T = await self._run(work)
        return result

    async def new_keks_of(self, environment_id: str, api_key_id: str) -> int:
        row = await self._kek_counts(
            lambda c: c.execute(
                "SELECT new_keks FROM kek_counts WHERE environment_id = ? AND api_key_id = ?",
                (environment_id, api_key_id),
            ).fetchone()
        )
        return 0 if row is None else int(row[0])

    async def admit_new_kek(self, environment_id: str, api_key_id: str, limit: int) -> bool:
        if limit < 1:
            raise ValueError("a KEK count limit must be at least 1")
        # fetchall: the statement runs to its end, so its write is committed before we return.
        rows = await self._kek_counts(
            lambda c: c.execute(_ADMIT, (environment_id, api_key_id, limit)).fetchall()
        )
        return bool(rows)
