"""The key context index and version numbers, on every store (the `store` fixture).

A filtered scan returns exactly the objects whose key context holds every item asked for, in
the same order and with the same cursor semantics as an unfiltered scan; a deleted object
leaves the index; a version's number is its place among the object's versions.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from redis.asyncio import Redis

from tests.storage.contract import (
    ASC,
    BASE_TIME,
    DESC,
    entry,
    new_env,
    new_object,
    new_version,
    scan_all,
)
from vaultd.storage import RedisStore, ScanFilter, Store, StoredObject
from vaultd.storage.redis.context_index import context_keys

TENANTS = ("org_a", "org_b", "org_c")


async def fill(store: Store, env: str, per_tenant: int = 4) -> dict[str, list[StoredObject]]:
    """Objects of three tenants, interleaved in creation order; every other one in region eu."""
    made: dict[str, list[StoredObject]] = {t: [] for t in TENANTS}
    for n in range(per_tenant * len(TENANTS)):
        tenant = TENANTS[n % len(TENANTS)]
        context = {"organization_id": tenant, "region": "eu" if n % 2 else "us"}
        at = BASE_TIME + timedelta(minutes=n)
        obj = replace(new_object(env, f"n{n:03}"), key_context=context)
        obj = replace(obj, version=replace(obj.version, created_at=at))
        await store.create_object(obj)
        made[tenant].append(obj)
    return made


def only(**items: str) -> ScanFilter:
    return ScanFilter(key_context=items)


@pytest.mark.parametrize("page_size", [1, 2, 100])
async def test_a_filtered_scan_returns_one_tenants_objects_in_order(
    store: Store, page_size: int
) -> None:
    env = new_env()
    made = await fill(store, env)
    for tenant, objects in made.items():
        wanted = [entry(o) for o in objects]
        flt = only(organization_id=tenant)
        assert await scan_all(store, env, ASC, flt, page_size) == wanted
        assert await scan_all(store, env, DESC, flt, page_size) == wanted[::-1]


async def test_every_item_must_match_and_other_filters_still_apply(store: Store) -> None:
    env = new_env()
    made = await fill(store, env)
    both = only(organization_id="org_b", region="eu")
    expected = [entry(o) for o in made["org_b"] if o.key_context["region"] == "eu"]
    assert expected and await scan_all(store, env, ASC, both) == expected
    assert await scan_all(store, env, ASC, only(organization_id="org_nobody")) == []
    assert await scan_all(store, env, ASC, only(organization_id="org_a", nope="x")) == []
    # A value that is a prefix of a real one, or a key another item holds, matches nothing.
    assert await scan_all(store, env, ASC, only(organization_id="org_")) == []
    assert await scan_all(store, env, ASC, only(region="org_a")) == []

    later = made["org_a"][2].version.created_at
    flt = ScanFilter(
        name_prefix="n00", updated_after=later, key_context={"organization_id": "org_a"}
    )
    expected = [
        entry(o) for o in made["org_a"] if o.name.startswith("n00") and o.version.created_at > later
    ]
    assert await scan_all(store, env, ASC, flt) == expected


async def test_items_in_any_script_match_exactly(store: Store) -> None:
    env = new_env()
    items = {"organization_id": "org_ü 東京 🔑", "ключ": "значение"}
    objects = [replace(new_object(env), key_context=items) for _ in range(3)]
    near = replace(new_object(env), key_context={"organization_id": "org_u 東京 🔑"})
    for obj in [*objects, near]:
        await store.create_object(obj)
    assert await scan_all(store, env, ASC, ScanFilter(key_context=items)) == [
        entry(o) for o in objects
    ]
    one = ScanFilter(key_context={"ключ": "значение"})
    assert await scan_all(store, env, DESC, one) == [entry(o) for o in objects][::-1]


async def test_a_filtered_scan_continues_from_a_cursor_in_either_direction(store: Store) -> None:
    env = new_env()
    objects = (await fill(store, env))["org_c"]
    flt = only(organization_id="org_c")
    middle = objects[1].id
    assert await store.scan_objects(env, ASC, middle, 10, flt) == [entry(o) for o in objects[2:]]
    assert await store.scan_objects(env, DESC, middle, 10, flt) == [entry(objects[0])]


async def test_a_deleted_object_is_not_listed_and_a_purged_one_leaves_the_index(
    store: Store,
) -> None:
    env = new_env()
    made = await fill(store, env)
    gone, kept = made["org_a"][0], made["org_a"][1:]
    await store.delete_object(env, gone.id, None)
    assert await scan_all(store, env, ASC, only(organization_id="org_a")) == [
        entry(o) for o in kept
    ]
    assert await store.purge_object(env, gone.id)
    assert await scan_all(store, env, ASC, only(organization_id="org_a")) == [
        entry(o) for o in kept
    ]
    # Once purged, a new object may take the name, under another context: listed under its own.
    again = replace(new_object(env, gone.name), key_context={"organization_id": "org_z"})
    await store.create_object(again)
    assert await scan_all(store, env, ASC, only(organization_id="org_z")) == [entry(again)]


async def test_filters_stay_inside_their_environment(store: Store) -> None:
    first, second = new_env(), new_env()
    await fill(store, first)
    assert await scan_all(store, second, ASC, only(organization_id="org_a")) == []


async def test_version_numbers_follow_creation_order(store: Store) -> None:
    env = new_env()
    obj = new_object(env)
    await store.create_object(obj)
    got = await store.get_object(env, obj.id)
    assert got is not None and got.version_number == 1
    second, third = new_version(), new_version()
    assert await store.update_object(env, obj.id, second, None) == 2
    assert await store.update_object(env, obj.id, third, second.version_id) == 3
    for read in (
        await store.get_object(env, obj.id),
        await store.get_object_by_name(env, obj.name),
    ):
        assert read is not None and (read.version.version_id, read.version_number) == (
            third.version_id,
            3,
        )
    for number, version in enumerate((obj.version, second, third), start=1):
        old = await store.get_object_version(env, obj.id, version.version_id)
        assert old is not None and old.version_number == number


async def test_redis_index_holds_exactly_the_objects_not_purged(
    redis_store: RedisStore, redis_client: Redis
) -> None:
    env = new_env()
    made = await fill(redis_store, env, per_tenant=2)
    gone = made["org_a"][0]
    await redis_store.delete_object(env, gone.id, None)  # deleted: kept until purged
    assert await redis_store.purge_object(env, gone.id)
    for objects in made.values():
        (org_key, _region_key) = context_keys(env, objects[0].key_context)
        live = sorted(o.id.encode() for o in objects if o is not gone)
        assert await redis_client.zrange(org_key, 0, -1) == live


async def test_redis_never_believes_an_index_entry_without_its_object(
    redis_store: RedisStore, redis_client: Redis
) -> None:
    """An entry whose object is gone or holds another context (a backfill racing a delete,
    a hand-edited database) is re-checked against the object and left out."""
    env = new_env()
    made = await fill(redis_store, env, per_tenant=2)
    org_a_key = context_keys(env, made["org_a"][0].key_context)[0]
    ghost = new_object(env).id
    await redis_client.zadd(org_a_key, {ghost: 0, made["org_b"][0].id: 0})
    assert await scan_all(redis_store, env, ASC, only(organization_id="org_a")) == [
        entry(o) for o in made["org_a"]
    ]
