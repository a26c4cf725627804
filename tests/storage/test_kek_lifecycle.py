"""The key-lifecycle part of the Store contract (base.py), proven against every store.

KEK state (list, rewrap, retire, shred), the object walk a rewrap job makes, the swap of one
version's wrapped keys, and the rewrap jobs themselves. As in test_contract.py, each test works
in environments of its own, so tests share one database per store.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from ulid import ULID

from tests.storage.test_contract import (
    BASE_TIME,
    MIB,
    create,
    kek_versions,
    new_env,
    new_kek,
    new_kek_id,
    new_object,
    new_version,
    redis_client,
)
from vaultd.storage import RedisStore, SqliteStore, Store, StoredObject, StoredVersion, codec
from vaultd.storage.keys import Kind, key
from vaultd.storage.records import KekRecord, KekVersion, ObjectVersions, RewrapJob, RewrapState

__all__ = ["redis_client"]  # a fixture, imported for the Redis-specific tests

ITEM = ("organization_id", "org_ü")  # new_kek's item
LATER = BASE_TIME + timedelta(days=30)


async def make_kek(
    store: Store, environment_id: str, versions: int = 1, item: tuple[str, str] = ITEM
) -> tuple[str, list[KekVersion]]:
    """A new KEK of `item` with versions 1..`versions`."""
    kek_id = new_kek_id()
    made = [
        replace(new_kek(n), item_key=item[0], item_value=item[1]) for n in range(1, versions + 1)
    ]
    for kek in made:
        assert await store.add_kek_version(environment_id, kek_id, kek)
    return kek_id, made


async def get_kek(store: Store, environment_id: str, kek_id: str) -> KekRecord:
    record = await store.get_kek(environment_id, kek_id)
    assert record is not None
    return record


def rewrapped(kek: KekVersion) -> KekVersion:
    """`kek` under another provider key (and, to prove it is ignored, another creation time)."""
    return replace(
        kek, provider_uri="aws-kms://new-cmk", wrapped_key=os.urandom(60), created_at=LATER
    )


# --- reading KEKs --------------------------------------------------------------------------


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


# --- rotation and rewrap -------------------------------------------------------------------


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


# --- retiring ------------------------------------------------------------------------------


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


# --- shredding -----------------------------------------------------------------------------


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


# --- walking objects -----------------------------------------------------------------------


async def test_objects_are_counted_per_environment(store: Store) -> None:
    env = new_env()
    assert await store.count_objects(env) == 0
    objs = [await create(store, env) for _ in range(3)]
    await create(store, new_env())
    await store.delete_object(env, objs[1].id, None)

    assert await store.count_objects(env) == 2


async def test_a_walk_pages_through_every_version_of_every_object(store: Store) -> None:
    env = new_env()
    expected: dict[str, list[StoredVersion]] = {}
    for n in range(7):
        obj = await create(store, env)
        expected[obj.id] = [obj.version]
        for _ in range(n % 3):  # 1, 2 or 3 versions
            version = new_version(os.urandom(10))
            await store.update_object(env, obj.id, version, None)
            expected[obj.id].append(version)
    gone = sorted(expected)[3]
    await store.delete_object(env, gone, None)
    del expected[gone]
    await create(store, new_env())  # another environment's objects are not walked

    pages: list[list[ObjectVersions]] = []
    after = ""
    while page := await store.scan_object_versions(env, after, 2):
        pages.append(page)
        after = page[-1].object_id

    assert [len(p) for p in pages] == [2, 2, 2]
    assert [o for p in pages for o in p] == [
        ObjectVersions(object_id, tuple(versions))
        for object_id, versions in sorted(expected.items())
    ]
    # Strictly after the cursor, even when the cursor's object is gone.
    ids = sorted(expected)
    assert [o.object_id for o in await store.scan_object_versions(env, gone, 10)] == ids[3:]
    assert await store.scan_object_versions(env, ids[-1], 10) == []
    assert await store.scan_object_versions(env, "", 0) == []
    assert await store.scan_object_versions(new_env(), "", 10) == []
    with pytest.raises(ValueError, match="must match"):
        await store.scan_object_versions(env, "secret_:}{", 10)


# --- swapping wrapped keys -----------------------------------------------------------------


def with_keys(obj: StoredObject, encrypted_keys: bytes, key_ids: tuple[str, ...]) -> StoredObject:
    return replace(
        obj, version=replace(obj.version, encrypted_keys=encrypted_keys, key_ids=key_ids)
    )


@pytest.mark.parametrize("ciphertext", [b"", os.urandom(MIB)], ids=["empty", "1MiB"])
async def test_wrapped_keys_are_swapped_by_compare_and_set_and_nothing_else(
    store: Store, ciphertext: bytes
) -> None:
    env = new_env()
    first = new_object(env, version=new_version(ciphertext, at=BASE_TIME))
    await store.create_object(first)
    second = new_version(os.urandom(100))
    await store.update_object(env, first.id, second, None)
    current = replace(first, version=second)
    history = await store.list_versions(env, first.id)
    new_keys, new_ids = os.urandom(300), (f"{new_kek_id()}.v2",)

    # An old (not current) version: only its wrapped keys and key ids change.
    assert await store.replace_encrypted_keys(env, first.id, first.version, new_keys, new_ids)

    swapped = with_keys(first, new_keys, new_ids)
    assert await store.get_object_version(env, first.id, first.version.version_id) == swapped
    assert await store.get_object(env, first.id) == current
    assert await store.list_versions(env, first.id) == history
    walked = await store.scan_object_versions(env, "", 10)
    assert walked == [ObjectVersions(first.id, (swapped.version, second))]

    # Stale: the version was rewrapped since it was read.
    assert not await store.replace_encrypted_keys(env, first.id, first.version, b"x", ())
    assert await store.get_object_version(env, first.id, first.version.version_id) == swapped

    # The current version, down to no key at all: round-trips exactly too.
    assert await store.replace_encrypted_keys(env, first.id, second, b"", ())
    assert await store.get_object(env, first.id) == with_keys(current, b"", ())
    assert await store.get_object_by_name(env, first.name) == with_keys(current, b"", ())

    # Versions that do not exist (any more) are not created by a swap.
    unknown = new_version()
    assert not await store.replace_encrypted_keys(env, first.id, unknown, new_keys, new_ids)
    assert await store.get_object_version(env, first.id, unknown.version_id) is None
    await store.delete_object(env, first.id, None)
    assert not await store.replace_encrypted_keys(env, first.id, second, new_keys, new_ids)
    assert await store.get_object_version(env, first.id, second.version_id) is None
    assert await store.count_objects(env) == 0


async def test_exactly_one_of_racing_key_swaps_wins(store: Store) -> None:
    env = new_env()
    obj = await create(store, env)
    rivals = [os.urandom(64) for _ in range(20)]

    results = await asyncio.gather(
        *(store.replace_encrypted_keys(env, obj.id, obj.version, k, ("x",)) for k in rivals)
    )

    assert results.count(True) == 1
    winner = rivals[results.index(True)]
    assert await store.get_object(env, obj.id) == with_keys(obj, winner, ("x",))


# --- rewrap jobs ---------------------------------------------------------------------------


def new_job(owner: str = "host-a:1", *, at: timedelta = timedelta(0), **fields: Any) -> RewrapJob:
    job = RewrapJob(
        id=f"rewrap_{ULID()}",
        environment_id=new_env(),
        kek_ids=(new_kek_id(), new_kek_id()),
        state=RewrapState.RUNNING,
        created_at=BASE_TIME + at,
        updated_at=BASE_TIME + at,
        owner=owner,
        lease_until=BASE_TIME + timedelta(minutes=1),
    )
    return replace(job, **fields)


async def test_a_job_is_held_by_its_owner_until_its_lease_ends(store: Store) -> None:
    job = new_job("host-a:1")
    lease_end = BASE_TIME + timedelta(minutes=1)
    assert await store.get_rewrap_job(job.id) is None

    assert await store.save_rewrap_job(job, BASE_TIME)
    assert await store.get_rewrap_job(job.id) == job

    progress = replace(
        job,
        cursor=f"secret_{ULID()}",
        objects_total=9,
        objects_done=4,
        versions_rewrapped=5,
        keks_rewrapped=2,
        updated_at=LATER,
    )
    assert await store.save_rewrap_job(progress, lease_end)  # its owner: always
    # Another process, while the lease runs (up to and including its last instant): refused.
    takeover = replace(progress, owner="host-b:2", lease_until=lease_end + timedelta(minutes=1))
    assert not await store.save_rewrap_job(takeover, BASE_TIME)
    assert not await store.save_rewrap_job(takeover, lease_end)
    assert await store.get_rewrap_job(job.id) == progress

    # Once it has ended, another process takes it over, and the first is refused in turn.
    assert await store.save_rewrap_job(takeover, lease_end + timedelta(microseconds=1))
    assert await store.get_rewrap_job(job.id) == takeover
    assert not await store.save_rewrap_job(progress, lease_end + timedelta(seconds=1))

    # A job without a lease (finished, say) is free to anyone.
    done = replace(takeover, state=RewrapState.FAILED, error="provider refused", lease_until=None)
    assert await store.save_rewrap_job(done, BASE_TIME)
    assert await store.save_rewrap_job(replace(done, owner="host-c:3"), BASE_TIME)
    assert await store.get_rewrap_job(job.id) == replace(done, owner="host-c:3")


async def test_jobs_list_oldest_first(store: Store) -> None:
    jobs = [new_job(at=timedelta(hours=h)) for h in (3, 1, 2)]
    jobs.append(new_job(at=timedelta(hours=1)))  # same time: the id decides
    for job in jobs:
        assert await store.save_rewrap_job(job, BASE_TIME)

    listed = await store.list_rewrap_jobs()  # every test's jobs: one list for every process

    ours = [j for j in listed if j in jobs]
    assert ours == sorted(jobs, key=lambda j: (j.created_at, j.id))
    assert listed == sorted(listed, key=lambda j: (j.created_at, j.id))


async def test_malformed_job_ids_are_refused(store: Store) -> None:
    for bad in ["", "rewrap_:}{", f"rewrap_{str(ULID()).lower()}", str(ULID())]:
        with pytest.raises(ValueError, match="rewrap job id"):
            await store.get_rewrap_job(bad)
        with pytest.raises(ValueError, match="rewrap job id"):
            await store.save_rewrap_job(new_job(id=bad), BASE_TIME)
    with pytest.raises(ValueError, match="kek id"):
        await store.save_rewrap_job(new_job(kek_ids=("kek_NOT-HEX",)), BASE_TIME)


# --- SQLite specifics ----------------------------------------------------------------------


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


# --- Redis specifics -----------------------------------------------------------------------


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


async def test_redis_swap_rewrites_only_the_keys_in_the_stored_record(
    redis_store: RedisStore, redis_client: Redis
) -> None:
    env = new_env()
    obj = await create(redis_store, env)
    versions_key = key(env, Kind.VERSIONS, obj.id)

    assert await redis_store.replace_encrypted_keys(env, obj.id, obj.version, b"new", ("k.v2",))

    swapped = replace(obj.version, encrypted_keys=b"new", key_ids=("k.v2",))
    stored = await redis_client.hget(versions_key, obj.version.version_id)
    assert stored == codec.encode_version(swapped)
    assert codec.encode_version(codec.decode_version(stored)) == stored


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
