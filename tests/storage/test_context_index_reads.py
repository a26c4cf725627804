"""A context-filtered list of 10,000 objects across 100 tenants returns one tenant's 100 objects,
paged, and reads only those: counted on Redis by the server's own command counters (every
object a filtered scan reads is one HGET of its hash), on SQLite by the virtual machine steps
the statements take and by their query plans."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import pytest_asyncio
from redis.asyncio import Redis

from testkit.redis_server import RedisServer
from tests.storage.contract import ASC, entry, new_env, new_object
from vaultd.storage import ObjectEntry, RedisStore, ScanFilter, SqliteStore, Store, StoredObject
from vaultd.storage.keys import JobKind, Kind, job_key, key
from vaultd.storage.redis.context_index import CONTEXT_INDEX_MIGRATION

TENANTS, PER_TENANT, PAGE = 100, 100, 10
CHOSEN = "org_042"


@pytest.fixture(scope="module")
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server of this module's own: INFO commandstats counts every client's commands."""
    with RedisServer(tmp_path_factory.mktemp("context-reads")) as server:
        yield server


@pytest_asyncio.fixture(scope="module")
async def filled_redis(own_redis: RedisServer) -> AsyncIterator[tuple[RedisStore, str, list]]:
    # A generous timeout: the fill sends 500 creates at once, on a machine other suites share.
    store = RedisStore.from_url(own_redis.url, timeout=60)
    env = new_env()
    chosen = await fill(store, env)
    await store.index_object_contexts()  # an empty database: marks it complete
    yield store, env, chosen
    await store.close()


async def fill(store: Store, env: str) -> list[StoredObject]:
    """TENANTS x PER_TENANT objects, the tenants interleaved in creation order; the objects of
    CHOSEN, oldest first."""
    chosen: list[StoredObject] = []
    for n in range(0, TENANTS * PER_TENANT, 500):
        batch = [
            replace(
                new_object(env, f"o{i:05}"), key_context={"organization_id": f"org_{i % 100:03}"}
            )
            for i in range(n, n + 500)
        ]
        await asyncio.gather(*map(store.create_object, batch))
        chosen += (o for o in batch if o.key_context["organization_id"] == CHOSEN)
    return chosen


async def pages(store: Store, env: str) -> list[ObjectEntry]:
    """The chosen tenant's objects, PAGE at a time, as ListObjects walks them."""
    flt = ScanFilter(key_context={"organization_id": CHOSEN})
    found: list[ObjectEntry] = []
    cursor = None
    while page := await store.scan_objects(env, ASC, cursor, PAGE, flt):
        assert len(page) <= PAGE
        found += page
        cursor = page[-1].id
    return found


async def commands(server: RedisServer) -> dict[str, int]:
    async with Redis.from_url(server.url) as client:
        stats = await client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


async def counted(server: RedisServer, store: Store, env: str) -> tuple[list, dict[str, int]]:
    before = await commands(server)
    found = await pages(store, env)
    after = await commands(server)
    ran = {k: after[k] - before.get(k, 0) for k in after if k not in ("info", "hello")}
    return found, {k: n for k, n in ran.items() if n}


async def test_redis_reads_only_the_tenants_objects(
    filled_redis: tuple[RedisStore, str, list], own_redis: RedisServer
) -> None:
    store, env, chosen = filled_redis
    found, ran = await counted(own_redis, store, env)
    assert found == [entry(o) for o in chosen]
    # SCAN_CONTEXT reads each candidate: one HMGET (context, deleted mark), one HGET (digest).
    objects_read = ran.get("hmget", 0)  # each candidate's context and deleted mark
    print(
        f"\nredis: {len(found)} of {TENANTS * PER_TENANT} listed, {objects_read} objects read,"
        f" commands: {ran}"
    )
    assert objects_read == PER_TENANT
    assert sum(ran.values()) < 3 * PER_TENANT


async def test_redis_without_the_index_reads_everything_and_still_answers(
    filled_redis: tuple[RedisStore, str, list], own_redis: RedisServer
) -> None:
    """The contrast: an environment not yet backfilled is walked whole, with the same answer."""
    _, env, chosen = filled_redis
    raw = Redis.from_url(own_redis.url)
    try:
        await raw.hdel(job_key(JobKind.MIGRATIONS), CONTEXT_INDEX_MIGRATION)
        await raw.delete(key(env, Kind.CONTEXT_INDEXED))
        unmarked = RedisStore.from_url(own_redis.url)
        try:
            found, ran = await counted(own_redis, unmarked, env)
        finally:
            await unmarked.close()
        await raw.hset(job_key(JobKind.MIGRATIONS), CONTEXT_INDEX_MIGRATION, 1)
    finally:
        await raw.aclose()
    assert found == [entry(o) for o in chosen]
    print(f"\nredis unindexed: {ran.get('hmget', 0)} objects read, commands: {ran}")
    assert ran.get("hmget", 0) >= TENANTS * PER_TENANT - PER_TENANT


def vm_steps(store: SqliteStore, counter: list[int]) -> None:
    """Count both connections' virtual machine steps, 100 at a time, into counter[0]."""

    def tick() -> int:
        counter[0] += 100
        return 0

    for executor, conn in (
        (store._read_executor, store._read_conn),
        (store._executor, store._conn),
    ):
        executor.submit(conn.set_progress_handler, tick, 100).result()


async def test_sqlite_reads_only_the_tenants_objects(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "vaultd.db")
    env = new_env()
    try:
        chosen = await fill(store, env)
        steps = [0]
        vm_steps(store, steps)
        found = await pages(store, env)
        filtered = steps[0]
        steps[0] = 0
        # One name-filtered scan that matches nothing reads every object once: the baseline.
        assert await store.scan_objects(env, ASC, None, 1, ScanFilter(name_prefix="zz")) == []
        everything = steps[0]
        print(
            f"\nsqlite: {len(found)} listed in {filtered} VM steps; a scan of every object "
            f"takes {everything}"
        )
        assert found == [entry(o) for o in chosen]
        assert filtered * 5 < everything
    finally:
        await store.close()
    conn = sqlite3.connect(tmp_path / "vaultd.db")
    plan = " | ".join(
        row[3]
        for row in conn.execute(
            "EXPLAIN QUERY PLAN SELECT o.id FROM object_context_items i JOIN objects o"
            " ON o.environment_id = i.environment_id AND o.id = i.object_id"
            " WHERE i.environment_id = ? AND i.item_key = ? AND i.item_value = ?"
            " AND i.object_id > ? ORDER BY i.object_id LIMIT 10",
            (env, "organization_id", CHOSEN, ""),
        )
    )
    conn.close()
    assert "SCAN" not in plan, plan
