"""The KekStore contract (vaultd/storage/base.py), proven against every store.

KEK versions added in sequence, and the KEK lifecycle state (list, rewrap, retire, shred); then
what only one store shows.
"""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from redis.asyncio import Redis

from tests.storage.contract import (
    BASE_TIME,
    ITEM,
    LATER,
    get_kek,
    kek_versions,
    make_kek,
    new_env,
    new_job,
    new_kek,
    new_kek_id,
    rewrapped,
)
from vaultd.storage import (
    RedisStore,
    SqliteStore,
    Store,
    codec,
)
from vaultd.storage.keys import Kind, key
from vaultd.storage.records import KekRecord


async def test_kek_versions_are_added_in_sequence_only(store: Store) -> None:
    env, kek_id = new_env(), new_kek_id()
    v1, v2 = new_kek(1), new_kek(2)
    assert await store.get_kek(env, kek_id) is None

    assert not await store.add_kek_version(env, kek_id, v2)  # version 1 must come first
    assert await store.add_kek_version(env, kek_id, v1)
    assert not await store.add_kek_version(env, kek_id, new_kek(1))  # a second writer of v1
    assert not await store.add_kek_version(env, kek_id, new_kek(3))
    assert await store.add_kek_version(env, kek_id, v2)

    assert await kek_versions(store, env, kek_id) == (v1, v2)
    assert await store.get_kek(new_env(), kek_id) is None
    assert await store.get_kek(env, new_kek_id()) is None


async def test_exactly_one_of_racing_kek_writers_wins(store: Store) -> None:
    env, kek_id = new_env(), new_kek_id()
    rivals = [new_kek(1) for _ in range(20)]

    results = await asyncio.gather(*(store.add_kek_version(env, kek_id, k) for k in rivals))

    assert results.count(True) == 1
    assert await kek_versions(store, env, kek_id) == (rivals[results.index(True)],)


async def test_a_kek_reads_back_with_its_versions_and_state(store: Store) -> None:
    env, kek_id = new_env(), new_kek_id()
    assert await store.get_kek(env, kek_id) is None
    v1, v2 = new_kek(1), new_kek(2)
    assert await store.add_kek_version(env, kek_id, v1)
    assert await store.add_kek_version(env, kek_id, v2)

    assert await store.get_kek(env, kek_id) == KekRecord(kek_id, *ITEM, (v1, v2), 1, None)
    assert await store.get_kek(new_env(), kek_id) is None
    assert await store.list_keks(new_env()) == []


async def test_keks_list_by_item_shredded_ones_too_per_environment(store: Store) -> None:
    env, other_env = new_env(), new_env()
    made = {}
    for item in [("user_id", "u1"), ("organization_id", "org_b"), ("organization_id", "org_a")]:
        made[item] = await make_kek(store, env, 2, item)
    shredded_id, _ = made[("organization_id", "org_b")]
    assert await store.shred_kek(env, shredded_id, "organization_id", "org_b", LATER)
    tombstone_id = new_kek_id()  # shredded before it was ever made
    assert await store.shred_kek(env, tombstone_id, "organization_id", "org_c", LATER)
    elsewhere_id, elsewhere = await make_kek(store, other_env)

    a_id, a = made[("organization_id", "org_a")]
    u_id, u = made[("user_id", "u1")]
    assert await store.list_keks(env) == [
        KekRecord(a_id, "organization_id", "org_a", tuple(a)),
        KekRecord(shredded_id, "organization_id", "org_b", (), shredded_at=LATER),
        KekRecord(tombstone_id, "organization_id", "org_c", (), shredded_at=LATER),
        KekRecord(u_id, "user_id", "u1", tuple(u)),
    ]
    assert await store.list_keks(other_env) == [KekRecord(elsewhere_id, *ITEM, tuple(elsewhere))]


async def test_no_version_is_added_after_a_shred(store: Store) -> None:
    env = new_env()
    kek_id, _ = await make_kek(store, env)
    assert await store.shred_kek(env, kek_id, *ITEM, LATER)

    assert not await store.add_kek_version(env, kek_id, new_kek(2))
    assert not await store.add_kek_version(env, kek_id, new_kek(1))  # nor a fresh start
    assert (await get_kek(store, env, kek_id)).versions == ()


