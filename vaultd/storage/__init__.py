"""Storage: the Store protocol (base.py) with its records and errors, a Redis store (redis/)
and an embedded SQLite store (sqlite/)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from vaultd.storage.base import Store
from vaultd.storage.errors import (
    BadCursor,
    KekChanged,
    NameTaken,
    ObjectMissing,
    StoreError,
    StoreUnavailable,
    VersionMismatch,
)
from vaultd.storage.records import (
    ApiKeyRecord,
    AuditEvent,
    AuditPage,
    AuditQuery,
    Direction,
    KekVersion,
    ObjectEntry,
    ScanFilter,
    StoredObject,
    StoredVersion,
    VersionInfo,
)
from vaultd.storage.redis import DEFAULT_TIMEOUT_SECONDS, RedisStore
from vaultd.storage.sqlite import SqliteStore

__all__ = [
    "SQLITE_FILE_NAME",
    "ApiKeyRecord",
    "AuditEvent",
    "AuditPage",
    "AuditQuery",
    "BadCursor",
    "Direction",
    "KekChanged",
    "KekVersion",
    "NameTaken",
    "ObjectEntry",
    "ObjectMissing",
    "RedisStore",
    "ScanFilter",
    "SqliteStore",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "StoredObject",
    "StoredVersion",
    "VersionInfo",
    "VersionMismatch",
    "open_store",
]

SQLITE_FILE_NAME = "vaultd.db"


async def open_store(
    redis_url: str | None, data_dir: Path, command_timeout: float = DEFAULT_TIMEOUT_SECONDS
) -> Store:
    """Redis when a URL is given, else the embedded store at data_dir/vaultd.db.

    Either is brought up to date with what this vaultd keeps: SQLite migrates its schema (and
    fills the key context index) as it opens; a Redis database that an older vaultd used gets
    its KEKs listed and its objects entered into the key context index, once. A Redis
    command that takes longer than `command_timeout` seconds fails with StoreUnavailable.
    """
    if not redis_url:
        # Opening creates the file and schema: disk work, kept off the event loop.
        return await asyncio.to_thread(SqliteStore, data_dir / SQLITE_FILE_NAME)
    store = RedisStore.from_url(redis_url, command_timeout)
    try:
        await store.index_unlisted_keks()
        await store.index_object_contexts()
    except BaseException:
        await store.close()
        raise
    return store
