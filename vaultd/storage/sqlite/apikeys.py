"""API keys in the embedded store (the ApiKeyStore part of SqliteStore)."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime
from typing import Any

from vaultd.storage import codec
from vaultd.storage.keys import API_KEY_ID, ENVIRONMENT_ID, SECRET_HASH, check
from vaultd.storage.records import ApiKeyRecord
from vaultd.storage.sqlite.connection import SqliteConnection, transaction

_API_KEYS = (
    "SELECT id, name, environment_id, permissions, secret_hash, created_at, revoked_at,"
    " context_constraints FROM api_keys"
)


class SqliteApiKeys(SqliteConnection):
    """ApiKeyStore on SQLite."""

    async def add_api_key(self, record: ApiKeyRecord, *, only_if_none: bool = False) -> bool:
        check(API_KEY_ID, record.id, "api key id")
        check(ENVIRONMENT_ID, record.environment_id, "environment id")
        check(SECRET_HASH, record.secret_hash, "secret hash")
        return await self._run(lambda c: _add_api_key(c, record, only_if_none))

    async def get_api_key(self, key_id: str) -> ApiKeyRecord | None:
        check(API_KEY_ID, key_id, "api key id")
        return await self._one_api_key("id", key_id)

    async def find_api_key(self, secret_hash: str) -> ApiKeyRecord | None:
        check(SECRET_HASH, secret_hash, "secret hash")
        return await self._one_api_key("secret_hash", secret_hash)

    async def list_api_keys(self) -> list[ApiKeyRecord]:
        rows = await self._run(lambda c: c.execute(_API_KEYS + " ORDER BY id").fetchall())
        return [_api_key(row) for row in rows]

    async def revoke_api_key(self, key_id: str, revoked_at: datetime) -> ApiKeyRecord | None:
        check(API_KEY_ID, key_id, "api key id")
        at = codec.to_micros(revoked_at)

        def revoke(conn: sqlite3.Connection) -> tuple[Any, ...] | None:
            with transaction(conn):
                conn.execute(
                    "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?",
                    (at, key_id),
                )
                row: tuple[Any, ...] | None = conn.execute(
                    _API_KEYS + " WHERE id = ?", (key_id,)
                ).fetchone()
                return row

        row = await self._run(revoke)
        return None if row is None else _api_key(row)

    async def _one_api_key(self, column: str, value: str) -> ApiKeyRecord | None:
        sql = f"{_API_KEYS} WHERE {column} = ?"
        row = await self._read(lambda c: c.execute(sql, (value,)).fetchone())
        return None if row is None else _api_key(row)


def _add_api_key(conn: sqlite3.Connection, record: ApiKeyRecord, only_if_none: bool) -> bool:
    with transaction(conn):
        if only_if_none and conn.execute("SELECT 1 FROM api_keys LIMIT 1").fetchone():
            return False
        conn.execute(
            "INSERT INTO api_keys (id, name, environment_id, permissions, secret_hash,"
            " created_at, context_constraints) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                record.id,
                record.name,
                record.environment_id,
                json.dumps(list(record.permissions)),
                record.secret_hash,
                codec.to_micros(record.created_at),
                codec.encode_constraints(record.context_constraints),
            ),
        )
        return True


def _api_key(row: tuple[Any, ...]) -> ApiKeyRecord:
    key_id, name, environment_id, permissions, secret_hash, created, revoked, constraints = row
    return ApiKeyRecord(
        id=key_id,
        name=name,
        environment_id=environment_id,
        permissions=tuple(json.loads(permissions)),
        secret_hash=secret_hash,
        created_at=codec.from_micros(created),
        revoked_at=None if revoked is None else codec.from_micros(revoked),
        context_constraints=codec.decode_constraints(constraints),
    )