async def test_a_rewrap_swaps_one_version_by_compare_and_set(store: Store) -> None:
    env = new_env()
    kek_id, (v1, v2, v3) = await make_kek(store, env, 3)
    new_v2 = rewrapped(v2)

    assert await store.rewrap_kek_version(env, kek_id, v2, new_v2)

    # The provider key and wrapped key change; the number, item and creation time stay.
    stored_v2 = replace(v2, provider_uri=new_v2.provider_uri, wrapped_key=new_v2.wrapped_key)
    assert await kek_versions(store, env, kek_id) == (v1, stored_v2, v3)
    # A second rewrap from the same reading is stale, as is one naming the wrong version.
    assert not await store.rewrap_kek_version(env, kek_id, v2, rewrapped(v2))
    assert not await store.rewrap_kek_version(env, kek_id, replace(v3, version=2), rewrapped(v3))
    assert not await store.rewrap_kek_version(env, kek_id, new_kek(4), rewrapped(new_kek(4)))
    assert not await store.rewrap_kek_version(env, kek_id, new_kek(0), rewrapped(new_kek(0)))
    assert not await store.rewrap_kek_version(env, new_kek_id(), v1, rewrapped(v1))
    assert await kek_versions(store, env, kek_id) == (v1, stored_v2, v3)

    assert await store.shred_kek(env, kek_id, *ITEM, LATER)
    assert not await store.rewrap_kek_version(env, kek_id, v1, rewrapped(v1))
    assert (await get_kek(store, env, kek_id)).versions == ()


async def test_exactly_one_of_racing_kek_rewraps_wins(store: Store) -> None:
    env = new_env()
    kek_id, (v1,) = await make_kek(store, env)
    rivals = [rewrapped(v1) for _ in range(20)]

    results = await asyncio.gather(*(store.rewrap_kek_version(env, kek_id, v1, r) for r in rivals))

    assert results.count(True) == 1
    winner = rivals[results.index(True)]
    assert (await kek_versions(store, env, kek_id))[0].wrapped_key == winner.wrapped_key


async def test_min_decryption_version_is_set_within_the_versions_only(store: Store) -> None:
    env = new_env()
    kek_id, versions = await make_kek(store, env, 3)

    for refused in (0, -1, 4):
        assert not await store.set_min_decryption_version(env, kek_id, refused)
    assert not await store.set_min_decryption_version(env, new_kek_id(), 1)
    assert (await get_kek(store, env, kek_id)).min_decryption_version == 1

    assert await store.set_min_decryption_version(env, kek_id, 3)
    record = await get_kek(store, env, kek_id)
    assert (record.min_decryption_version, record.versions) == (3, tuple(versions))
    assert await store.set_min_decryption_version(env, kek_id, 1)  # allowed again
    assert (await get_kek(store, env, kek_id)).min_decryption_version == 1

    assert await store.shred_kek(env, kek_id, *ITEM, LATER)
    assert not await store.set_min_decryption_version(env, kek_id, 1)


async def test_a_shred_destroys_every_version_and_the_first_one_stays(store: Store) -> None:
    env = new_env()
    kek_id, _ = await make_kek(store, env, 2)
    survivor_id, survivor = await make_kek(store, env, 1, ("organization_id", "org_other"))

    # The item named is for a KEK never made (its tombstone's); this one keeps its own.
    assert await store.shred_kek(env, kek_id, "user_id", "u8", LATER)
    # Shredded again: nothing changes, the first time stays.
    assert not await store.shred_kek(env, kek_id, *ITEM, LATER + timedelta(days=1))

    record = await get_kek(store, env, kek_id)
    assert (record.item_key, record.item_value) == ITEM
    assert (record.versions, record.shredded_at) == ((), LATER)
    assert await get_kek(store, env, survivor_id) == KekRecord(
        survivor_id, "organization_id", "org_other", tuple(survivor)
    )


async def test_a_kek_never_made_can_be_shredded_ahead(store: Store) -> None:
    env, kek_id = new_env(), new_kek_id()

    assert await store.shred_kek(env, kek_id, *ITEM, LATER)

    tombstone = KekRecord(kek_id, *ITEM, (), shredded_at=LATER)
    assert await store.get_kek(env, kek_id) == tombstone
    assert not await store.add_kek_version(env, kek_id, new_kek(1))
    assert await store.list_keks(env) == [tombstone]


