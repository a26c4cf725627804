"""The store's identity and durability, on every backend (vaultd/core/storeguard.py uses them).

Each test gets an empty store of its own: the identity is one per store, so the shared stores
of the contract suite cannot be used.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from testkit.redis_dbs import RedisDb, redis_db_url
from testkit.redis_server import RedisServer
from vaultd.storage import RedisStore, SqliteStore, Store
from vaultd.storage.records import StoreIdentity


@pytest.fixture(params=["sqlite", "redis"])
async def empty_store(
    request: pytest.FixtureRequest, tmp_path: Path, redis_server: RedisServer
) -> AsyncIterator[Store]:
    store: Store
    if request.param == "sqlite":
        store = SqliteStore(tmp_path / "vaultd.db")
    else:
        url = redis_db_url(redis_server.url, RedisDb.IDENTITY)  # each test flushes it
        raw = aioredis.Redis.from_url(url)
        await raw.flushdb()
        await raw.aclose()
        store = RedisStore.from_url(url)
    yield store
    await store.close()


def _identity(store_id: str, *fingerprints: str) -> StoreIdentity:
    # Microseconds: what both stores keep of a time.
    return StoreIdentity(
        store_id, datetime(2026, 12, 4, 12, 0, 0, 123456, UTC), frozenset(fingerprints)
    )


async def test_an_identity_is_written_once_and_read_back(empty_store: Store) -> None:
    assert await empty_store.get_identity() is None
    assert not await empty_store.has_data()
    first = _identity("store_a", "f1", "f2")
    assert await empty_store.create_identity(first)
    assert not await empty_store.create_identity(_identity("store_b", "f3"))
    assert await empty_store.get_identity() == first
    assert await empty_store.has_data()


async def test_root_fingerprints_are_added_not_replaced(empty_store: Store) -> None:
    await empty_store.create_identity(_identity("store_a", "f1"))
    await empty_store.add_root_fingerprints(frozenset({"f2", "f1"}))
    found = await empty_store.get_identity()
    assert found is not None and found.root_fingerprints == {"f1", "f2"}
    assert found.store_id == "store_a"


async def test_data_without_an_identity_is_data(empty_store: Store) -> None:
    """A store an older vaultd filled: no identity, but an API key."""
    from vaultd.storage.records import ApiKeyRecord

    record = ApiKeyRecord(
        id="key_" + "0" * 26,
        environment_id="default",
        name="old",
        secret_hash="ab" * 32,
        permissions=("admin",),
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    assert await empty_store.add_api_key(record)
    assert await empty_store.get_identity() is None
    assert await empty_store.has_data()


async def test_sqlite_is_durable(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "vaultd.db")
    durability = await store.durability()
    await store.close()
    assert durability.durable is True
    assert "synchronous=FULL" in durability.description


@pytest.mark.parametrize(
    ("args", "durable", "words"),
    [
        ((), True, "AOF appendfsync no"),
        (("--appendfsync", "always"), True, "AOF appendfsync always"),
    ],
)
async def test_redis_with_an_aof_is_durable(
    tmp_path: Path, args: tuple[str, ...], durable: bool, words: str
) -> None:
    with RedisServer(tmp_path / "redis", extra_args=args) as redis:
        store = RedisStore.from_url(f"{redis.url}?wait_replicas=0")
        durability = await store.durability()
        await store.close()
    assert durability.durable is durable
    assert words in durability.description


@pytest.mark.parametrize(
    ("args", "words"),
    [
        ((), "no persistence: a restart loses everything"),
        (("--save", "3600 1"), "RDB snapshots only"),
    ],
)
async def test_redis_without_an_aof_is_volatile(
    tmp_path: Path, args: tuple[str, ...], words: str
) -> None:
    with RedisServer(tmp_path / "redis", extra_args=args, persistent=False) as redis:
        store = RedisStore.from_url(redis.url)
        durability = await store.durability()
        await store.close()
    assert durability.durable is False
    assert words in durability.description


async def test_a_cluster_is_durable_only_if_every_primary_is(cluster_store: RedisStore) -> None:
    durability = await cluster_store.durability()
    assert durability.durable is True
    assert durability.description.count("AOF") >= 1
