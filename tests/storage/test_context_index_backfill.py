"""A store an older vaultd filled (objects, no key context index) answers filtered lists
correctly at once, and uses the index once the backfill has entered its objects."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from redis.asyncio import Redis

from testkit.redis_dbs import RedisDb, redis_db_url
from testkit.redis_server import RedisServer
from testkit.redis_topologies import RedisClusterSet
from tests.storage.contract import ASC, DESC, entry, new_env, scan_all
from tests.storage.test_context_index_contract import fill, only
from vaultd.cli import main
from vaultd.storage import RedisStore, SqliteStore, open_store
from vaultd.storage.keys import JobKind, Kind, job_key, key
from vaultd.storage.redis.context_index import CONTEXT_INDEX_MIGRATION, context_keys


async def forget_index(raw: Redis, env: str, *, database_marker: bool = True) -> None:
    """Leave the environment as an older vaultd would: no ctx:* zset, no marker."""
    async for name in raw.scan_iter(match=f"vaultd:{{{env}}}:ctx*", count=1000):
        await raw.delete(name)
    if database_marker:
        await raw.hdel(job_key(JobKind.MIGRATIONS), CONTEXT_INDEX_MIGRATION)


async def test_redis_answers_before_and_after_the_backfill(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    url = redis_db_url(redis_server.url, RedisDb.CONTEXT_INDEX_BACKFILL)
    raw = Redis.from_url(url)
    writer = RedisStore.from_url(url)
    env = new_env()
    try:
        await raw.flushdb()
        made = await fill(writer, env)
        await forget_index(raw, env)

        old = RedisStore.from_url(url)  # a process that has not seen any marker
        try:
            for tenant, objects in made.items():
                flt = only(organization_id=tenant)
                assert await scan_all(old, env, ASC, flt, 2) == [entry(o) for o in objects]
                assert not await old._context_indexed(env)
        finally:
            await old.close()

        store = await open_store(url, tmp_path)  # runs the backfill, once
        assert isinstance(store, RedisStore)
        try:
            assert await store._context_indexed(env)
            assert await raw.exists(key(env, Kind.CONTEXT_INDEXED))
            for tenant, objects in made.items():
                org_key = context_keys(env, objects[0].key_context)[0]
                assert await raw.zcard(org_key) == len(objects)
                flt = only(organization_id=tenant)
                assert await scan_all(store, env, DESC, flt, 3) == [entry(o) for o in objects][::-1]
            assert await store.index_object_contexts() == 0, "once per database"
            assert await store.index_object_contexts(force=True) == sum(map(len, made.values()))
        finally:
            await store.close()
    finally:
        await writer.close()
        await raw.flushdb()
        await raw.aclose()


async def test_the_backfill_walks_every_cluster_node(redis_cluster: RedisClusterSet) -> None:
    store = RedisStore.from_url(redis_cluster.url)
    envs = [new_env() for _ in range(8)]  # hash tags spread over the masters
    try:
        made = {env: await fill(store, env, per_tenant=1) for env in envs}
        for env in envs:
            await forget_index(store._redis, env, database_marker=False)
        assert await store.index_object_contexts(force=True) >= 3 * len(envs)
        for env, by_tenant in made.items():
            for tenant, objects in by_tenant.items():
                flt = only(organization_id=tenant)
                assert await scan_all(store, env, ASC, flt) == [entry(o) for o in objects]
    finally:
        await store.close()


async def test_sqlite_fills_the_index_of_an_older_file_as_it_opens(tmp_path: Path) -> None:
    path = tmp_path / "vaultd.db"
    store = SqliteStore(path)
    env = new_env()
    try:
        made = await fill(store, env)
    finally:
        await store.close()
    conn = sqlite3.connect(path)
    conn.executescript("DROP TABLE object_context_items; DROP TABLE store_migrations;")
    conn.close()

    reopened = SqliteStore(path)
    try:
        for tenant, objects in made.items():
            flt = only(organization_id=tenant)
            assert await scan_all(reopened, env, ASC, flt, 2) == [entry(o) for o in objects]
    finally:
        await reopened.close()
    conn = sqlite3.connect(path)
    rows = conn.execute("SELECT COUNT(*) FROM object_context_items").fetchone()[0]
    conn.close()
    assert rows == 2 * sum(map(len, made.values()))  # two items per object


async def test_store_reindex_enters_what_an_older_process_left_out(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """A rolling upgrade: objects written without entries after the database was marked are
    invisible to filtered lists until `vaultd store reindex` enters them."""
    url = redis_db_url(redis_server.url, RedisDb.CONTEXT_INDEX_BACKFILL)
    raw = Redis.from_url(url)
    store = await open_store(url, tmp_path)
    assert isinstance(store, RedisStore)
    env = new_env()
    try:
        await raw.flushdb()
        await store.index_object_contexts()  # marks the (empty) database complete
        made = await fill(store, env, per_tenant=2)
        await forget_index(raw, env, database_marker=False)
        assert await scan_all(store, env, ASC, only(organization_id="org_a")) == []
        reindex = ["store", "reindex", "--data-dir", str(tmp_path), "--redis-url", url]
        assert await asyncio.to_thread(main, reindex) == 0
        assert await scan_all(store, env, ASC, only(organization_id="org_a")) == [
            entry(o) for o in made["org_a"]
        ]
    finally:
        await store.close()
        await raw.flushdb()
        await raw.aclose()


async def test_store_reindex_on_the_embedded_store(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "vaultd.db")
    env = new_env()
    try:
        made = await fill(store, env, per_tenant=2)
    finally:
        await store.close()
    conn = sqlite3.connect(tmp_path / "vaultd.db")
    conn.execute("DELETE FROM object_context_items")
    conn.commit()
    conn.close()
    reindex = ["store", "reindex", "--data-dir", str(tmp_path)]
    assert await asyncio.to_thread(main, reindex) == 0
    reopened = SqliteStore(tmp_path / "vaultd.db")
    try:
        assert await scan_all(reopened, env, ASC, only(organization_id="org_b")) == [
            entry(o) for o in made["org_b"]
        ]
    finally:
        await reopened.close()
