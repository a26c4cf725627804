"""The ApiKeyStore contract (vaultd/storage/base.py), proven against every store."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
import pytest_asyncio
from redis.asyncio import Redis
from ulid import ULID

from testkit.redis_dbs import RedisDb, redis_db_url
from testkit.redis_server import RedisServer
from tests.storage.contract import (
    BASE_TIME,
    new_api_key,
    new_env,
)
from vaultd.storage import (
    RedisStore,
    SqliteStore,
    Store,
    StoreError,
)


async def test_api_keys_read_back_by_id_hash_and_list(store: Store) -> None:
    record = new_api_key(new_env())
    assert await store.add_api_key(record)

    assert await store.get_api_key(record.id) == record
    assert await store.find_api_key(record.secret_hash) == record
    listed = await store.list_api_keys()
    assert record in listed
    assert [k.id for k in listed] == sorted(k.id for k in listed)
    assert await store.get_api_key(f"key_{ULID()}") is None
    assert await store.find_api_key(secrets.token_hex(32)) is None


async def test_an_api_key_id_or_secret_is_never_reused(store: Store) -> None:
    record = new_api_key()
    await store.add_api_key(record)
    same_id = replace(new_api_key(), id=record.id)
    same_secret = replace(new_api_key(), secret_hash=record.secret_hash)
    for rival in (same_id, same_secret):
        with pytest.raises(StoreError):
            await store.add_api_key(rival)
    assert await store.find_api_key(same_id.secret_hash) is None
    assert await store.get_api_key(same_secret.id) is None
    assert await store.get_api_key(record.id) == record


async def test_only_if_none_adds_nothing_once_a_key_exists(store: Store) -> None:
    await store.add_api_key(new_api_key())
    late = new_api_key()
    assert not await store.add_api_key(late, only_if_none=True)
    assert await store.get_api_key(late.id) is None


async def test_a_revocation_is_kept_with_its_first_time(store: Store) -> None:
    record = new_api_key()
    await store.add_api_key(record)
    first, later = BASE_TIME + timedelta(days=1), BASE_TIME + timedelta(days=2)

    revoked = replace(record, revoked_at=first)
    assert await store.revoke_api_key(record.id, first) == revoked
    assert await store.revoke_api_key(record.id, later) == revoked
    assert await store.get_api_key(record.id) == revoked
    assert await store.find_api_key(record.secret_hash) == revoked
    assert revoked in await store.list_api_keys()
    assert await store.revoke_api_key(f"key_{ULID()}", first) is None


async def test_malformed_api_key_ids_and_hashes_are_refused(store: Store) -> None:
    for bad in (
        "",
        "key_",
        "key_01j9z3k4abcdefghjkmnpqrstv",
        "{@auth}",
        "key_01J9Z3K4ABCDEFGHJKMNPQRSTV:x",
    ):
        with pytest.raises(ValueError):
            await store.get_api_key(bad)
        with pytest.raises(ValueError):
            await store.revoke_api_key(bad, BASE_TIME)
    with pytest.raises(ValueError):
        await store.find_api_key("ABC" * 20)
    with pytest.raises(ValueError):
        await store.add_api_key(replace(new_api_key(), environment_id="a:b"))


@pytest_asyncio.fixture(params=["sqlite", "redis"])
async def empty_store(
    request: pytest.FixtureRequest, tmp_path: Path, redis_server: RedisServer
) -> AsyncIterator[Store]:
    """A store with no API key at all: a private SQLite file, or a spare Redis database."""
    if request.param == "sqlite":
        store: Store = SqliteStore(tmp_path / "vaultd.db")
    else:
        url = redis_db_url(redis_server.url, RedisDb.CONTRACT)
        client = Redis.from_url(url)
        await client.flushdb()
        await client.aclose()
        store = RedisStore.from_url(url)
    yield store
    await store.close()


async def test_exactly_one_of_racing_bootstraps_adds_its_key(empty_store: Store) -> None:
    rivals = [new_api_key() for _ in range(20)]
    results = await asyncio.gather(*(empty_store.add_api_key(r, only_if_none=True) for r in rivals))
    assert results.count(True) == 1
    assert await empty_store.list_api_keys() == [rivals[results.index(True)]]
