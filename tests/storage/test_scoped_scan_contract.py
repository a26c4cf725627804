"""A scan that leaves out objects outside a caller's scope (ScanFilter.in_scope, issue 16.1):
every store asks the predicate of each object's stored key context, pages stay full, and the
other filters still apply."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from tests.storage.contract import ASC, DESC, new_env, new_object, scan_all
from vaultd.storage import Store
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
