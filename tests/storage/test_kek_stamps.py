"""KEK stamps (Store contract): a DEK is never stored wrapped under a KEK version the store does
not hold exactly as the writer read it.

A writer names each KEK version its DEK is wrapped under by the stamp the store showed for it
(KekVersion.stamp); create_object, update_object and replace_encrypted_keys check those stamps
inside their atomic step and refuse with KekChanged, writing nothing, when the version is gone
(a failover lost it, the store was emptied, it was shredded) or is stored differently (re-wrapped,
or made again with other key bytes).
"""

from __future__ import annotations

import os
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from tests.storage.contract import new_env, new_kek, new_kek_id, new_object, new_version
from vaultd.storage import Store
from vaultd.storage.errors import KekChanged
from vaultd.storage.records import KekStamp, KekVersion


async def stored_kek(store: Store, env: str, kek_id: str, version: int = 1) -> KekVersion:
    record = await store.get_kek(env, kek_id)
    assert record is not None
    return record.versions[version - 1]


def stamp_of(kek_id: str, kek: KekVersion) -> KekStamp:
    return KekStamp(kek_id, kek.version, kek.stamp)


async def test_a_kek_version_reads_back_with_a_stamp_that_changes_with_its_stored_bytes(
    store: Store,
) -> None:
    env, kek_id = new_env(), new_kek_id()
    assert await store.add_kek_version(env, kek_id, new_kek(1))
    first = await stored_kek(store, env, kek_id)
    assert len(first.stamp) == 40  # SHA-1 in hex
    assert (await stored_kek(store, env, kek_id)).stamp == first.stamp  # stable across reads

    rewrapped = replace(first, wrapped_key=os.urandom(60))
    assert await store.rewrap_kek_version(env, kek_id, first, rewrapped)
    assert (await stored_kek(store, env, kek_id)).stamp != first.stamp


async def test_writes_under_stamps_the_store_holds_succeed(store: Store) -> None:
    env, kek_id = new_env(), new_kek_id()
    assert await store.add_kek_version(env, kek_id, new_kek(1))
    stamps = [stamp_of(kek_id, await stored_kek(store, env, kek_id))]
    obj = new_object(env)

    await store.create_object(obj, stamps)
    second = new_version(b"second")
    await store.update_object(env, obj.id, second, obj.version.version_id, stamps)

    found = await store.get_object(env, obj.id)
    assert found is not None and found.version == second


async def test_a_create_under_a_stale_stamp_writes_nothing(store: Store) -> None:
    env, kek_id = new_env(), new_kek_id()
    assert await store.add_kek_version(env, kek_id, new_kek(1))
    stale = KekStamp(kek_id, 1, "0" * 40)
    obj = new_object(env)

    with pytest.raises(KekChanged) as refused:
        await store.create_object(obj, [stale])

    assert refused.value.kek_id == kek_id
    assert await store.get_object(env, obj.id) is None
    assert await store.get_object_by_name(env, obj.name) is None
    assert await store.count_objects(env) == 0


async def test_a_create_under_a_kek_version_the_store_never_had_is_refused(store: Store) -> None:
    # What a process holding a cached KEK meets after a failover to a replica that never got it.
    env, kek_id = new_env(), new_kek_id()
    other_env = new_env()
    assert await store.add_kek_version(other_env, kek_id, new_kek(1))
    cached = stamp_of(kek_id, await stored_kek(store, other_env, kek_id))
    obj = new_object(env)

    with pytest.raises(KekChanged):
        await store.create_object(obj, [cached])

    assert await store.get_object(env, obj.id) is None


async def test_a_stamp_names_one_versions_bytes_not_its_id_and_number(store: Store) -> None:
    # A version made again with other key bytes (after the store lost it) has another stamp,
    # so writes under the lost one are refused; shredded versions are refused too.
    env, lost_id, made_again_id = new_env(), new_kek_id(), new_kek_id()
    assert await store.add_kek_version(env, lost_id, new_kek(1))
    lost = stamp_of(lost_id, await stored_kek(store, env, lost_id))
    await store.shred_kek(env, lost_id, "organization_id", "org_ü", _now())
    assert await store.add_kek_version(env, made_again_id, new_kek(1))
    made_again = stamp_of(made_again_id, await stored_kek(store, env, made_again_id))

    with pytest.raises(KekChanged):
        await store.create_object(new_object(env), [lost])
    with pytest.raises(KekChanged):
        await store.create_object(new_object(env), [KekStamp(made_again_id, 1, lost.stamp)])
    await store.create_object(new_object(env), [made_again])
    assert await store.count_objects(env) == 1


async def test_an_update_under_a_stale_stamp_keeps_the_current_version(store: Store) -> None:
    env, kek_id = new_env(), new_kek_id()
    assert await store.add_kek_version(env, kek_id, new_kek(1))
    first = await stored_kek(store, env, kek_id)
    obj = new_object(env)
    await store.create_object(obj, [stamp_of(kek_id, first)])
    assert await store.rewrap_kek_version(env, kek_id, first, replace(first, wrapped_key=b"x" * 60))

    with pytest.raises(KekChanged):
        await store.update_object(env, obj.id, new_version(b"new"), None, [stamp_of(kek_id, first)])

    found = await store.get_object(env, obj.id)
    assert found is not None and found.version == obj.version
    listed = await store.list_versions(env, obj.id)
    assert listed is not None and [v.version_id for v in listed[0]] == [obj.version.version_id]


async def test_a_key_swap_under_a_shredded_kek_leaves_the_version_as_it_was(store: Store) -> None:
    env, kek_id = new_env(), new_kek_id()
    assert await store.add_kek_version(env, kek_id, new_kek(1))
    stamp = stamp_of(kek_id, await stored_kek(store, env, kek_id))
    obj = new_object(env)
    await store.create_object(obj, [stamp])
    await store.shred_kek(env, kek_id, "organization_id", "org_ü", _now())

    with pytest.raises(KekChanged):
        await store.replace_encrypted_keys(
            env, obj.id, obj.version, b"moved keys", ("kek_x.v2",), [stamp]
        )

    found = await store.get_object(env, obj.id)
    assert found is not None
    assert found.version.encrypted_keys == obj.version.encrypted_keys
    assert found.version.key_ids == obj.version.key_ids


def _now() -> datetime:
    return datetime.now(UTC)
