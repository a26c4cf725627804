"""Soft delete in the ObjectStore contract (vaultd/storage/base.py), proven against every store:
a deleted object leaves every read at once but keeps its versions and its name until purged;
an undelete brings it back exactly; a purge destroys every byte of it. Also the named leases of
the JobStore, which the purge job runs under.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from redis.asyncio import Redis
from ulid import ULID

from tests.storage.contract import (
    BASE_TIME,
    DESC,
    create,
    entry,
    new_env,
    new_object,
    new_object_id,
    new_version,
    scan_all,
)
from vaultd.storage import NameTaken, ObjectMissing, RedisStore, SqliteStore, Store
from vaultd.storage.records import DeletedObject, ObjectVersions
from vaultd.storage.sqlite.schema import SCHEMA

HOUR = timedelta(hours=1)


async def test_a_deleted_object_is_missing_to_every_read_but_keeps_its_name(
    store: Store,
) -> None:
    env = new_env()
    survivor = await create(store, env)
    obj = await create(store, env)
    second = new_version(b"second")
    await store.update_object(env, obj.id, second, None)

    await store.delete_object(env, obj.id, None, BASE_TIME)

    assert await store.get_object(env, obj.id) is None
    assert await store.get_object_by_name(env, obj.name) is None
    assert await store.get_object_version(env, obj.id, obj.version.version_id) is None
    assert await store.list_versions(env, obj.id) is None
    assert await scan_all(store, env) == [entry(survivor)]
    assert await scan_all(store, env, DESC) == [entry(survivor)]
    assert await store.count_objects(env) == 1
    with pytest.raises(ObjectMissing):
        await store.update_object(env, obj.id, new_version(), None)
    with pytest.raises(ObjectMissing):
        await store.delete_object(env, obj.id, None)
    with pytest.raises(NameTaken):
        await store.create_object(new_object(env, obj.name))
    # A rewrap still walks it: it may come back, and must then open under today's keys.
    walked = {o.object_id: o for o in await store.scan_object_versions(env, "", 10)}
    assert walked[obj.id] == ObjectVersions(obj.id, (obj.version, second))


async def test_undelete_within_the_retention_restores_every_version_exactly(
    store: Store,
) -> None:
    env = new_env()
    obj = await create(store, env)
    second = new_version(os.urandom(1000))
    await store.update_object(env, obj.id, second, None)
    before = (
        await store.get_object(env, obj.id),
        await store.list_versions(env, obj.id),
        await scan_all(store, env),
    )
    await store.delete_object(env, obj.id, second.version_id, BASE_TIME)

    # Deleted before the earliest time still recoverable: past its retention.
    assert not await store.undelete_object(env, obj.id, BASE_TIME + HOUR)
    assert await store.get_object(env, obj.id) is None
    assert await store.undelete_object(env, obj.id, BASE_TIME - HOUR)

    after = (
        await store.get_object(env, obj.id),
        await store.list_versions(env, obj.id),
        await scan_all(store, env),
    )
    assert after == before
    assert await store.get_object_version(env, obj.id, obj.version.version_id) == obj
    assert await store.due_for_purge(env, BASE_TIME + HOUR, 10) == []
    # Live again: a second undelete changes nothing; nor does one of an unknown object.
    assert not await store.undelete_object(env, obj.id, BASE_TIME - HOUR)
    assert not await store.undelete_object(env, new_object_id(), BASE_TIME - HOUR)


async def test_purge_destroys_only_a_deleted_object_and_frees_its_name(store: Store) -> None:
    env = new_env()
    live = await create(store, env)
    obj = await create(store, env)

    assert not await store.purge_object(env, live.id)
    assert await store.get_object(env, live.id) == live
    with pytest.raises(ObjectMissing):
        await store.purge_object(env, new_object_id())

    await store.delete_object(env, obj.id, None, BASE_TIME)
    # Deleted after the cut-off the caller read (undeleted and deleted again since): kept.
    assert not await store.purge_object(env, obj.id, BASE_TIME - HOUR)
    assert await store.undelete_object(env, obj.id, BASE_TIME - HOUR)
    await store.delete_object(env, obj.id, None, BASE_TIME)
    assert await store.purge_object(env, obj.id, BASE_TIME)

    assert await store.undelete_object(env, obj.id, BASE_TIME - HOUR) is False
    assert await store.get_object_version(env, obj.id, obj.version.version_id) is None
    assert await store.scan_object_versions(env, "", 10) == [
        ObjectVersions(live.id, (live.version,))
    ]
    assert await store.due_for_purge(env, BASE_TIME + HOUR, 10) == []
    with pytest.raises(ObjectMissing):
        await store.purge_object(env, obj.id)
    reborn = await create(store, env, obj.name)
    assert await store.get_object_by_name(env, obj.name) == reborn


async def test_due_for_purge_lists_objects_deleted_before_the_cutoff(store: Store) -> None:
    env, other = new_env(), new_env()
    objs = [await create(store, env) for _ in range(4)]
    elsewhere = await create(store, other)
    for n, obj in enumerate(objs[:3]):
        await store.delete_object(env, obj.id, None, BASE_TIME + n * HOUR)
    await store.delete_object(other, elsewhere.id, None, BASE_TIME)

    due = await store.due_for_purge(env, BASE_TIME + 2 * HOUR, 10)
    assert sorted(due, key=lambda d: d.deleted_at) == [
        DeletedObject(env, objs[0].id, BASE_TIME),
        DeletedObject(env, objs[1].id, BASE_TIME + HOUR),
    ]
    assert len(await store.due_for_purge(env, BASE_TIME + 2 * HOUR, 1)) == 1
    assert await store.due_for_purge(env, BASE_TIME, 10) == []
    assert await store.due_for_purge(env, BASE_TIME + 2 * HOUR, 0) == []
    # Every environment: the other one's too (and any other test's; filter to ours).
    everywhere = await store.due_for_purge(None, BASE_TIME + HOUR, 10_000)
    ours = {d for d in everywhere if d.environment_id in (env, other)}
    assert ours == {
        DeletedObject(env, objs[0].id, BASE_TIME),
        DeletedObject(other, elsewhere.id, BASE_TIME),
    }


async def test_named_leases_keep_out_other_owners_until_they_end(store: Store) -> None:
    name = f"test-{str(ULID()).lower()}"
    until = BASE_TIME + HOUR
    assert await store.take_lease(name, "a", until, BASE_TIME)
    assert not await store.take_lease(name, "b", until + HOUR, BASE_TIME)
    assert not await store.take_lease(name, "b", until + HOUR, until)  # ends after `until`
    assert await store.take_lease(name, "a", until + HOUR, BASE_TIME)  # extended
    assert await store.take_lease(name, "b", until + 3 * HOUR, until + 2 * HOUR)  # ran out
    await store.release_lease(name, "a")  # not a's any more: nothing happens
    assert not await store.take_lease(name, "a", until, BASE_TIME)
    await store.release_lease(name, "b")
    assert await store.take_lease(name, "a", until, BASE_TIME)
    with pytest.raises(ValueError, match="lease name"):
        await store.take_lease("Bad Name:{x}", "a", until, BASE_TIME)


async def test_redis_purge_leaves_no_key_or_byte_of_the_object(
    redis_store: RedisStore, redis_client: Redis
) -> None:
    env = new_env()
    survivor = await create(redis_store, env)
    secret = os.urandom(64)
    obj = new_object(env, version=new_version(secret))
    await redis_store.create_object(obj)
    await redis_store.update_object(env, obj.id, new_version(secret + b"2"), None)
    await redis_store.delete_object(env, obj.id, None)
    assert await redis_store.purge_object(env, obj.id)

    found = []
    async for name in redis_client.scan_iter(f"vaultd:{{{env}}}:*", count=1000):
        assert obj.id.encode() not in name
        kind = await redis_client.type(name)
        dump = await redis_client.dump(name) if kind != b"none" else b""
        found.append(name)
        assert obj.id.encode() not in (dump or b"") and secret not in (dump or b"")
    # The survivor's three keys, the environment's three indexes and one key context index per
    # item of the survivor's context (the purged object's entries in them are gone).
    assert len(found) == 6 + len(survivor.key_context)
    assert await redis_store.get_object(env, survivor.id) == survivor


async def test_sqlite_purge_zeroes_the_ciphertext_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "vaultd.db"
    store = SqliteStore(path)
    try:
        env = new_env()
        secret = b"needle-" + os.urandom(32)
        obj = new_object(env, version=new_version(secret))
        await store.create_object(obj)
        await store.delete_object(env, obj.id, None)
        assert secret in _file_bytes(path)  # kept while deleted: it may be undeleted
        assert await store.purge_object(env, obj.id)
        assert secret not in _file_bytes(path)  # at once, not only once the log is merged
    finally:
        await store.close()
    assert secret not in _file_bytes(path)


def _file_bytes(path: Path) -> bytes:
    """The database with its write-ahead log: where a row's bytes may still be."""
    wal = path.with_name(path.name + "-wal")
    return path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


async def test_sqlite_file_of_an_older_vaultd_gains_the_deleted_column(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old_schema = SCHEMA.replace("    deleted_at         INTEGER,\n", "")
    assert old_schema != SCHEMA
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript(old_schema)
    conn.close()

    store = SqliteStore(path)
    try:
        env = new_env()
        obj = await create(store, env)
        await store.delete_object(env, obj.id, None, BASE_TIME)
        assert await store.due_for_purge(env, BASE_TIME + HOUR, 10) == [
            DeletedObject(env, obj.id, BASE_TIME)
        ]
        assert await store.undelete_object(env, obj.id, BASE_TIME)
        assert await store.get_object(env, obj.id) == replace(obj)
    finally:
        await store.close()
    conn = sqlite3.connect(path)
    indexes = {row[1] for row in conn.execute("PRAGMA index_list(objects)")}
    conn.close()
    assert "objects_deleted" in indexes
