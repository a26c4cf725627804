"""A scan that leaves out objects outside a caller's scope (ScanFilter.in_scope, issue 16.1):
every store asks the predicate of each object's stored key context, pages stay full, and the
other filters still apply."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from redis.asyncio import Redis

from testkit.redis_server import RedisServer
from tests.storage.contract import ASC, DESC, new_env, new_object, scan_all
from vaultd.storage import RedisStore, Store
from vaultd.storage.records import ScanFilter


def tenant_a(context: Mapping[str, str]) -> bool:
    return context.get("organization_id") == "org_A"


async def test_scan_lists_only_objects_whose_context_is_in_scope(store: Store) -> None:
    env = new_env()
    mine: list[str] = []
    # Interleaved and more than a page apart, so in-scope rows are spread over many steps.
    for i in range(30):
        org = "org_A" if i % 7 == 0 else f"org_B{i}"
        obj = replace(new_object(env, f"n{i:02}"), key_context={"organization_id": org})
        await store.create_object(obj)
        if org == "org_A":
            mine.append(obj.id)
    scoped = ScanFilter(in_scope=tenant_a)
    assert [e.id for e in await scan_all(store, env, ASC, scoped, page_size=2)] == mine
    assert [e.id for e in await scan_all(store, env, DESC, scoped, page_size=1)] == mine[::-1]
    both = ScanFilter(name_prefix="n1", in_scope=tenant_a)
    assert [e.name for e in await scan_all(store, env, ASC, both)] == ["n14"]
    nobody = ScanFilter(in_scope=lambda context: False)
    assert await store.scan_objects(env, ASC, None, 10, nobody) == []


async def test_redis_scoped_scans_continue_across_bounded_steps(
    redis_server: RedisServer, redis_store: RedisStore
) -> None:
    """With room for 2 ids per step, a scoped scan takes many steps and is still exact, in
    both directions and at every page size (a step may keep more than a page: it is cut)."""
    env = new_env()
    for i in range(15):
        org = "org_A" if i % 4 == 1 else "org_B"
        await redis_store.create_object(
            replace(new_object(env, f"n{i:02}"), key_context={"organization_id": org})
        )
    small_steps = RedisStore(Redis.from_url(redis_server.url), scan_budget=2)
    scoped = ScanFilter(in_scope=tenant_a)
    try:
        for direction in (ASC, DESC):
            expected = await scan_all(redis_store, env, direction, scoped, 100)
            assert len(expected) == 4
            for page_size in (1, 3, 100):
                found = await scan_all(small_steps, env, direction, scoped, page_size)
                assert found == expected
    finally:
        await small_steps.close()


async def test_a_scoped_scan_filtered_by_context_applies_both(store: Store) -> None:
    """The key_context filter (the context index) and the scope together: only objects that
    hold the filter's items and are in scope."""
    env = new_env()
    wanted: list[str] = []
    for i in range(12):
        context = {"organization_id": "org_A" if i % 2 else "org_B", "region": f"r{i % 3}"}
        obj = replace(new_object(env, f"n{i:02}"), key_context=context)
        await store.create_object(obj)
        if i % 2 and i % 3 == 0:
            wanted.append(obj.id)
    both = ScanFilter(key_context={"region": "r0"}, in_scope=tenant_a)
    assert [e.id for e in await scan_all(store, env, ASC, both, page_size=1)] == wanted
    assert [e.id for e in await scan_all(store, env, DESC, both)] == wanted[::-1]
