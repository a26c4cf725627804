"""The embedded store: one SQLite file, so `vaultd serve` needs no server.

Durability: WAL with synchronous=FULL, so a change is on disk when its call returns. Every call
runs on one dedicated worker thread, which keeps the event loop free and makes this process a
single writer. Each change is one transaction opened with BEGIN IMMEDIATE, which takes the write
lock before the first read, so a compare-and-set cannot interleave with another writer, even one
in another process sharing the file (busy_timeout makes it wait its turn).

Times are stored as microseconds since the epoch (codec.py), which compare like the times.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from vaultd import securefiles
from vaultd.storage import codec
from vaultd.storage.base import (
    ApiKeyRecord,
    AuditEvent,
    AuditPage,
    AuditQuery,
    BadCursor,
    Direction,
    Durability,
    KekChanged,
    KekRecord,
    KekStamp,
    KekVersion,
    NameTaken,
    ObjectEntry,
    ObjectMissing,
    ObjectVersions,
    RewrapJob,
    ScanFilter,
    StoredObject,
    StoredVersion,
    StoreError,
    StoreIdentity,
    StoreUnavailable,
    VersionInfo,
    VersionMismatch,
)
from vaultd.storage.byok_sqlite import SqliteByokKeys
from vaultd.storage.kek_counts_sqlite import SqliteKekCounts
from vaultd.storage.keys import (
    API_KEY_ID,
    ENVIRONMENT_ID,
    KEK_ID,
    OBJECT_ID,
    REWRAP_JOB_ID,
    SECRET_HASH,
    check,
    check_rewrap_job,
)

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 5000
# The largest rowid SQLite hands out (a signed 64-bit INTEGER): audit cursors stop there.
_MAX_SEQ = 2**63 - 1

# The object's primary key (environment_id, id) is also the scan index: ids sort in creation
# order. versions.seq records insertion order, so versions list oldest first.
# audit_events.seq is the read cursor: AUTOINCREMENT never reuses a number, even once trimming
# has emptied the table, so a reader holding a cursor never skips a later event. An event is
# kept whole as its codec record (the same bytes as on Redis); the columns beside it are what
# reads filter and trimming cuts on.
# keks holds each KEK's item and lifecycle state, and outlives its versions as a shred's
# tombstone. Databases made before it existed get their rows from kek_versions at connect.
# rewrap_jobs keeps each job whole as its codec record, beside the columns the lease check and
# listing need. BEGIN IMMEDIATE: the backfill writes, and a deferred transaction upgraded to a
# write after another connection's commit would fail at once instead of waiting its turn.
_SCHEMA = """
BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS objects (
    environment_id     TEXT    NOT NULL,
    id                 TEXT    NOT NULL,
    name               TEXT    NOT NULL,
    key_context        TEXT    NOT NULL,
    created_at         INTEGER NOT NULL,
    current_version_id TEXT    NOT NULL,
    updated_at         INTEGER NOT NULL,
    PRIMARY KEY (environment_id, id),
    UNIQUE (environment_id, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS versions (
    seq             INTEGER PRIMARY KEY,
    environment_id  TEXT    NOT NULL,
    object_id       TEXT    NOT NULL,
    version_id      TEXT    NOT NULL,
    created_at      INTEGER NOT NULL,
    size            INTEGER NOT NULL,
    etag            TEXT    NOT NULL,
    key_ids         TEXT    NOT NULL,
    encrypted_keys  BLOB    NOT NULL,
    ciphertext      BLOB    NOT NULL,
    updated_by_id   TEXT    NOT NULL,
    updated_by_name TEXT    NOT NULL,
    UNIQUE (environment_id, object_id, version_id),
    FOREIGN KEY (environment_id, object_id) REFERENCES objects (environment_id, id)
);
CREATE TABLE IF NOT EXISTS kek_versions (
    environment_id TEXT    NOT NULL,
    kek_id         TEXT    NOT NULL,
    version        INTEGER NOT NULL,
    item_key       TEXT    NOT NULL,
    item_value     TEXT    NOT NULL,
    provider_uri   TEXT    NOT NULL,
    wrapped_key    BLOB    NOT NULL,
    created_at     INTEGER NOT NULL,
    secondary      BLOB    NOT NULL DEFAULT x'',
    PRIMARY KEY (environment_id, kek_id, version)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS keks (
    environment_id         TEXT    NOT NULL,
    kek_id                 TEXT    NOT NULL,
    item_key               TEXT    NOT NULL,
    item_value             TEXT    NOT NULL,
    min_decryption_version INTEGER NOT NULL DEFAULT 1,
    shredded_at            INTEGER,
    PRIMARY KEY (environment_id, kek_id)
) WITHOUT ROWID;
INSERT OR IGNORE INTO keks (environment_id, kek_id, item_key, item_value)
    SELECT DISTINCT environment_id, kek_id, item_key, item_value FROM kek_versions;
CREATE TABLE IF NOT EXISTS rewrap_jobs (
    id          TEXT    NOT NULL PRIMARY KEY,
    created_at  INTEGER NOT NULL,
    owner       TEXT    NOT NULL,
    lease_until INTEGER,
    record      BLOB    NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS api_keys (
    id             TEXT    NOT NULL PRIMARY KEY,
    name           TEXT    NOT NULL,
    environment_id TEXT    NOT NULL,
    permissions    TEXT    NOT NULL,
    secret_hash    TEXT    NOT NULL UNIQUE,
    created_at     INTEGER NOT NULL,
    revoked_at     INTEGER
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS audit_events (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    environment_id TEXT    NOT NULL,
    type           TEXT    NOT NULL,
    time           INTEGER NOT NULL,
    record         BLOB    NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_events_by_environment ON audit_events (environment_id, seq);
CREATE INDEX IF NOT EXISTS audit_events_by_time ON audit_events (time);
CREATE TABLE IF NOT EXISTS store_identity (
    singleton   INTEGER NOT NULL PRIMARY KEY CHECK (singleton = 1),
    id          TEXT    NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS store_root_keys (
    fingerprint TEXT    NOT NULL PRIMARY KEY
) WITHOUT ROWID;
COMMIT;
"""

_VERSION_COLUMNS = (
    "v.version_id, v.created_at, v.size, v.etag, v.key_ids, v.encrypted_keys, v.ciphertext,"
    " v.updated_by_id, v.updated_by_name"
)
_SELECT_OBJECT = f"""
SELECT o.id, o.name, o.key_context, o.created_at, {_VERSION_COLUMNS},
  (SELECT n.version_id FROM versions n
    WHERE n.environment_id = o.environment_id AND n.object_id = o.id ORDER BY n.seq DESC LIMIT 1)
FROM objects o JOIN versions v
  ON v.environment_id = o.environment_id AND v.object_id = o.id AND v.version_id = {{version}}
WHERE o.environment_id = ? AND o.{{column}} = ?
"""
_API_KEYS = (
    "SELECT id, name, environment_id, permissions, secret_hash, created_at, revoked_at"
    " FROM api_keys"
)
_BY_ID = _SELECT_OBJECT.format(version="o.current_version_id", column="id")
_BY_NAME = _SELECT_OBJECT.format(version="o.current_version_id", column="name")
_VERSION_BY_ID = _SELECT_OBJECT.format(version="?", column="id")

T = TypeVar("T")


class SqliteStore(SqliteByokKeys, SqliteKekCounts):
    """A Store in one SQLite file, created (owner-only) with its schema if missing."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vaultd-sqlite")
        # Point reads (an object, an API key, a KEK's versions) on a connection and thread of
        # their own: in WAL mode they read the last commit without waiting for a write's
        # fsync, which the audit trail's group commits make frequent. Each is one SELECT, so
        # one consistent snapshot; a write is committed before its call returns, so a later
        # read sees it.
        self._read_executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="vaultd-sqlite-read"
        )
        self._closed = False
        try:
            # Opened on the worker thread: a connection is used only by the thread that made it.
            self._conn = self._executor.submit(_connect, path).result()
            self._read_conn = self._read_executor.submit(_connect_reader, path).result()
        except BaseException:
            self._executor.shutdown()
            self._read_executor.shutdown()
            raise

    async def get_kek(self, environment_id: str, kek_id: str) -> KekRecord | None:
        _check_ids(environment_id, kek_id=kek_id)
        found = await self._run(lambda c: _keks(c, environment_id, kek_id))
        return found[0] if found else None

    async def add_kek_version(self, environment_id: str, kek_id: str, kek: KekVersion) -> bool:
        _check_ids(environment_id, kek_id=kek_id)
        return await self._run(lambda c: _add_kek(c, environment_id, kek_id, kek))

    async def list_keks(self, environment_id: str) -> list[KekRecord]:
        _check_ids(environment_id)
        return await self._run(lambda c: _keks(c, environment_id, None))

    async def rewrap_kek_version(
        self, environment_id: str, kek_id: str, expected: KekVersion, rewrapped: KekVersion
    ) -> bool:
        _check_ids(environment_id, kek_id=kek_id)
        # One statement, its own transaction: the WHERE is the compare, the SET the swap.
        sql = (
            "UPDATE kek_versions SET provider_uri = ?, wrapped_key = ?, secondary = ?"
            " WHERE environment_id = ? AND kek_id = ? AND version = ? AND item_key = ?"
            " AND item_value = ? AND provider_uri = ? AND wrapped_key = ? AND created_at = ?"
            " AND secondary = ?"
        )
        params = (
            rewrapped.provider_uri,
            rewrapped.wrapped_key,
            codec.encode_secondary(rewrapped.secondary),
            environment_id,
            kek_id,
            *_kek_row(expected),
        )
        return await self._run(lambda c: c.execute(sql, params).rowcount == 1)

    async def set_min_decryption_version(
        self, environment_id: str, kek_id: str, version: int
    ) -> bool:
        _check_ids(environment_id, kek_id=kek_id)
        # Versions run 1..newest without gaps, so "has `version`" is a range check.
        sql = (
            "UPDATE keks SET min_decryption_version = ?"
            " WHERE environment_id = ? AND kek_id = ? AND shredded_at IS NULL AND ? BETWEEN 1 AND"
            " (SELECT COALESCE(MAX(version), 0) FROM kek_versions"
            "  WHERE environment_id = ? AND kek_id = ?)"
        )
        params = (version, environment_id, kek_id, version, environment_id, kek_id)
        return await self._run(lambda c: c.execute(sql, params).rowcount == 1)

    async def shred_kek(
        self, environment_id: str, kek_id: str, item_key: str, item_value: str, at: datetime
    ) -> bool:
        _check_ids(environment_id, kek_id=kek_id)
        ids = (environment_id, kek_id)
        micros = codec.to_micros(at)

        def shred(conn: sqlite3.Connection) -> bool:
            with _transaction(conn):
                # The tombstone of a KEK never made; an existing KEK keeps its own item.
                conn.execute(
                    "INSERT OR IGNORE INTO keks VALUES (?, ?, ?, ?, 1, NULL)",
                    (*ids, item_key, item_value),
                )
                shredded = conn.execute(
                    "UPDATE keks SET shredded_at = ?"
                    " WHERE environment_id = ? AND kek_id = ? AND shredded_at IS NULL",
                    (micros, *ids),
                ).rowcount
                if not shredded:
                    return False
                conn.execute(
                    "DELETE FROM kek_versions WHERE environment_id = ? AND kek_id = ?", ids
                )
            # secure_delete zeroed the rows in the pages written; truncating the WAL drops the
            # older copies of those pages. Best effort, after the commit: a reader may hold
            # the WAL, and the shred is done either way.
            with contextlib.suppress(sqlite3.OperationalError):
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            return True

        return await self._run(shred)

    async def create_object(self, obj: StoredObject, keks: Sequence[KekStamp] = ()) -> None:
        _check_ids(obj.environment_id, obj.id)
        await self._run(lambda c: _create(c, obj, keks))

    async def get_object(self, environment_id: str, object_id: str) -> StoredObject | None:
        _check_ids(environment_id, object_id)
        return await self._select(environment_id, _BY_ID, (environment_id, object_id))

    async def get_object_by_name(self, environment_id: str, name: str) -> StoredObject | None:
        _check_ids(environment_id)
        return await self._select(environment_id, _BY_NAME, (environment_id, name))

    async def get_object_version(
        self, environment_id: str, object_id: str, version_id: str
    ) -> StoredObject | None:
        _check_ids(environment_id, object_id)
        params = (version_id, environment_id, object_id)
        return await self._select(environment_id, _VERSION_BY_ID, params)

    async def list_versions(
        self, environment_id: str, object_id: str
    ) -> tuple[Sequence[VersionInfo], str] | None:
        _check_ids(environment_id, object_id)
        # One statement, so the current id and the versions come from one snapshot.
        rows = await self._run(
            lambda c: c.execute(
                "SELECT o.current_version_id, v.version_id, v.created_at, v.size, v.etag"
                " FROM objects o JOIN versions v"
                "   ON v.environment_id = o.environment_id AND v.object_id = o.id"
                " WHERE o.environment_id = ? AND o.id = ? ORDER BY v.seq",
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
    ) -> None:
        _check_ids(environment_id, object_id)
        await self._run(
            lambda c: _update(c, environment_id, object_id, version, expected_version_id, keks)
        )

    async def delete_object(
        self, environment_id: str, object_id: str, expected_version_id: str | None
    ) -> None:
        _check_ids(environment_id, object_id)
        await self._run(lambda c: _delete(c, environment_id, object_id, expected_version_id))

    async def count_objects(self, environment_id: str) -> int:
        _check_ids(environment_id)
        sql = "SELECT COUNT(*) FROM objects WHERE environment_id = ?"
        count: int = await self._run(lambda c: c.execute(sql, (environment_id,)).fetchone()[0])
        return count

    async def scan_object_versions(
        self, environment_id: str, after: str, limit: int
    ) -> list[ObjectVersions]:
        _check_ids(environment_id, after or None)
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
        _check_ids(environment_id, object_id)
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
            with _transaction(conn):
                _check_keks(conn, environment_id, keks)
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
        _check_ids(environment_id)
        if limit < 1:
            return []  # SQLite reads LIMIT -1 as "no limit"
        past, order = (">", "ASC") if direction is Direction.ASCENDING else ("<", "DESC")
        sql = "SELECT id, name, updated_at FROM objects WHERE environment_id = ?"
        params: list[Any] = [environment_id]
        if cursor:
            sql += f" AND id {past} ?"
            params.append(cursor)
        if scan_filter.name_prefix:
            sql += " AND substr(name, 1, length(?)) = ?"
            params += [scan_filter.name_prefix] * 2
        if scan_filter.updated_after is not None:
            sql += " AND updated_at > ?"
            params.append(codec.to_micros(scan_filter.updated_after))
        sql += f" ORDER BY id {order} LIMIT ?"
        params.append(limit)
        rows = await self._run(lambda c: c.execute(sql, params).fetchall())
        return [ObjectEntry(i, name, codec.from_micros(at)) for i, name, at in rows]

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
            with _transaction(conn):
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

    async def append_audit_event(self, event: AuditEvent, keep_after: datetime) -> None:
        await self.append_audit_events((event,), keep_after)

    async def append_audit_events(self, events: Sequence[AuditEvent], keep_after: datetime) -> None:
        for event in events:
            if event.environment_id:
                check(ENVIRONMENT_ID, event.environment_id, "environment id")
        rows = [
            (
                event.environment_id,
                event.type,
                codec.to_micros(event.time),
                codec.encode_audit_event(event),
            )
            for event in events
        ]
        cutoff = codec.to_micros(keep_after)

        def append(conn: sqlite3.Connection) -> None:
            # One transaction, so one fsync, however many events: the group commit's point.
            with _transaction(conn):
                # Indexed by time, so finding nothing to trim costs one index probe.
                conn.execute("DELETE FROM audit_events WHERE time < ?", (cutoff,))
                conn.executemany(
                    "INSERT INTO audit_events (environment_id, type, time, record)"
                    " VALUES (?, ?, ?, ?)",
                    rows,
                )

        if rows:
            await self._run(append)

    async def read_audit_events(self, environment_id: str, query: AuditQuery) -> AuditPage:
        if environment_id:
            check(ENVIRONMENT_ID, environment_id, "environment id")
        # A sequence number SQLite could never have handed out (past INTEGER) is no cursor.
        if query.after and not (
            query.after.isascii() and query.after.isdigit() and int(query.after) <= _MAX_SEQ
        ):
            raise BadCursor("not a cursor from a previous read")
        if query.limit < 1:
            return AuditPage([], query.after)
        sql = "SELECT seq, record FROM audit_events WHERE environment_id = ? AND seq > ?"
        params: list[Any] = [environment_id, int(query.after or 0)]
        if query.since is not None:
            sql += " AND time >= ?"
            params.append(codec.to_micros(query.since))
        if query.type:
            sql += " AND type = ?"
            params.append(query.type)
        sql += " ORDER BY seq LIMIT ?"
        params.append(query.limit)
        rows = await self._run(lambda c: c.execute(sql, params).fetchall())
        events = [codec.decode_audit_event(record) for _, record in rows]
        return AuditPage(events, str(rows[-1][0]) if rows else query.after)

    async def save_rewrap_job(self, job: RewrapJob, now: datetime) -> bool:
        check_rewrap_job(job)
        row = (
            job.id,
            codec.to_micros(job.created_at),
            job.owner,
            None if job.lease_until is None else codec.to_micros(job.lease_until),
            codec.encode_rewrap_job(job),
        )
        now_micros = codec.to_micros(now)

        def save(conn: sqlite3.Connection) -> bool:
            with _transaction(conn):
                held = conn.execute(
                    "SELECT owner, lease_until FROM rewrap_jobs WHERE id = ?", (job.id,)
                ).fetchone()
                if held is not None and not _may_take(held[0], held[1], job.owner, now_micros):
                    return False
                conn.execute("INSERT OR REPLACE INTO rewrap_jobs VALUES (?, ?, ?, ?, ?)", row)
                return True

        return await self._run(save)

    async def get_rewrap_job(self, job_id: str) -> RewrapJob | None:
        check(REWRAP_JOB_ID, job_id, "rewrap job id")
        sql = "SELECT record FROM rewrap_jobs WHERE id = ?"
        row = await self._run(lambda c: c.execute(sql, (job_id,)).fetchone())
        return None if row is None else codec.decode_rewrap_job(row[0])

    async def list_rewrap_jobs(self) -> list[RewrapJob]:
        sql = "SELECT record FROM rewrap_jobs ORDER BY created_at, id"
        rows = await self._run(lambda c: c.execute(sql).fetchall())
        return [codec.decode_rewrap_job(record) for (record,) in rows]

    async def ping(self) -> None:
        await self._run(lambda c: c.execute("SELECT 1").fetchone())

    async def durability(self) -> Durability:
        # Every commit is fsynced before the call returns (_connect).
        return Durability(True, f"sqlite: WAL with synchronous=FULL ({self.path})")

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
            with _transaction(conn):
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
            with _transaction(conn):
                if not conn.execute("SELECT 1 FROM store_identity").fetchone():
                    raise StoreError("the store has no identity to add root key fingerprints to")
                _add_roots(conn, fingerprints)

        await self._run(add)

    async def has_data(self) -> bool:
        tables = ("store_identity", "api_keys", "keks", "objects", "audit_events", "rewrap_jobs")
        sql = "SELECT " + " OR ".join(f"EXISTS (SELECT 1 FROM {t})" for t in tables)
        return bool(await self._run(lambda c: c.execute(sql).fetchone()[0]))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        # Queued behind any calls still running, so they finish first.
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._read_executor, self._read_conn.close)
        await loop.run_in_executor(self._executor, self._conn.close)
        self._read_executor.shutdown()
        self._executor.shutdown()

    async def _one_api_key(self, column: str, value: str) -> ApiKeyRecord | None:
        sql = f"{_API_KEYS} WHERE {column} = ?"
        row = await self._read(lambda c: c.execute(sql, (value,)).fetchone())
        return None if row is None else _api_key(row)

    async def _select(
        self, environment_id: str, sql: str, params: tuple[str, ...]
    ) -> StoredObject | None:
        row = await self._read(lambda c: c.execute(sql, params).fetchone())
        return None if row is None else _object(environment_id, row)

    async def _read(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """One SELECT on the read connection."""
        return await self._run(work, read=True)

    async def _run(self, work: Callable[[sqlite3.Connection], T], *, read: bool = False) -> T:
        if self._closed:
            raise StoreUnavailable("the sqlite store is closed")
        loop = asyncio.get_running_loop()
        executor, conn = (
            (self._read_executor, self._read_conn) if read else (self._executor, self._conn)
        )
        try:
            return await loop.run_in_executor(executor, work, conn)
        except sqlite3.OperationalError as exc:
            # Locked, disk full, I/O error: the error code, never the statement's values.
            cause = exc.sqlite_errorname
            if cause == "SQLITE_FULL":
                log.error("the sqlite store's disk is full (SQLITE_FULL, ENOSPC): %s", self.path)
            raise StoreUnavailable(f"sqlite is unavailable ({cause})", cause) from exc
        except sqlite3.IntegrityError as exc:
            # The explicit checks come first; this is an id collision, which ULIDs make absurd.
            raise StoreError("record id already in use") from exc


def _connect(path: Path) -> sqlite3.Connection:
    securefiles.private_dir(path.parent)
    # Create the file owner-only before SQLite does (it would use 0644); SQLite gives the WAL
    # and shared-memory files the same mode as the database. Never through a planted symlink.
    os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600))
    conn = sqlite3.connect(path, isolation_level=None)  # transactions are explicit
    try:
        if conn.execute("PRAGMA journal_mode=WAL").fetchone()[0] != "wal":
            raise StoreError("sqlite could not switch to WAL mode")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        # Deleted rows are zeroed, not left in free pages: a shredded KEK's wrapped key or a
        # deleted object's ciphertext does not linger in the file.
        conn.execute("PRAGMA secure_delete=ON")
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        conn.executescript(_SCHEMA)
        _add_missing_columns(conn)
    except BaseException:
        conn.close()
        raise
    return conn


_ADDED_COLUMNS = {
    # table -> columns later releases added, with their definitions (defaults keep old rows).
    "kek_versions": {"secondary": "BLOB NOT NULL DEFAULT x''"},
}


def _add_missing_columns(conn: sqlite3.Connection) -> None:
    """Give a file an older vaultd made the columns added since: its rows keep their values,
    and the new columns their defaults (what the older release meant)."""
    for table, columns in _ADDED_COLUMNS.items():
        present = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        for name, definition in columns.items():
            if name not in present:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {definition}")


def _connect_reader(path: Path) -> sqlite3.Connection:
    """A second connection to the file `_connect` prepared, for reads only."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA query_only=ON")
    except BaseException:
        conn.close()
        raise
    return conn


def _add_roots(conn: sqlite3.Connection, fingerprints: frozenset[str]) -> None:
    conn.executemany(
        "INSERT OR IGNORE INTO store_root_keys VALUES (?)", [(f,) for f in sorted(fingerprints)]
    )


@contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _add_kek(conn: sqlite3.Connection, environment_id: str, kek_id: str, kek: KekVersion) -> bool:
    ids = (environment_id, kek_id)
    with _transaction(conn):
        (shredded, newest) = conn.execute(
            "SELECT EXISTS (SELECT 1 FROM keks WHERE environment_id = ? AND kek_id = ?"
            "               AND shredded_at IS NOT NULL),"
            " (SELECT COALESCE(MAX(version), 0) FROM kek_versions"
            "  WHERE environment_id = ? AND kek_id = ?)",
            ids + ids,
        ).fetchone()
        if shredded or newest != kek.version - 1:
            return False
        conn.execute(
            "INSERT INTO kek_versions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", ids + _kek_row(kek)
        )
        # Every add, not only version 1's, so a KEK an older release made joins the list too.
        conn.execute(
            "INSERT OR IGNORE INTO keks (environment_id, kek_id, item_key, item_value)"
            " VALUES (?, ?, ?, ?)",
            (*ids, kek.item_key, kek.item_value),
        )
        return True


def _kek_row(kek: KekVersion) -> tuple[Any, ...]:
    """A version's kek_versions columns after its ids, in table order."""
    return (
        kek.version,
        kek.item_key,
        kek.item_value,
        kek.provider_uri,
        kek.wrapped_key,
        codec.to_micros(kek.created_at),
        codec.encode_secondary(kek.secondary),
    )


def _kek_version(columns: Sequence[Any]) -> KekVersion:
    """A KEK version from its columns (item_key ... secondary), stamped as Redis stamps it:
    the SHA-1 of its codec record (codec.kek_stamp)."""
    item_key, item_value, version, uri, wrapped, created, secondary = columns
    kek = KekVersion(
        item_key,
        item_value,
        version,
        uri,
        wrapped,
        codec.from_micros(created),
        secondary=codec.decode_secondary(secondary),
    )
    return replace(kek, stamp=codec.kek_stamp(codec.encode_kek(kek)))


def _check_keks(conn: sqlite3.Connection, environment_id: str, keks: Sequence[KekStamp]) -> None:
    """KekChanged unless every KEK version named is stored as stamped (inside the caller's
    transaction, so the write that follows sees the same)."""
    for k in keks:
        row = conn.execute(
            "SELECT item_key, item_value, version, provider_uri, wrapped_key, created_at,"
            " secondary FROM kek_versions WHERE environment_id = ? AND kek_id = ? AND version = ?",
            (environment_id, k.kek_id, k.version),
        ).fetchone()
        if row is None or _kek_version(row).stamp != k.stamp:
            raise KekChanged(k.kek_id)


def _keks(conn: sqlite3.Connection, environment_id: str, kek_id: str | None) -> list[KekRecord]:
    """One KEK (or all the environment's), with its versions, read in one statement (one
    snapshot), ordered as list_keks promises."""
    sql = (
        "SELECT k.kek_id, k.item_key, k.item_value, k.min_decryption_version, k.shredded_at,"
        "       v.item_key, v.item_value, v.version, v.provider_uri, v.wrapped_key, v.created_at,"
        "       v.secondary"
        " FROM keks k LEFT JOIN kek_versions v"
        "   ON v.environment_id = k.environment_id AND v.kek_id = k.kek_id"
        " WHERE k.environment_id = ?"
    )
    params = [environment_id]
    if kek_id is not None:
        sql += " AND k.kek_id = ?"
        params.append(kek_id)
    sql += " ORDER BY k.item_key, k.item_value, k.kek_id, v.version"
    records: list[KekRecord] = []
    for (kid, item_key, item_value, min_version, shredded), rows in itertools.groupby(
        conn.execute(sql, params), key=lambda row: row[:5]
    ):
        # A KEK without versions has one LEFT JOIN row, its version columns NULL.
        versions = tuple(_kek_version(row[5:]) for row in rows if row[7] is not None)
        shredded_at = None if shredded is None else codec.from_micros(shredded)
        records.append(KekRecord(kid, item_key, item_value, versions, min_version, shredded_at))
    return records


def _create(conn: sqlite3.Connection, obj: StoredObject, keks: Sequence[KekStamp]) -> None:
    v = obj.version
    with _transaction(conn):
        _check_keks(conn, obj.environment_id, keks)
        taken = conn.execute(
            "SELECT 1 FROM objects WHERE environment_id = ? AND name = ?",
            (obj.environment_id, obj.name),
        ).fetchone()
        if taken:
            raise NameTaken("name taken")
        conn.execute(
            "INSERT INTO objects VALUES (?, ?, ?, ?, ?, ?, ?)",
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


def _update(
    conn: sqlite3.Connection,
    environment_id: str,
    object_id: str,
    version: StoredVersion,
    expected_version_id: str | None,
    keks: Sequence[KekStamp],
) -> None:
    with _transaction(conn):
        _check_keks(conn, environment_id, keks)
        _check_current(conn, environment_id, object_id, expected_version_id)
        _insert_version(conn, environment_id, object_id, version)
        conn.execute(
            "UPDATE objects SET current_version_id = ?, updated_at = ?"
            " WHERE environment_id = ? AND id = ?",
            (version.version_id, codec.to_micros(version.created_at), environment_id, object_id),
        )


def _delete(
    conn: sqlite3.Connection,
    environment_id: str,
    object_id: str,
    expected_version_id: str | None,
) -> None:
    with _transaction(conn):
        _check_current(conn, environment_id, object_id, expected_version_id)
        ids = (environment_id, object_id)
        conn.execute("DELETE FROM versions WHERE environment_id = ? AND object_id = ?", ids)
        conn.execute("DELETE FROM objects WHERE environment_id = ? AND id = ?", ids)


def _add_api_key(conn: sqlite3.Connection, record: ApiKeyRecord, only_if_none: bool) -> bool:
    with _transaction(conn):
        if only_if_none and conn.execute("SELECT 1 FROM api_keys LIMIT 1").fetchone():
            return False
        conn.execute(
            "INSERT INTO api_keys VALUES (?, ?, ?, ?, ?, ?, NULL)",
            (
                record.id,
                record.name,
                record.environment_id,
                json.dumps(list(record.permissions)),
                record.secret_hash,
                codec.to_micros(record.created_at),
            ),
        )
        return True


def _api_key(row: tuple[Any, ...]) -> ApiKeyRecord:
    key_id, name, environment_id, permissions, secret_hash, created, revoked = row
    return ApiKeyRecord(
        id=key_id,
        name=name,
        environment_id=environment_id,
        permissions=tuple(json.loads(permissions)),
        secret_hash=secret_hash,
        created_at=codec.from_micros(created),
        revoked_at=None if revoked is None else codec.from_micros(revoked),
    )


def _check_current(
    conn: sqlite3.Connection, environment_id: str, object_id: str, expected: str | None
) -> None:
    """ObjectMissing, or VersionMismatch when `expected` is given and is not current."""
    row = conn.execute(
        "SELECT current_version_id FROM objects WHERE environment_id = ? AND id = ?",
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
        _version(row[4:-1]),
        newest_version_id=row[-1],
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


def _may_take(held_by: str, lease_until: int | None, owner: str, now: int) -> bool:
    """Whether `owner` may write over a job `held_by` someone until `lease_until` (µs)."""
    return held_by == owner or lease_until is None or lease_until < now


def _check_ids(
    environment_id: str, object_id: str | None = None, *, kek_id: str | None = None
) -> None:
    """The ids the Redis store would refuse in a key name, refused here too, so a caller's bug
    fails the same way on the embedded store as in production."""
    check(ENVIRONMENT_ID, environment_id, "environment id")
    if object_id is not None:
        check(OBJECT_ID, object_id, "object id")
    if kek_id is not None:
        check(KEK_ID, kek_id, "kek id")
