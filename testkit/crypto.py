"""What the crypto attack tests share: a real server's stored bytes, read and written as an
attacker with the store (a SQLite file, a Redis database) would, beside the server's back.

Only the record layouts of vaultd.storage are used (the SQLite columns, the codec of the Redis
records), never the store classes: the attacker edits bytes, not through vaultd.
"""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from typing import Any

import grpc
import pytest
import redis

from testkit.auth import bearer
from testkit.grpc_errors import details_of
from testkit.running import Running
from vaultd.storage import codec
from vaultd.storage.keys import Kind, key
from vaultd.storage.records import StoredVersion
from vaultd.v1 import admin_service_pb2 as apb

ENV = "default"

# The stores whose bytes these tests edit: the embedded file and a plain Redis.
STORES = pytest.mark.parametrize("running", ["sqlite", "redis"], indirect=True)


class RawStore:
    """The stored records of one running server, edited in place."""

    def __init__(self, running: Running) -> None:
        self.kind = running.kind
        self._db_path = running.data_dir / "vaultd.db"
        self._redis: redis.Redis | None = (
            redis.Redis.from_url(running.redis_url) if running.redis_url else None
        )

    def close(self) -> None:
        if self._redis is not None:
            self._redis.close()

    def _sql(self) -> sqlite3.Connection:
        return sqlite3.connect(self._db_path, isolation_level=None, timeout=10)

    def version(self, object_id: str, version_id: str) -> StoredVersion:
        if self._redis is None:
            with self._sql() as conn:
                row = conn.execute(
                    "SELECT version_id, created_at, size, etag, key_ids, encrypted_keys,"
                    " ciphertext, updated_by_id, updated_by_name FROM versions"
                    " WHERE environment_id = ? AND object_id = ? AND version_id = ?",
                    (ENV, object_id, version_id),
                ).fetchone()
            assert row is not None
            return StoredVersion(
                version_id=row[0],
                created_at=codec.from_micros(row[1]),
                size=row[2],
                etag=row[3],
                key_ids=tuple(row[4].split(",")) if row[4] else (),
                encrypted_keys=bytes(row[5]),
                ciphertext=bytes(row[6]),
                updated_by_id=row[7],
                updated_by_name=row[8],
            )
        raw = self._redis.hget(key(ENV, Kind.VERSIONS, object_id), version_id)
        assert raw is not None
        return codec.decode_version(raw)  # type: ignore[arg-type]  # no decode_responses: bytes

    def write_keys(
        self, object_id: str, version_id: str, encrypted_keys: bytes, ciphertext: bytes
    ) -> None:
        """Replace a version's encrypted_keys and ciphertext, leaving the rest of its record."""
        if self._redis is None:
            with self._sql() as conn:
                changed = conn.execute(
                    "UPDATE versions SET encrypted_keys = ?, ciphertext = ?"
                    " WHERE environment_id = ? AND object_id = ? AND version_id = ?",
                    (encrypted_keys, ciphertext, ENV, object_id, version_id),
                ).rowcount
            assert changed == 1
            return
        stored = self.version(object_id, version_id)
        forged = replace(stored, encrypted_keys=encrypted_keys, ciphertext=ciphertext)
        self._redis.hset(
            key(ENV, Kind.VERSIONS, object_id), version_id, codec.encode_version(forged)
        )

    def execute_sql(self, sql: str, *args: Any) -> int:
        with self._sql() as conn:
            return int(conn.execute(sql, args).rowcount)

    @property
    def redis(self) -> redis.Redis:
        assert self._redis is not None
        return self._redis


async def all_keks(admin: Any) -> list[Any]:
    """Every KEK of the caller's environment, through every page of ListKeks."""
    found: list[Any] = []
    after = ""
    while True:
        page = await admin.ListKeks(apb.ListKeksRequest(limit=1000, after=after))
        found.extend(page.keks)
        after = page.list_metadata.after
        if not after:
            return found


async def refused(call: Any, request: Any, api_key: str | None = None) -> tuple[Any, str]:
    """(status code, ErrorInfo reason) of a call that must fail."""
    metadata = bearer(api_key) if api_key else None
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call(request, metadata=metadata)
    details = details_of(caught.value)
    assert details.domain == "vaultd"
    return caught.value.code(), details.reason
