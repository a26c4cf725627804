"""The Store contract (vaultd/storage/base.py), proven against every store.

Each test works in environments of its own (fresh ULIDs), so tests share one database per store
without flushing and without seeing each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import sqlite3
import stat
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from redis.asyncio import Redis
from redis.asyncio.connection import Connection
from ulid import ULID

from testkit.redis_server import RedisServer
from vaultd.storage import (
    ApiKeyRecord,
    AuditEvent,
    AuditQuery,
    BadCursor,
    Direction,
    KekVersion,
    NameTaken,
    ObjectEntry,
    ObjectMissing,
    RedisStore,
    ScanFilter,
    SqliteStore,
    Store,
    StoredObject,
    StoredVersion,
    StoreError,
    StoreUnavailable,
    VersionMismatch,
    codec,
    open_store,
)
from vaultd.storage.keys import Kind, audit_key, key

ASC, DESC = Direction.ASCENDING, Direction.DESCENDING
EVERYTHING = ScanFilter()
BASE_TIME = datetime(2030, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)
MIB = 1024 * 1024


def new_env() -> str:
    return f"env_{ULID()}"


def new_object_id() -> str:
    return f"secret_{ULID()}"


def new_kek_id() -> str:
    return f"kek_{secrets.token_hex(16)}"


def new_version(
    ciphertext: bytes = b"ciphertext", *, at: datetime | None = None, by: str = "Zoë Ådmin"
) -> StoredVersion:
    return StoredVersion(
        version_id=f"ver_{ULID()}",
        created_at=at or datetime.now(UTC),
        size=len(ciphertext),
        etag=secrets.token_hex(16),
        key_ids=(f"{new_kek_id()}.v1", f"{new_kek_id()}.v3"),
        encrypted_keys=bytes(range(256)),
        ciphertext=ciphertext,
        updated_by_id="key_01",
        updated_by_name=by,
    )


def new_object(
    environment_id: str, name: str | None = None, version: StoredVersion | None = None
) -> StoredObject:
    return StoredObject(
        environment_id=environment_id,
        id=new_object_id(),
        name=name or f"name-{ULID()}",
        key_context={"organization_id": "org_ü", "région": "東京 🔑"},
        created_at=BASE_TIME,
        version=version or new_version(),
    )


async def create(store: Store, environment_id: str, name: str | None = None) -> StoredObject:
    obj = new_object(environment_id, name)
    await store.create_object(obj)
    return obj


async def scan_all(
    store: Store,
    environment_id: str,
    direction: Direction = ASC,
    scan_filter: ScanFilter = EVERYTHING,
    page_size: int = 3,
) -> list[ObjectEntry]:
    """Every entry, page by page, each page continuing after the last one's final id.

    Every page but the last must be full: callers ask for one entry more than they show to
    learn whether another page exists.
    """
    pages: list[list[ObjectEntry]] = []
    cursor = None
    while page := await store.scan_objects(
        environment_id, direction, cursor, page_size, scan_filter
    ):
        pages.append(page)
        cursor = page[-1].id
    assert [len(p) for p in pages[:-1]] == [page_size] * (len(pages) - 1)
    assert not pages or len(pages[-1]) <= page_size
    return [e for p in pages for e in p]


def entry(obj: StoredObject) -> ObjectEntry:
    return ObjectEntry(obj.id, obj.name, obj.version.created_at)


@pytest_asyncio.fixture(scope="session")
async def redis_client(redis_server: RedisServer) -> AsyncIterator[Redis]:
    """A raw client, to look behind the store."""
    client = Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


# --- reading back what was written ---------------------------------------------------------


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


# --- names and environments ----------------------------------------------------------------


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


# --- updates -------------------------------------------------------------------------------


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

    winner = versions[results.index(None)]
    losers = [r for r in results if isinstance(r, VersionMismatch)]
    assert results.count(None) == 1
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


# --- deletes -------------------------------------------------------------------------------


async def test_delete_purges_the_object_everywhere(store: Store) -> None:
    env = new_env()
    survivor = await create(store, env)
    obj = await create(store, env)
    old = obj.version
    await store.update_object(env, obj.id, new_version(), None)

    await store.delete_object(env, obj.id, None)

    assert await store.get_object(env, obj.id) is None
    assert await store.get_object_by_name(env, obj.name) is None
    assert await store.get_object_version(env, obj.id, old.version_id) is None
    assert await store.list_versions(env, obj.id) is None
    assert await scan_all(store, env) == [entry(survivor)]
    assert await scan_all(store, env, DESC) == [entry(survivor)]
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


# --- scans ---------------------------------------------------------------------------------


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


# --- KEKs ----------------------------------------------------------------------------------


def new_kek(version: int) -> KekVersion:
    return KekVersion(
        item_key="organization_id",
        item_value="org_ü",
        version=version,
        provider_uri="internal://root",
        wrapped_key=os.urandom(60),
        created_at=BASE_TIME + timedelta(days=version),
    )


async def kek_versions(store: Store, environment_id: str, kek_id: str) -> tuple[KekVersion, ...]:
    record = await store.get_kek(environment_id, kek_id)
    assert record is not None
    return record.versions


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


# --- API keys ------------------------------------------------------------------------------


def new_api_key(environment_id: str = "default", name: str = "Zoë's deploy key 🔑") -> ApiKeyRecord:
    return ApiKeyRecord(
        id=f"key_{ULID()}",
        name=name,
        environment_id=environment_id,
        permissions=("objects:read", "keys:use"),
        secret_hash=secrets.token_hex(32),
        created_at=BASE_TIME,
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
        url = redis_server.url.rpartition("/")[0] + "/13"
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


# --- audit events --------------------------------------------------------------------------


def new_event(environment_id: str, kind: str = "vault.data.read", **fields: object) -> AuditEvent:
    defaults: dict[str, object] = {
        "id": str(ULID()),
        "type": kind,
        "time": datetime.now(UTC),
        "environment_id": environment_id,
        "actor_id": f"key_{ULID()}",
        "actor_name": "Zoë's deploy key 🔑",
        "outcome": "success",
        "request_id": secrets.token_hex(8),
        "method": "/vaultd.v1.ObjectService/GetObject",
        "peer": "ipv6:[::1]:5000",
        "object_id": new_object_id(),
        "object_name": "名前 / name",
        "key_ids": (f"{new_kek_id()}.v1", f"{new_kek_id()}.v2"),
        "key_context": {"organization_id": "org_ü"},
        "data_key_id": str(ULID()),
        "api_key_id": f"key_{ULID()}",
    }
    return AuditEvent(**{**defaults, **fields})  # type: ignore[arg-type]


async def read_all(store: Store, environment_id: str, **query: object) -> list[AuditEvent]:
    page = await store.read_audit_events(environment_id, AuditQuery(limit=1000, **query))  # type: ignore[arg-type]
    return list(page.events)


async def test_audit_events_read_back_exactly_in_order(store: Store) -> None:
    env = new_env()
    keep = datetime.now(UTC) - timedelta(days=1)
    events = [
        new_event(env, key_ids=(), key_context={}) if n == 2 else new_event(env) for n in range(5)
    ]
    for event in events:
        await store.append_audit_event(event, keep)

    assert await read_all(store, env) == events
    assert await read_all(store, new_env()) == []


async def test_audit_pages_continue_from_their_cursor(store: Store) -> None:
    env = new_env()
    keep = datetime.now(UTC) - timedelta(days=1)
    events = [
        new_event(env, "vault.data.read" if n % 2 else "vault.data.created") for n in range(7)
    ]
    for event in events:
        await store.append_audit_event(event, keep)

    seen: list[AuditEvent] = []
    cursor = ""
    while True:
        page = await store.read_audit_events(env, AuditQuery(after=cursor, limit=2))
        seen += page.events
        if len(page.events) < 2:
            break
        cursor = page.cursor
    assert seen == events
    # At the end, the cursor stays put and later events appear after it.
    end = await store.read_audit_events(env, AuditQuery(after=page.cursor))
    assert (list(end.events), end.cursor) == ([], page.cursor)
    later = new_event(env)
    await store.append_audit_event(later, keep)
    assert list((await store.read_audit_events(env, AuditQuery(after=page.cursor))).events) == [
        later
    ]

    reads = await store.read_audit_events(env, AuditQuery(type="vault.data.read", limit=2))
    assert list(reads.events) == [events[1], events[3]]
    rest = await store.read_audit_events(
        env, AuditQuery(after=reads.cursor, type="vault.data.read")
    )
    assert list(rest.events) == [events[5], later]


async def test_audit_since_keeps_events_at_or_after_it(store: Store) -> None:
    env = new_env()
    keep = datetime.now(UTC) - timedelta(days=1)
    first = new_event(env, time=datetime.now(UTC) - timedelta(milliseconds=10))
    second = new_event(env)
    for event in (first, second):
        await store.append_audit_event(event, keep)
    assert await read_all(store, env, since=second.time) == [second]
    assert await read_all(store, env, since=first.time) == [first, second]


async def test_unauthenticated_events_are_apart_from_every_environment(store: Store) -> None:
    keep = datetime.now(UTC) - timedelta(days=1)
    anonymous = new_event("", actor_id="", actor_name="", outcome="API_KEY_MISSING")
    await store.append_audit_event(anonymous, keep)
    assert (await read_all(store, ""))[-1] == anonymous
    assert anonymous not in await read_all(store, "default")


async def test_audit_events_older_than_the_retention_are_trimmed(store: Store) -> None:
    env = new_env()
    old = new_event(env, time=datetime.now(UTC) - timedelta(milliseconds=20))
    await store.append_audit_event(old, old.time - timedelta(days=1))
    await asyncio.sleep(0.02)  # Redis trims by its own append time
    new = new_event(env)
    await store.append_audit_event(new, new.time - timedelta(milliseconds=5))
    assert await read_all(store, env) == [new]


async def test_a_batch_of_audit_events_reads_back_in_order_per_environment(
    store: Store,
) -> None:
    first, second = new_env(), new_env()
    keep = datetime.now(UTC) - timedelta(days=1)
    batch = [new_event(first if n % 3 else second, request_id=f"req-{n}") for n in range(10)]
    await store.append_audit_events(batch, keep)
    await store.append_audit_events([], keep)  # an empty batch is a no-op, not an error
    later = new_event(first)
    await store.append_audit_event(later, keep)

    assert await read_all(store, first) == [e for e in batch if e.environment_id == first] + [later]
    assert await read_all(store, second) == [e for e in batch if e.environment_id == second]


async def test_a_batch_refuses_a_bad_environment_and_stores_nothing_of_it_on_sqlite(
    sqlite_store: SqliteStore,
) -> None:
    env = new_env()
    keep = datetime.now(UTC) - timedelta(days=1)
    with pytest.raises(ValueError):
        await sqlite_store.append_audit_events([new_event(env), new_event("a:b")], keep)
    assert await read_all(sqlite_store, env) == []


async def test_batched_audit_events_are_stored_as_their_codec_records_on_redis(
    redis_store: RedisStore, redis_client: Redis
) -> None:
    env = new_env()
    batch = [new_event(env) for _ in range(5)]
    await redis_store.append_audit_events(batch, datetime.now(UTC) - timedelta(days=1))
    entries = await redis_client.xrange(audit_key(env))
    assert [fields for _, fields in entries] == [
        {b"e": codec.encode_audit_event(event)} for event in batch
    ]


async def test_batched_audit_events_are_stored_as_their_codec_records_on_sqlite(
    tmp_path: Path,
) -> None:
    store = SqliteStore(tmp_path / "vaultd.db")
    env = new_env()
    batch = [new_event(env) for _ in range(5)]
    try:
        await store.append_audit_events(batch, datetime.now(UTC) - timedelta(days=1))
    finally:
        await store.close()
    with contextlib.closing(sqlite3.connect(tmp_path / "vaultd.db")) as conn:
        rows = conn.execute(
            "SELECT environment_id, type, time, record FROM audit_events ORDER BY seq"
        ).fetchall()
    assert rows == [
        (e.environment_id, e.type, codec.to_micros(e.time), codec.encode_audit_event(e))
        for e in batch
    ]


async def test_foreign_audit_cursors_are_refused(store: Store) -> None:
    for bad in ("x", "1-2-3", "-1", "(0", "+", "12 34"):
        with pytest.raises(BadCursor):
            await store.read_audit_events(new_env(), AuditQuery(after=bad))
    with pytest.raises(ValueError):
        await store.read_audit_events("a:b", AuditQuery())


# --- health --------------------------------------------------------------------------------


async def test_ping_answers(store: Store) -> None:
    await store.ping()


# --- SQLite specifics ----------------------------------------------------------------------


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
        assert results.count(None) == 1
        assert sum(isinstance(r, VersionMismatch) for r in results) == 49
    finally:
        await first.close()
        await second.close()


async def test_a_closed_sqlite_store_is_unavailable(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "vaultd.db")
    await store.close()
    with pytest.raises(StoreUnavailable):
        await store.ping()
    await store.close()  # closing twice is harmless


# --- Redis specifics -----------------------------------------------------------------------


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
        await redis_store.delete_object(env, obj.id, None)

    left = {k.decode() async for k in redis_client.scan_iter(f"vaultd:{{{env}}}:*", count=1000)}
    assert left == {
        key(env, Kind.OBJECTS),
        key(env, Kind.DIGESTS),
        key(env, Kind.NAMES),
        key(env, Kind.OBJECT, survivor.id),
        key(env, Kind.VERSIONS, survivor.id),
        key(env, Kind.HISTORY, survivor.id),
    }
    assert await redis_client.zrange(key(env, Kind.OBJECTS), 0, -1) == [survivor.id.encode()]
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


# --- opening a store -----------------------------------------------------------------------


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
