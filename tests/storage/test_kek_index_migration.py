"""A Redis database an older vaultd used: its KEKs (a version list each, no state, no index)
are entered into list_keks when a new vaultd opens the store, once per database."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

from redis.asyncio import Redis
from ulid import ULID

from testkit.redis_dbs import RedisDb, redis_db_url
from testkit.redis_server import RedisServer
from testkit.redis_topologies import RedisClusterSet
from vaultd.storage import KekVersion, RedisStore, codec, open_store
from vaultd.storage.keys import Kind, key


def old_kek(version: int, item_value: str) -> KekVersion:
    at = datetime(2030, 1, 1, tzinfo=UTC)
    return KekVersion("organization_id", item_value, version, "internal://root", b"w" * 48, at)


async def test_an_older_databases_keks_are_listed_once_opened(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    url = redis_db_url(redis_server.url, RedisDb.KEK_INDEX_MIGRATION)  # flushed: its own
    env, kek_id = f"env_{ULID()}", f"kek_{uuid.uuid4().hex}"
    raw = Redis.from_url(url)
    try:
        await raw.flushdb()
        await raw.rpush(
            key(env, Kind.KEK, kek_id),
            codec.encode_kek(old_kek(1, "org_old")),
            codec.encode_kek(old_kek(2, "org_old")),
        )
        store = await open_store(url, tmp_path)
        assert isinstance(store, RedisStore)
        try:
            (listed,) = await store.list_keks(env)
            assert (listed.kek_id, listed.item_value, len(listed.versions)) == (
                kek_id,
                "org_old",
                2,
            )
            assert listed.min_decryption_version == 1 and listed.shredded_at is None
            assert await store.index_unlisted_keks() == 0, "once per database"
        finally:
            await store.close()
    finally:
        await raw.flushdb()
        await raw.aclose()


async def test_the_upgrade_walks_every_cluster_node(redis_cluster: RedisClusterSet) -> None:
    store = RedisStore.from_url(redis_cluster.url)
    envs = [f"env_{ULID()}" for _ in range(12)]  # hash tags spread over the masters
    kek_id = "kek_" + "ab" * 16
    try:
        for n, env in enumerate(envs):
            await store._redis.rpush(
                key(env, Kind.KEK, kek_id), codec.encode_kek(old_kek(1, f"org_{n}"))
            )
        assert await store.index_unlisted_keks(force=True) >= len(envs)
        for n, env in enumerate(envs):
            assert [r.item_value for r in await store.list_keks(env)] == [f"org_{n}"]
    finally:
        await store.close()
