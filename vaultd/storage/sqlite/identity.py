"""The store's identity in the embedded store (the IdentityStore part of SqliteStore)."""

from __future__ import annotations

import sqlite3

from vaultd.storage import codec
from vaultd.storage.errors import StoreError
from vaultd.storage.records import StoreIdentity
from vaultd.storage.sqlite.connection import SqliteConnection, transaction


class SqliteIdentity(SqliteConnection):
    """IdentityStore on SQLite."""

    async def get_identity(self) -> StoreIdentity | None:
        def read(conn: sqlite3.Connection) -> StoreIdentity | None:
            row = conn.execute("SELECT id, created_at FROM store_identity").fetchone()
            if row is None:
                return None
            roots = conn.execute("SELECT fingerprint FROM store_root_keys").fetchall()
            return StoreIdentity(row[0], codec.from_micros(row[1]), frozenset(r[0] for r in roots))

        return await self._run(read)

    async def create_identity(self, identity: StoreIdentity) -> bool:
        def create(conn: sqlite3.Connection) -> bool:
            with transaction(conn):
                if conn.execute("SELECT 1 FROM store_identity").fetchone():
                    return False
                conn.execute(
                    "INSERT INTO store_identity VALUES (1, ?, ?)",
                    (identity.store_id, codec.to_micros(identity.created_at)),
                )
                _add_roots(conn, identity.root_fingerprints)
                return True

        return await self._run(create)

    async def add_root_fingerprints(self, fingerprints: frozenset[str]) -> None:
        def add(conn: sqlite3.Connection) -> None:
            with transaction(conn):
                if not conn.execute("SELECT 1 FROM store_identity").fetchone():
                    raise StoreError("the store has no identity to add root key fingerprints to")
                _add_roots(conn, fingerprints)

        await self._run(add)

    async def has_data(self) -> bool:
        tables = ("store_identity", "api_keys", "keks", "objects", "audit_events", "rewrap_jobs")
        sql = "SELECT " + " OR ".join(f"EXISTS (SELECT 1 FROM {t})" for t in tables)
        return bool(await self._run(lambda c: c.execute(sql).fetchone()[0]))


def _add_roots(conn: sqlite3.Connection, fingerprints: frozenset[str]) -> None:
    conn.executemany(
        "INSERT OR IGNORE INTO store_root_keys VALUES (?)", [(f,) for f in sorted(fingerprints)]
    )
