"""The ObjectStore contract (vaultd/storage/base.py), proven against every store.

Objects and their versions: create, read, update and delete by compare-and-set, scans, the walk
a rewrap job makes and the swap of one version's wrapped keys; then what only one store shows.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.connection import Connection
from ulid import ULID

from testkit.redis_server import RedisServer
from tests.storage.contract import (
    ASC,
    BASE_TIME,
    DESC,
    EVERYTHING,
    MIB,
    create,
    destroy,
    entry,
    new_env,
    new_kek_id,
    new_object,
    new_object_id,
    new_version,
    scan_all,
)
from vaultd.storage import (
    Direction,
    NameTaken,
    ObjectEntry,
    ObjectMissing,
    RedisStore,
    ScanFilter,
    SqliteStore,
    Store,
    StoredObject,
    StoredVersion,
    VersionMismatch,
    codec,
)
from vaultd.storage.keys import Kind, key
from vaultd.storage.records import ObjectVersions
from vaultd.storage.redis.context_index import context_keys


@pytest.mark.parametrize("ciphertext", [b"", os.urandom(MIB)], ids=["empty", "1MiB"])
@pytest.mark.parametrize("name", ["plain-name", "名前 with spaces / and ✓ 🔑"])
async def test_what_is_created_reads_back_exactly(
    store: Store, ciphertext: bytes, name: str
) -> None:
    env = new_env()
    obj = new_object(env, f"{name}-{ULID()}", new_version(ciphertext, at=BASE_TIME))
    await store.create_object(obj)

    assert await store.get_object(env, obj.id) == obj
    assert await store.get_object_by_name(env, obj.name) == obj
    assert await store.get_object_version(env, obj.id, obj.version.version_id) == obj
    assert await store.list_versions(env, obj.id) == ([obj.version.info()], obj.version.version_id)
    assert await store.scan_objects(env, ASC, None, 10, EVERYTHING) == [entry(obj)]


async def test_times_keep_their_microseconds_and_zone(store: Store) -> None:
    env = new_env()
    moment = datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
    obj = replace(new_object(env), created_at=moment - timedelta(microseconds=1))
    obj = replace(obj, version=replace(obj.version, created_at=moment))
    await store.create_object(obj)

    got = await store.get_object(env, obj.id)
    assert got is not None
    assert (got.created_at, got.version.created_at) == (obj.created_at, moment)
    assert got.version.created_at.utcoffset() == timedelta(0)


async def test_naive_times_are_refused(store: Store) -> None:
    env = new_env()
    obj = replace(new_object(env), created_at=datetime(2030, 1, 1))
    with pytest.raises(ValueError, match="timezone"):
        await store.create_object(obj)
    assert await store.get_object(env, obj.id) is None


async def test_a_name_is_taken_within_its_environment_only(store: Store) -> None:
    env, other_env = new_env(), new_env()
    first = await create(store, env)

    duplicate = new_object(env, first.name)
    with pytest.raises(NameTaken) as taken:
        await store.create_object(duplicate)
    assert first.name not in str(taken.value)
    assert await store.get_object(env, duplicate.id) is None
    assert await store.get_object_by_name(env, first.name) == first

    elsewhere = await create(store, other_env, first.name)
    assert await store.get_object_by_name(other_env, first.name) == elsewhere


async def test_another_environments_objects_are_invisible(store: Store) -> None:
    env, other_env = new_env(), new_env()
    obj = await create(store, env)
    vid = obj.version.version_id

    assert await store.get_object(other_env, obj.id) is None
    assert await store.get_object_by_name(other_env, obj.name) is None
    assert await store.get_object_version(other_env, obj.id, vid) is None
    assert await store.list_versions(other_env, obj.id) is None
    assert await store.scan_objects(other_env, ASC, None, 10, EVERYTHING) == []
    with pytest.raises(ObjectMissing):
        await store.update_object(other_env, obj.id, new_version(), None)
    with pytest.raises(ObjectMissing):
        await store.delete_object(other_env, obj.id, None)
    assert await store.get_object(env, obj.id) == obj


@pytest.mark.parametrize("bad", ["", "env}x", "env:x", "env{x", "e" * 65])
async def test_malformed_environment_ids_are_refused(store: Store, bad: str) -> None:
    with pytest.raises(ValueError, match="environment id"):
        await store.get_object(bad, new_object_id())
    with pytest.raises(ValueError, match="environment id"):
        await store.scan_objects(bad, ASC, None, 10, EVERYTHING)


async def test_malformed_object_and_kek_ids_are_refused(store: Store) -> None:
    env = new_env()
    with pytest.raises(ValueError, match="must match"):
        await store.get_object(env, "secret_:}{")
    with pytest.raises(ValueError, match="must match"):
        await store.create_object(replace(new_object(env), id=""))
    with pytest.raises(ValueError, match="must match"):
        await store.get_kek(env, "kek_NOT-HEX")


async def test_update_without_a_check_makes_each_version_current(store: Store) -> None:
    env = new_env()
    obj = await create(store, env)
    second, third = new_version(b"two"), new_version(b"")

    await store.update_object(env, obj.id, second, None)
    await store.update_object(env, obj.id, third, None)

    assert await store.get_object(env, obj.id) == replace(obj, version=third)
    assert await store.get_object_by_name(env, obj.name) == replace(obj, version=third)
    assert await store.list_versions(env, obj.id) == (
        [obj.version.info(), second.info(), third.info()],
        third.version_id,
    )
    for old in (obj.version, second):
        assert await store.get_object_version(env, obj.id, old.version_id) == replace(
            obj, version=old
        )
    assert await store.scan_objects(env, ASC, None, 10, EVERYTHING) == [
        ObjectEntry(obj.id, obj.name, third.created_at)
    ]


async def test_update_with_the_current_version_succeeds(store: Store) -> None:
    env = new_env()
    obj = await create(store, env)
    second = new_version()

    await store.update_object(env, obj.id, second, obj.version.version_id)

    assert await store.get_object(env, obj.id) == replace(obj, version=second)


async def test_update_with_a_stale_version_changes_nothing(store: Store) -> None:
    env = new_env()
    obj = await create(store, env)
    second = new_version()
    await store.update_object(env, obj.id, second, None)

    with pytest.raises(VersionMismatch) as mismatch:
        await store.update_object(env, obj.id, new_version(), obj.version.version_id)

    assert mismatch.value.current_version_id == second.version_id
    assert await store.get_object(env, obj.id) == replace(obj, version=second)
    found = await store.list_versions(env, obj.id)
    assert found is not None
    assert len(found[0]) == 2


async def test_a_missing_object_cannot_be_changed(store: Store) -> None:
    env, missing = new_env(), new_object_id()
    with pytest.raises(ObjectMissing):
        await store.update_object(env, missing, new_version(), None)
    with pytest.raises(ObjectMissing):
        await store.update_object(env, missing, new_version(), f"ver_{ULID()}")
    with pytest.raises(ObjectMissing):
        await store.delete_object(env, missing, None)
    assert await store.get_object(env, missing) is None
    assert await store.list_versions(env, missing) is None


async def test_a_version_belongs_to_its_object_only(store: Store) -> None:
    env = new_env()
    one, two = await create(store, env), await create(store, env)
    assert await store.get_object_version(env, two.id, one.version.version_id) is None
    assert await store.get_object_version(env, one.id, f"ver_{ULID()}") is None


async def test_exactly_one_of_50_racing_checked_updates_wins(store: Store) -> None:
    env = new_env()
    obj = await create(store, env)
    versions = [new_version() for _ in range(50)]

    results = await asyncio.gather(
        *(store.update_object(env, obj.id, v, obj.version.version_id) for v in versions),
        return_exceptions=True,
    )

    # The winner learns its version's number: the object's second.
    winner = versions[results.index(2)]
    losers = [r for r in results if isinstance(r, VersionMismatch)]
    assert results.count(2) == 1
    assert len(losers) == 49
    assert {loser.current_version_id for loser in losers} == {winner.version_id}
    assert await store.list_versions(env, obj.id) == (
        [obj.version.info(), winner.info()],
        winner.version_id,
    )


async def test_exactly_one_of_racing_creates_gets_a_name(store: Store) -> None:
    env = new_env()
    rivals = [new_object(env, "contested") for _ in range(20)]

    results = await asyncio.gather(*map(store.create_object, rivals), return_exceptions=True)

    assert results.count(None) == 1
    assert sum(isinstance(r, NameTaken) for r in results) == 19
    winner = rivals[results.index(None)]
    assert await store.get_object_by_name(env, "contested") == winner
    assert await scan_all(store, env) == [entry(winner)]


async def test_delete_then_purge_removes_the_object_everywhere(store: Store) -> None:
    env = new_env()
    survivor = await create(store, env)
    obj = await create(store, env)
    old = obj.version
    await store.update_object(env, obj.id, new_version(), None)

    await destroy(store, env, obj.id)

    assert await store.get_object(env, obj.id) is None
    assert await store.get_object_by_name(env, obj.name) is None
    assert await store.get_object_version(env, obj.id, old.version_id) is None
    assert await store.list_versions(env, obj.id) is None
    assert await scan_all(store, env) == [entry(survivor)]
    assert await scan_all(store, env, DESC) == [entry(survivor)]
    assert await store.scan_object_versions(env, "", 10) == [
        ObjectVersions(survivor.id, (survivor.version,))
    ]
    reborn = await create(store, env, obj.name)
    assert await store.get_object_by_name(env, obj.name) == reborn


async def test_delete_with_the_current_version_succeeds(store: Store) -> None:
    env = new_env()
    obj = await create(store, env)
    await store.delete_object(env, obj.id, obj.version.version_id)
    assert await store.get_object(env, obj.id) is None


async def test_delete_with_a_stale_version_changes_nothing(store: Store) -> None:
    env = new_env()
    obj = await create(store, env)
    second = new_version()
    await store.update_object(env, obj.id, second, None)

    with pytest.raises(VersionMismatch) as mismatch:
        await store.delete_object(env, obj.id, obj.version.version_id)

    assert mismatch.value.current_version_id == second.version_id
    assert await store.get_object(env, obj.id) == replace(obj, version=second)


async def test_scans_page_through_every_object_exactly_once(store: Store) -> None:
    env = new_env()
    objs = [await create(store, env) for _ in range(8)]
    by_id = sorted((entry(o) for o in objs), key=lambda e: e.id)

    for page_size in (1, 3, 8, 100):
        assert await scan_all(store, env, ASC, page_size=page_size) == by_id
        assert await scan_all(store, env, DESC, page_size=page_size) == by_id[::-1]


async def test_a_scan_starts_strictly_past_its_cursor(store: Store) -> None:
    env = new_env()
    ids = sorted([(await create(store, env)).id for _ in range(5)])

    def ids_of(entries: list[ObjectEntry]) -> list[str]:
        return [e.id for e in entries]

    assert ids_of(await store.scan_objects(env, ASC, ids[1], 2, EVERYTHING)) == ids[2:4]
    assert ids_of(await store.scan_objects(env, DESC, ids[3], 10, EVERYTHING)) == ids[2::-1]
    assert await store.scan_objects(env, ASC, ids[-1], 10, EVERYTHING) == []
    assert await store.scan_objects(env, DESC, ids[0], 10, EVERYTHING) == []
    # A cursor need not exist any more: the object it named may have been deleted since.
    await store.delete_object(env, ids[2], None)
    assert ids_of(await store.scan_objects(env, ASC, ids[2], 10, EVERYTHING)) == ids[3:]


async def test_scan_filters_by_name_prefix_and_update_time(store: Store) -> None:
    env = new_env()
    names = ["alpha-1", "beta-1", "alpha-2", "Ωmega", "alpha-3", "alphabet", "beta-2"]
    objs: dict[str, StoredObject] = {}
    for seconds, name in enumerate(names):
        obj = new_object(env, name, new_version(at=BASE_TIME + timedelta(seconds=seconds)))
        await store.create_object(obj)
        objs[name] = obj
    # Updating moves an object's update time; its place in the order stays its creation.
    late = new_version(at=BASE_TIME + timedelta(hours=1))
    await store.update_object(env, objs["alpha-1"].id, late, None)

    def named(*wanted: str) -> list[str]:
        return sorted(wanted, key=lambda n: objs[n].id)

    async def names_found(direction: Direction, scan_filter: ScanFilter) -> list[str]:
        return [e.name for e in await scan_all(store, env, direction, scan_filter, page_size=2)]

    prefix = ScanFilter(name_prefix="alpha-")
    assert await names_found(ASC, prefix) == named("alpha-1", "alpha-2", "alpha-3")
    assert await names_found(DESC, prefix) == named("alpha-1", "alpha-2", "alpha-3")[::-1]
    assert await names_found(ASC, ScanFilter(name_prefix="Ω")) == ["Ωmega"]
    assert await names_found(ASC, ScanFilter(name_prefix="gamma")) == []
    # Strictly after: the object updated exactly at the bound is left out.
    recent = ScanFilter(updated_after=BASE_TIME + timedelta(seconds=4))
    assert await names_found(ASC, recent) == named("alpha-1", "alphabet", "beta-2")
    both = ScanFilter(name_prefix="alpha", updated_after=BASE_TIME + timedelta(seconds=4))
    assert await names_found(DESC, both) == named("alpha-1", "alphabet")[::-1]
    assert (await store.scan_objects(env, ASC, None, 10, prefix))[0] == ObjectEntry(
        objs["alpha-1"].id, "alpha-1", late.created_at
    )


async def test_sqlite_checks_hold_across_connections_sharing_a_file(tmp_path: Path) -> None:
    """As with several worker processes on one data dir: each store has its own connection."""
    path = tmp_path / "vaultd.db"
    first, second = SqliteStore(path), SqliteStore(path)
    try:
        env = new_env()
        obj = await create(first, env)
        expected = obj.version.version_id
        results = await asyncio.gather(
            *(
                s.update_object(env, obj.id, new_version(), expected)
                for _ in range(25)
                for s in (first, second)
            ),
            return_exceptions=True,
        )
        assert results.count(2) == 1
        assert sum(isinstance(r, VersionMismatch) for r in results) == 49
    finally:
        await first.close()
        await second.close()


async def test_redis_scans_continue_across_bounded_steps(
    redis_server: RedisServer, redis_store: RedisStore
) -> None:
    """With room for 2 ids per step, every scan needs many steps and must still be exact."""
    env = new_env()
    for n in range(9):
        await create(redis_store, env, f"{'keep' if n % 3 else 'skip'}-{n}")
    small_steps = RedisStore(Redis.from_url(redis_server.url), scan_budget=2)
    try:
        for direction in (ASC, DESC):
            for scan_filter in (EVERYTHING, ScanFilter(name_prefix="keep")):
                for page_size in (1, 4, 100):
                    assert await scan_all(
                        small_steps, env, direction, scan_filter, page_size
                    ) == await scan_all(redis_store, env, direction, scan_filter, 100)
    finally:
        await small_steps.close()


async def test_redis_delete_leaves_no_trace(redis_store: RedisStore, redis_client: Redis) -> None:
    env = new_env()
    survivor = await create(redis_store, env)
    gone = [await create(redis_store, env) for _ in range(2)]
    await redis_store.update_object(env, gone[0].id, new_version(), None)

    for obj in gone:
        await destroy(redis_store, env, obj.id)

    left = {k.decode() async for k in redis_client.scan_iter(f"vaultd:{{{env}}}:*", count=1000)}
    assert left == {
        key(env, Kind.OBJECTS),
        key(env, Kind.DIGESTS),
        key(env, Kind.NAMES),
        key(env, Kind.OBJECT, survivor.id),
        key(env, Kind.VERSIONS, survivor.id),
        key(env, Kind.HISTORY, survivor.id),
        *context_keys(env, survivor.key_context),
    }
    assert await redis_client.zrange(key(env, Kind.OBJECTS), 0, -1) == [survivor.id.encode()]
    for item in context_keys(env, survivor.key_context):
        assert await redis_client.zrange(item, 0, -1) == [survivor.id.encode()]
    assert await redis_client.hkeys(key(env, Kind.DIGESTS)) == [survivor.id.encode()]
    assert await redis_client.hvals(key(env, Kind.NAMES)) == [survivor.id.encode()]
    for obj in gone:
        assert [k async for k in redis_client.scan_iter(f"*{obj.id}*", count=1000)] == []


async def test_redis_reads_an_object_in_one_round_trip(redis_server: RedisServer) -> None:
    # Counted where the bytes leave: reads may go out through a pipeline (auto-pipelining),
    # which never calls the client's execute_command.
    sent: list[bytes] = []

    class Counting(Connection):
        async def send_packed_command(self, command: Any, *args: Any, **kwargs: Any) -> None:
            sent.append(command)
            await super().send_packed_command(command, *args, **kwargs)

    store = RedisStore(Redis.from_url(redis_server.url, connection_class=Counting))
    try:
        env = new_env()
        obj = await create(store, env)

        async def read() -> None:
            assert await store.get_object(env, obj.id) == obj
            assert await store.get_object_version(env, obj.id, obj.version.version_id) == obj
            assert await store.list_versions(env, obj.id) is not None

        await read()  # the first use of a script on a fresh server loads it (NOSCRIPT, LOAD)
        sent.clear()
        await read()
        assert len(sent) == 3  # one round trip each
        assert all(b"EVALSHA" in b"".join(_flat(command)) for command in sent)
    finally:
        await store.close()


def _flat(command: Any) -> list[bytes]:
    """What send_packed_command was given: bytes, or a list of byte chunks."""
    if isinstance(command, bytes | bytearray | memoryview):
        return [bytes(command)]
    return [bytes(chunk) for chunk in command]


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
    await destroy(store, env, gone)
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
    await destroy(store, env, first.id)
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
