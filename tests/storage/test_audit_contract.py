"""The AuditStore contract (vaultd/storage/base.py), proven against every store."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from redis.asyncio import Redis

from tests.storage.contract import (
    new_env,
    new_event,
    read_all,
)
from vaultd.storage import (
    AuditEvent,
    AuditQuery,
    BadCursor,
    RedisStore,
    SqliteStore,
    Store,
    codec,
)
from vaultd.storage.keys import audit_key


async def test_audit_events_read_back_exactly_in_order(store: Store) -> None:
    env = new_env()
    keep = datetime.now(UTC) - timedelta(days=1)
    events = [
        new_event(env, key_ids=(), key_context={}) if n == 2 else new_event(env) for n in range(5)
    ]
    for event in events:
        await store.append_audit_event(event, keep)

    assert await read_all(store, env) == events
    assert await read_all(store, new_env()) == []


async def test_audit_pages_continue_from_their_cursor(store: Store) -> None:
    env = new_env()
    keep = datetime.now(UTC) - timedelta(days=1)
    events = [
        new_event(env, "vault.data.read" if n % 2 else "vault.data.created") for n in range(7)
    ]
    for event in events:
        await store.append_audit_event(event, keep)

    seen: list[AuditEvent] = []
    cursor = ""
    while True:
        page = await store.read_audit_events(env, AuditQuery(after=cursor, limit=2))
        seen += page.events
        if len(page.events) < 2:
            break
        cursor = page.cursor
    assert seen == events
    # At the end, the cursor stays put and later events appear after it.
    end = await store.read_audit_events(env, AuditQuery(after=page.cursor))
    assert (list(end.events), end.cursor) == ([], page.cursor)
    later = new_event(env)
    await store.append_audit_event(later, keep)
    assert list((await store.read_audit_events(env, AuditQuery(after=page.cursor))).events) == [
        later
    ]

    reads = await store.read_audit_events(env, AuditQuery(type="vault.data.read", limit=2))
    assert list(reads.events) == [events[1], events[3]]
    rest = await store.read_audit_events(
        env, AuditQuery(after=reads.cursor, type="vault.data.read")
    )
    assert list(rest.events) == [events[5], later]


async def test_audit_since_keeps_events_at_or_after_it(store: Store) -> None:
    env = new_env()
    keep = datetime.now(UTC) - timedelta(days=1)
    first = new_event(env, time=datetime.now(UTC) - timedelta(milliseconds=10))
    second = new_event(env)
    for event in (first, second):
        await store.append_audit_event(event, keep)
    assert await read_all(store, env, since=second.time) == [second]
    assert await read_all(store, env, since=first.time) == [first, second]


async def test_unauthenticated_events_are_apart_from_every_environment(store: Store) -> None:
    keep = datetime.now(UTC) - timedelta(days=1)
    anonymous = new_event("", actor_id="", actor_name="", outcome="API_KEY_MISSING")
    await store.append_audit_event(anonymous, keep)
    assert (await read_all(store, ""))[-1] == anonymous
    assert anonymous not in await read_all(store, "default")


async def test_audit_events_older_than_the_retention_are_trimmed(store: Store) -> None:
    env = new_env()
    old = new_event(env, time=datetime.now(UTC) - timedelta(milliseconds=20))
    await store.append_audit_event(old, old.time - timedelta(days=1))
    await asyncio.sleep(0.02)  # Redis trims by its own append time
    new = new_event(env)
    await store.append_audit_event(new, new.time - timedelta(milliseconds=5))
    assert await read_all(store, env) == [new]


async def test_a_batch_of_audit_events_reads_back_in_order_per_environment(
    store: Store,
) -> None:
    first, second = new_env(), new_env()
    keep = datetime.now(UTC) - timedelta(days=1)
    batch = [new_event(first if n % 3 else second, request_id=f"req-{n}") for n in range(10)]
    await store.append_audit_events(batch, keep)
    await store.append_audit_events([], keep)  # an empty batch is a no-op, not an error
    later = new_event(first)
    await store.append_audit_event(later, keep)

    assert await read_all(store, first) == [e for e in batch if e.environment_id == first] + [later]
    assert await read_all(store, second) == [e for e in batch if e.environment_id == second]


async def test_a_batch_refuses_a_bad_environment_and_stores_nothing_of_it_on_sqlite(
    sqlite_store: SqliteStore,
) -> None:
    env = new_env()
    keep = datetime.now(UTC) - timedelta(days=1)
    with pytest.raises(ValueError):
        await sqlite_store.append_audit_events([new_event(env), new_event("a:b")], keep)
    assert await read_all(sqlite_store, env) == []


async def test_batched_audit_events_are_stored_as_their_codec_records_on_redis(
    redis_store: RedisStore, redis_client: Redis
) -> None:
    env = new_env()
    batch = [new_event(env) for _ in range(5)]
    await redis_store.append_audit_events(batch, datetime.now(UTC) - timedelta(days=1))
    entries = await redis_client.xrange(audit_key(env))
    assert [fields for _, fields in entries] == [
        {b"e": codec.encode_audit_event(event)} for event in batch
    ]


async def test_batched_audit_events_are_stored_as_their_codec_records_on_sqlite(
    tmp_path: Path,
) -> None:
    store = SqliteStore(tmp_path / "vaultd.db")
    env = new_env()
    batch = [new_event(env) for _ in range(5)]
    try:
        await store.append_audit_events(batch, datetime.now(UTC) - timedelta(days=1))
    finally:
        await store.close()
    with contextlib.closing(sqlite3.connect(tmp_path / "vaultd.db")) as conn:
        rows = conn.execute(
            "SELECT environment_id, type, time, record FROM audit_events ORDER BY seq"
        ).fetchall()
    assert rows == [
        (e.environment_id, e.type, codec.to_micros(e.time), codec.encode_audit_event(e))
        for e in batch
    ]


async def test_foreign_audit_cursors_are_refused(store: Store) -> None:
    for bad in ("x", "1-2-3", "-1", "(0", "+", "12 34"):
        with pytest.raises(BadCursor):
            await store.read_audit_events(new_env(), AuditQuery(after=bad))
    with pytest.raises(ValueError):
        await store.read_audit_events("a:b", AuditQuery())
