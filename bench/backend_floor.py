"""The backend floor: the storage and crypto work of each RPC, in one process, without gRPC.

Per operation, what vaultd must do at the least with a warm KEK cache:
- Encrypt: a new 256-bit DEK, wrap it under the org's KEK (AES-256-GCM), seal the plaintext
  under the DEK; Decrypt: unwrap and open. CreateDataKey: new DEK and wrap; DecryptDataKey:
  unwrap.
- CreateObject: seal the value (as Encrypt) and write the record and its name.
- GetObject: read the record, unwrap the DEK, open the value.
- UpdateObject: read the record (its key context picks the KEK), seal the new value, write it.
- Every operation, reads and pure crypto included: store one audit event (about 200 bytes)
  before answering, as vaultd must (docs/ARCHITECTURE.md section 8: every access emits an
  audit event, and vaultd reports success only once the event is stored).

At the least means batched where one round trip or one transaction can hold it: Redis sends a
write and its event in one MULTI/EXEC pipeline (a read, then its event: two round trips);
SQLite commits a write and its event in one transaction (one fsync), a read or pure crypto's
event in its own. vaultd does each event as a separate store call today.

Redis is redis-py asyncio (hiredis parser when installed) against the same private
redis-server vaultd uses; SQLite is the stdlib module in WAL mode with synchronous=FULL on one
dedicated thread, vaultd's embedded store's durability and threading. The same asyncio closed
loop drives it, calling the operation directly instead of through a channel.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

import redis.asyncio as aioredis
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bench.loadgen import Call
from bench.workload import Workload

_ID = 16
_NONCE = 12
_WRAPPED = 32 + 16


class Envelope:
    """DEKs wrapped under one in-memory KEK per org: a warm KEK cache, nothing more."""

    def __init__(self, orgs: int) -> None:
        self._keks = [AESGCM.generate_key(bit_length=256) for _ in range(orgs)]

    def new_key(self, org: int) -> tuple[bytes, bytes]:
        """(DEK, encrypted_keys): org byte, DEK id, nonce, wrapped DEK (id as the AAD)."""
        dek, dek_id, nonce = (
            AESGCM.generate_key(bit_length=256),
            os.urandom(_ID),
            os.urandom(_NONCE),
        )
        wrapped = AESGCM(self._keks[org]).encrypt(nonce, dek, dek_id)
        return dek, bytes([org]) + dek_id + nonce + wrapped

    def unwrap(self, keys: bytes) -> bytes:
        dek_id, nonce = keys[1 : 1 + _ID], keys[1 + _ID : 1 + _ID + _NONCE]
        return AESGCM(self._keks[keys[0]]).decrypt(nonce, keys[1 + _ID + _NONCE :], dek_id)

    def seal(self, org: int, data: bytes) -> bytes:
        dek, keys = self.new_key(org)
        nonce = os.urandom(_NONCE)
        return keys + nonce + AESGCM(dek).encrypt(nonce, data, None)

    def open(self, blob: bytes) -> bytes:
        cut = 1 + _ID + _NONCE + _WRAPPED
        dek = self.unwrap(blob[:cut])
        return AESGCM(dek).decrypt(blob[cut : cut + _NONCE], blob[cut + _NONCE :], None)


def audit_event(kind: str, subject: str) -> bytes:
    """An event of about vaultd's size: id, type, time, environment, actor, subject, ids."""
    return b"|".join(
        (
            f"event_{os.urandom(13).hex()}".encode(),
            kind.encode(),
            str(time.time_ns() // 1000).encode(),
            b"default",
            b"key_01JBENCHBENCHBENCHBENCHBEN|bootstrap",
            subject.encode(),
            b"organization_id=org_bench_0",
            os.urandom(16).hex().encode(),
            b"ipv4:127.0.0.1:50000",
        )
    )


class FloorStore(Protocol):
    async def create(self, object_id: str, name: str, record: bytes, event: bytes) -> None: ...
    async def get(self, object_id: str) -> bytes: ...
    async def put(self, object_id: str, record: bytes, event: bytes) -> None: ...
    async def audit(self, event: bytes) -> None: ...
    async def close(self) -> None: ...


class RedisFloorStore:
    def __init__(self, url: str) -> None:
        self._redis = aioredis.Redis.from_url(url, max_connections=512)
        self._prefix = f"benchfloor:{os.urandom(4).hex()}"
        self._stream = f"{self._prefix}:audit"

    async def create(self, object_id: str, name: str, record: bytes, event: bytes) -> None:
        pipe = self._redis.pipeline(transaction=True)
        pipe.hsetnx(f"{self._prefix}:names", name, object_id)
        pipe.set(f"{self._prefix}:obj:{object_id}", record)
        pipe.xadd(self._stream, {b"e": event})
        named, _, _ = await pipe.execute()
        if not named:
            raise RuntimeError("name taken")

    async def get(self, object_id: str) -> bytes:
        record = await self._redis.get(f"{self._prefix}:obj:{object_id}")
        if not isinstance(record, bytes):
            raise RuntimeError("no such object")
        return record

    async def put(self, object_id: str, record: bytes, event: bytes) -> None:
        pipe = self._redis.pipeline(transaction=True)
        pipe.set(f"{self._prefix}:obj:{object_id}", record)
        pipe.xadd(self._stream, {b"e": event})
        await pipe.execute()

    async def audit(self, event: bytes) -> None:
        await self._redis.xadd(self._stream, {b"e": event})

    async def close(self) -> None:
        await self._redis.aclose()


class SqliteFloorStore:
    def __init__(self, path: Path) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="floor-sqlite")
        self._conn = self._executor.submit(_connect, path).result()

    async def _run(self, work: Callable[[sqlite3.Connection], bytes | None]) -> bytes | None:
        return await asyncio.get_running_loop().run_in_executor(self._executor, work, self._conn)

    async def create(self, object_id: str, name: str, record: bytes, event: bytes) -> None:
        def insert(conn: sqlite3.Connection) -> None:
            with _transaction(conn):
                conn.execute("INSERT INTO objects VALUES (?, ?, ?)", (object_id, name, record))
                conn.execute("INSERT INTO audit (event) VALUES (?)", (event,))

        await self._run(insert)

    async def get(self, object_id: str) -> bytes:
        def select(conn: sqlite3.Connection) -> bytes | None:
            row = conn.execute("SELECT record FROM objects WHERE id = ?", (object_id,)).fetchone()
            return None if row is None else bytes(row[0])

        record = await self._run(select)
        if record is None:
            raise RuntimeError("no such object")
        return record

    async def put(self, object_id: str, record: bytes, event: bytes) -> None:
        def update(conn: sqlite3.Connection) -> None:
            with _transaction(conn):
                conn.execute("UPDATE objects SET record = ? WHERE id = ?", (record, object_id))
                conn.execute("INSERT INTO audit (event) VALUES (?)", (event,))

        await self._run(update)

    async def audit(self, event: bytes) -> None:
        def append(conn: sqlite3.Connection) -> None:
            with _transaction(conn):
                conn.execute("INSERT INTO audit (event) VALUES (?)", (event,))

        await self._run(append)

    async def close(self) -> None:
        await self._run(lambda conn: conn.close())
        self._executor.shutdown()


@contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute(
        "CREATE TABLE IF NOT EXISTS objects "
        "(id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, record BLOB NOT NULL) WITHOUT ROWID"
    )
    conn.execute("CREATE TABLE IF NOT EXISTS audit (seq INTEGER PRIMARY KEY, event BLOB)")
    return conn


class BackendFloor:
    """Operations by RPC name over one store."""

    def __init__(self, workload: Workload, store: FloorStore) -> None:
        self._w = workload
        self._store = store
        self._env = Envelope(workload.orgs)
        self._ids: list[str] = []
        self._ciphertexts: list[bytes] = []
        self._keys: list[bytes] = []

    async def setup(self) -> None:
        w = self._w
        self._ciphertexts = [self._env.seal(o, w.payload) for o in range(w.orgs)]
        self._keys = [self._env.new_key(o)[1] for o in range(w.orgs)]
        for i in range(w.orgs * w.objects_per_org):
            object_id = f"fixture-{w.tag}-{i}"
            record = self._env.seal(i % w.orgs, w.payload)
            await self._store.create(object_id, object_id, record, audit_event("setup", object_id))
            self._ids.append(object_id)

    def call(self, rpc: str) -> Call:
        operation: Call = getattr(self, f"_{rpc}")
        return operation

    async def _Encrypt(self, i: int) -> None:
        self._env.seal(i % self._w.orgs, self._w.payload)
        await self._store.audit(audit_event("vault.dek.read", ""))

    async def _Decrypt(self, i: int) -> None:
        self._env.open(self._ciphertexts[i % self._w.orgs])
        await self._store.audit(audit_event("vault.dek.decrypted", ""))

    async def _CreateDataKey(self, i: int) -> None:
        self._env.new_key(i % self._w.orgs)
        await self._store.audit(audit_event("vault.dek.read", ""))

    async def _DecryptDataKey(self, i: int) -> None:
        self._env.unwrap(self._keys[i % self._w.orgs])
        await self._store.audit(audit_event("vault.dek.decrypted", ""))

    async def _CreateObject(self, i: int) -> None:
        object_id = f"load-{self._w.tag}-{os.urandom(8).hex()}"
        record = self._env.seal(i % self._w.orgs, self._w.payload)
        await self._store.create(object_id, object_id, record, audit_event("created", object_id))

    async def _GetObject(self, i: int) -> None:
        object_id = self._ids[i % len(self._ids)]
        self._env.open(await self._store.get(object_id))
        await self._store.audit(audit_event("vault.data.read", object_id))

    async def _UpdateObject(self, i: int) -> None:
        object_id = self._ids[i % len(self._ids)]
        current = await self._store.get(object_id)
        record = self._env.seal(current[0], self._w.payload)
        await self._store.put(object_id, record, audit_event("vault.data.updated", object_id))
