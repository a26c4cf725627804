"""Per-API-key KEK counts: the same contract in every store (SQLite, Redis, Cluster, Sentinel).

The count behind the per-key total KEK quota must be exact under concurrency, never pass its
limit, keep API keys and environments apart, and be durable: a second store object on the same
SQLite file or Redis database (another process, or a restarted one) sees the same count.
"""

from __future__ import annotations

import asyncio
from typing import cast

from ulid import ULID

from testkit.redis_server import RedisServer
from vaultd.storage import Store
from vaultd.storage.base import NewKekCounts
from vaultd.storage.redis import RedisStore
from vaultd.storage.sqlite import SqliteStore


def new_env() -> str:
    return f"env_{ULID()}"


def new_key() -> str:
    return f"key_{ULID()}"


async def test_counts_up_to_the_limit_and_no_further(store: Store) -> None:
    counts = cast(NewKekCounts, store)
    env, api_key = new_env(), new_key()
    assert await counts.new_keks_of(env, api_key) == 0
    assert [await counts.admit_new_kek(env, api_key, 3) for _ in range(5)] == [
        True,
        True,
        True,
        False,
        False,
    ]
    assert await counts.new_keks_of(env, api_key) == 3, "a refusal counts nothing"
    # A raised limit admits again, from the same count.
    assert await counts.admit_new_kek(env, api_key, 4) is True
    assert await counts.new_keks_of(env, api_key) == 4


async def test_keys_and_environments_are_counted_apart(store: Store) -> None:
    counts = cast(NewKekCounts, store)
    env, other_env = new_env(), new_env()
    api_key, other_key = new_key(), new_key()
    assert await counts.admit_new_kek(env, api_key, 1) is True
    assert await counts.admit_new_kek(env, api_key, 1) is False
    assert await counts.admit_new_kek(env, other_key, 1) is True
    assert await counts.admit_new_kek(other_env, api_key, 1) is True
    assert await counts.new_keks_of(env, other_key) == 1
    assert await counts.new_keks_of(other_env, other_key) == 0


async def test_concurrent_admissions_never_pass_the_limit(store: Store) -> None:
    counts = cast(NewKekCounts, store)
    env, api_key = new_env(), new_key()
    answers = await asyncio.gather(*(counts.admit_new_kek(env, api_key, 7) for _ in range(30)))
    assert answers.count(True) == 7
    assert await counts.new_keks_of(env, api_key) == 7


async def test_another_sqlite_store_on_the_file_shares_the_count(
    sqlite_store: SqliteStore,
) -> None:
    env, api_key = new_env(), new_key()
    assert await sqlite_store.admit_new_kek(env, api_key, 2) is True
    second = SqliteStore(sqlite_store.path)
    try:
        assert await second.new_keks_of(env, api_key) == 1
        answers = await asyncio.gather(
            sqlite_store.admit_new_kek(env, api_key, 2), second.admit_new_kek(env, api_key, 2)
        )
        assert sorted(answers) == [False, True]
    finally:
        await second.close()
    assert await sqlite_store.new_keks_of(env, api_key) == 2


async def test_another_redis_store_on_the_database_shares_the_count(
    redis_store: RedisStore, redis_server: RedisServer
) -> None:
    env, api_key = new_env(), new_key()
    assert await redis_store.admit_new_kek(env, api_key, 2) is True
    second = RedisStore.from_url(redis_server.url)
    try:
        assert await second.new_keks_of(env, api_key) == 1
        answers = await asyncio.gather(
            redis_store.admit_new_kek(env, api_key, 2), second.admit_new_kek(env, api_key, 2)
        )
        assert sorted(answers) == [False, True]
    finally:
        await second.close()
    assert await redis_store.new_keks_of(env, api_key) == 2
    # The stored shape (docs/FORMAT.md): one hash per environment, API key id -> count.
    raw = await redis_store._redis.hgetall(f"vaultd:{{{env}}}:kek-counts")
    assert raw == {api_key.encode(): b"2"}
