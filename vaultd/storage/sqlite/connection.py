"""The embedded store's plumbing, shared by its aggregate mixins: one SQLite file, so
`vaultd serve` needs no server.

Durability: WAL with synchronous=FULL, so a change is on disk when its call returns. Every write
runs on one dedicated worker thread, which keeps the event loop free and makes this process a
single writer. Each change is one transaction opened with BEGIN IMMEDIATE, which takes the write
lock before the first read, so a compare-and-set cannot interleave with another writer, even one
in another process sharing the file (busy_timeout makes it wait its turn).

Times are stored as microseconds since the epoch (codec.py), which compare like the times.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from vaultd import securefiles
from vaultd.storage.errors import StoreError, StoreUnavailable
from vaultd.storage.keys import ENVIRONMENT_ID, KEK_ID, OBJECT_ID, check
from vaultd.storage.records import Durability
from vaultd.storage.sqlite.schema import SCHEMA, add_missing_columns

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 5000

T = TypeVar("T")


class SqliteConnection:
    """What every aggregate mixin of SqliteStore works through; also the StoreConnection part.

    Opens the file (owner-only) with its schema if missing.
    """

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

    async def ping(self) -> None:
        await self._run(lambda c: c.execute("SELECT 1").fetchone())

    async def durability(self) -> Durability:
        # Every commit is fsynced before the call returns (_connect).
        return Durability(True, f"sqlite: WAL with synchronous=FULL ({self.path})")

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
        conn.executescript(SCHEMA)
        add_missing_columns(conn)
    except BaseException:
        conn.close()
        raise
    return conn


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


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[None]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def check_ids(
    environment_id: str, object_id: str | None = None, *, kek_id: str | None = None
) -> None:
    """The ids the Redis store would refuse in a key name, refused here too, so a caller's bug
    fails the same way on the embedded store as in production."""
    check(ENVIRONMENT_ID, environment_id, "environment id")
    if object_id is not None:
        check(OBJECT_ID, object_id, "object id")
    if kek_id is not None:
        check(KEK_ID, kek_id, "kek id")
