"""The StoreConnection contract (vaultd/storage/base.py) and open_store, proven against every
store: a store that answers, keeps its data across a reopen, and fails clearly when it cannot."""

from __future__ import annotations

import os
import stat
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path

import pytest
from redis.asyncio import Redis

from testkit.redis_server import RedisServer
from tests.storage.contract import (
    ASC,
    EVERYTHING,
    create,
    kek_versions,
    new_env,
    new_kek,
    new_kek_id,
    new_object,
    new_object_id,
    new_version,
)
from vaultd.storage import (
    RedisStore,
    SqliteStore,
    Store,
    StoreUnavailable,
    open_store,
)


async def test_ping_answers(store: Store) -> None:
    await store.ping()


async def test_sqlite_keeps_everything_across_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "fresh-dir" / "vaultd.db"
    env, kek_id = new_env(), new_kek_id()
    store = SqliteStore(path)
    obj = await create(store, env)
    second = new_version(os.urandom(1000))
    await store.update_object(env, obj.id, second, None)
    kek = new_kek(1)
    await store.add_kek_version(env, kek_id, kek)
    await store.close()

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    reopened = SqliteStore(path)
    try:
        assert await reopened.get_object(env, obj.id) == replace(obj, version=second)
        assert await reopened.list_versions(env, obj.id) == (
            [obj.version.info(), second.info()],
            second.version_id,
        )
        assert await kek_versions(reopened, env, kek_id) == (kek,)
    finally:
        await reopened.close()


async def test_a_closed_sqlite_store_is_unavailable(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "vaultd.db")
    await store.close()
    with pytest.raises(StoreUnavailable):
        await store.ping()
    await store.close()  # closing twice is harmless


async def test_redis_store_refuses_a_decoding_client(redis_server: RedisServer) -> None:
    client = Redis.from_url(redis_server.url, decode_responses=True)
    try:
        with pytest.raises(ValueError, match="decode_responses"):
            RedisStore(client)
    finally:
        await client.aclose()


async def test_redis_down_is_unavailable_and_the_same_store_recovers(tmp_path: Path) -> None:
    env = new_env()
    with RedisServer(tmp_path / "redis") as server:
        store = RedisStore.from_url(server.url)
        try:
            await create(store, env)
            for end in (server.stop, server.kill):
                end()
                await assert_unavailable(store, env)
                server.start()  # same port, same URL, empty data (nothing is saved)
                await store.ping()
                obj = await create(store, env)
                assert await store.get_object(env, obj.id) == obj
        finally:
            await store.close()


async def assert_unavailable(store: Store, env: str) -> None:
    calls: list[Callable[[], Awaitable[object]]] = [
        store.ping,
        lambda: store.get_object(env, new_object_id()),
        lambda: store.create_object(new_object(env, "hunter2-name")),
        lambda: store.scan_objects(env, ASC, None, 10, EVERYTHING),
        lambda: store.add_kek_version(env, new_kek_id(), new_kek(1)),
    ]
    for call in calls:
        with pytest.raises(StoreUnavailable, match="redis is unavailable") as failure:
            await call()
        assert "hunter2" not in str(failure.value)


async def test_open_store_without_a_url_opens_sqlite_in_the_data_dir(tmp_path: Path) -> None:
    store = await open_store(None, tmp_path / "data")
    try:
        assert isinstance(store, SqliteStore)
        assert (tmp_path / "data" / "vaultd.db").exists()
        await store.ping()
    finally:
        await store.close()


async def test_open_store_with_a_url_opens_redis(redis_server: RedisServer, tmp_path: Path) -> None:
    store = await open_store(redis_server.url, tmp_path)
    try:
        assert isinstance(store, RedisStore)
        await store.ping()
        assert not (tmp_path / "vaultd.db").exists()
    finally:
        await store.close()


@pytest.mark.parametrize(
    "url",
    [
        "memcached://user:hunter2@cache:11211",
        "redis+sentinel://user:hunter2@sentinel:26379",
        "redis+cluster://user:hunter2@cache",
        "127.0.0.1:6379",
    ],
)
async def test_open_store_refuses_other_urls_without_echoing_them(url: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"redis://|host:port|service_name") as refused:
        await open_store(url, tmp_path)
    assert "hunter2" not in str(refused.value)