async def test_sqlite_keeps_the_lifecycle_state_across_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "vaultd.db"
    env = new_env()
    store = SqliteStore(path)
    retired_id, versions = await make_kek(store, env, 2)
    assert await store.set_min_decryption_version(env, retired_id, 2)
    shredded_id, _ = await make_kek(store, env, 1, ("user_id", "u1"))
    assert await store.shred_kek(env, shredded_id, "user_id", "u1", LATER)
    job = new_job()
    assert await store.save_rewrap_job(job, BASE_TIME)
    keks = await store.list_keks(env)
    await store.close()

    reopened = SqliteStore(path)
    try:
        assert keks == [
            KekRecord(retired_id, *ITEM, tuple(versions), min_decryption_version=2),
            KekRecord(shredded_id, "user_id", "u1", (), shredded_at=LATER),
        ]
        assert await reopened.list_keks(env) == keks
        assert await reopened.get_rewrap_job(job.id) == job
        assert not await reopened.add_kek_version(env, shredded_id, new_kek(2))
    finally:
        await reopened.close()


async def test_sqlite_lists_the_keks_of_a_database_made_before_the_list(tmp_path: Path) -> None:
    path = tmp_path / "vaultd.db"
    env = new_env()
    store = SqliteStore(path)
    kek_id, versions = await make_kek(store, env, 2)
    await store.close()
    with sqlite3.connect(path) as old:  # what an older release left: versions, no keks table
        old.execute("DROP TABLE keks")
        old.execute("DROP TABLE rewrap_jobs")
    old.close()

    reopened = SqliteStore(path)
    try:
        assert await reopened.list_keks(env) == [KekRecord(kek_id, *ITEM, tuple(versions))]
        assert await reopened.add_kek_version(env, kek_id, new_kek(3))
        assert await reopened.set_min_decryption_version(env, kek_id, 3)
    finally:
        await reopened.close()


def disk_bytes(directory: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file())


async def test_sqlite_shred_leaves_no_wrapped_key_on_disk(tmp_path: Path) -> None:
    path = tmp_path / "vaultd.db"
    env = new_env()
    store = SqliteStore(path)
    try:
        # Neighbours on the same pages, so those pages live on with free space where the
        # shredded rows were.
        await make_kek(store, env, 3, ("organization_id", "org_a"))
        kek_id, versions = await make_kek(store, env, 3)
        await make_kek(store, env, 3, ("organization_id", "org_z"))
        await store.close()  # checkpointed: the wrapped keys are in the database file
        store = SqliteStore(path)
        assert all(v.wrapped_key in disk_bytes(tmp_path) for v in versions)

        assert await store.shred_kek(env, kek_id, *ITEM, LATER)

        on_disk = disk_bytes(tmp_path)  # the database, its WAL and shared memory
        assert not any(v.wrapped_key in on_disk for v in versions)
    finally:
        await store.close()


async def test_redis_reads_and_lists_a_kek_an_older_release_made(
    redis_store: RedisStore, redis_client: Redis
) -> None:
    """Such a KEK has its version list only: no state hash, and no place in the index."""
    env, kek_id = new_env(), new_kek_id()
    v1 = new_kek(1)
    await redis_client.rpush(key(env, Kind.KEK, kek_id), codec.encode_kek(v1))

    assert await redis_store.get_kek(env, kek_id) == KekRecord(kek_id, *ITEM, (v1,))
    assert await redis_store.set_min_decryption_version(env, kek_id, 1)
    v2 = new_kek(2)
    assert await redis_store.add_kek_version(env, kek_id, v2)
    assert await redis_store.list_keks(env) == [KekRecord(kek_id, *ITEM, (v1, v2))]


async def test_redis_shred_deletes_the_version_list(
    redis_store: RedisStore, redis_client: Redis
) -> None:
    env = new_env()
    kek_id, _ = await make_kek(redis_store, env, 2)
    assert await redis_client.exists(key(env, Kind.KEK, kek_id)) == 1

    assert await redis_store.shred_kek(env, kek_id, *ITEM, LATER)

    assert await redis_client.exists(key(env, Kind.KEK, kek_id)) == 0
    assert (
        await redis_client.hget(key(env, Kind.KEK_STATE, kek_id), "shredded")
        == str(codec.to_micros(LATER)).encode()
    )
