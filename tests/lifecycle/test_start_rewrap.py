"""Rewrap: 10,000 object versions move to the newest KEK version while updates and deletes run,
and not one byte of data changes."""

from __future__ import annotations

import asyncio
import itertools
import uuid

from testkit.lifecycle import wait_job
from testkit.running import SEEDING_ACTOR, Running
from vaultd.core.envelope import EncryptedKeys
from vaultd.core.keyring import kek_id_for
from vaultd.storage import Store, StoredVersion
from vaultd.v1 import admin_service_pb2 as apb
from vaultd.v1 import object_service_pb2 as pb

ENV = "default"
ORGS = 4
VERSIONS_PER_OBJECT = 4
# 4 orgs x 625 objects x 4 versions = 10,000 versions to move on Redis. The embedded store
# fsyncs each seeding write, so it moves 2,000: the same test, a fifth of the wait.
OBJECTS_PER_ORG = {"redis": 625, "sqlite": 125}


async def all_versions(store: Store, object_ids: set[str]) -> dict[tuple[str, str], StoredVersion]:
    """Every stored version of these objects, by (object id, version id)."""
    found: dict[tuple[str, str], StoredVersion] = {}
    cursor = ""
    while batch := await store.scan_object_versions(ENV, cursor, 500):
        for obj in batch:
            if obj.object_id in object_ids:
                found.update({(obj.object_id, v.version_id): v for v in obj.versions})
        cursor = batch[-1].object_id
    return found


def entries(version: StoredVersion) -> list[tuple[str, int]]:
    return [(e.kek_id, e.kek_version) for e in EncryptedKeys.parse(version.encrypted_keys).entries]


async def test_rewrap_moves_every_wrapped_dek_and_touches_no_data(lifecycle: Running) -> None:
    prefix = f"org_rw{uuid.uuid4().hex[:8]}_"
    orgs = [{"organization_id": f"{prefix}{n}"} for n in range(ORGS)]
    bystander = {"organization_id": f"org_by{uuid.uuid4().hex[:8]}"}  # not selected
    kek_ids = {kek_id_for(ENV, "organization_id", o["organization_id"]) for o in orgs}
    vault = lifecycle.vault()
    expected: dict[tuple[str, str], bytes] = {}

    async def seed(context: dict[str, str], n: int) -> str:
        value = f"{n}-0-{context['organization_id']}".encode()
        meta = await vault.create(ENV, SEEDING_ACTOR, f"rw-{uuid.uuid4().hex}", value, context)
        expected[meta.id, meta.version_id] = value
        for v in range(1, VERSIONS_PER_OBJECT):
            value = f"{n}-{v}".encode() * (v + 1)
            meta = await vault.update(ENV, SEEDING_ACTOR, meta.id, value, None)
            expected[meta.id, meta.version_id] = value
        return meta.id

    per_org = OBJECTS_PER_ORG[lifecycle.kind]
    jobs = [(o, n) for o in orgs for n in range(per_org)]
    object_ids: list[str] = []
    for start in range(0, len(jobs), 125):
        object_ids += await asyncio.gather(*(seed(o, n) for o, n in jobs[start : start + 125]))
    bystander_id = await seed(bystander, -1)
    before = await all_versions(lifecycle.vaultd.store, {*object_ids, bystander_id})
    assert len(before) == (ORGS * per_org + 1) * VERSIONS_PER_OBJECT
    assert {k for v in before.values() for k, _ in entries(v)} >= kek_ids
    assert {n for v in before.values() for _, n in entries(v)} == {1}

    selector = apb.KekSelector(items=[f"organization_id={prefix}*"])
    rotated = await lifecycle.admin.RotateKeks(apb.RotateKeksRequest(selector=selector))
    assert {k.id for k in rotated.keks} == kek_ids
    started = (await lifecycle.admin.StartRewrap(apb.StartRewrapRequest(selector=selector))).job
    assert set(started.kek_ids) == kek_ids and started.state == apb.REWRAP_STATE_RUNNING

    # Meanwhile callers keep updating and deleting the same objects.
    deleted: set[str] = set()
    done = asyncio.Event()

    async def churn(offset: int) -> int:
        updates = 0
        for n, object_id in enumerate(itertools.cycle(object_ids[offset::4])):
            if done.is_set():
                return updates
            if n % 97 == 0 and len(deleted) < 24:
                await lifecycle.objects.DeleteObject(pb.DeleteObjectRequest(id=object_id))
                deleted.add(object_id)
            elif object_id not in deleted:
                value = f"concurrent-{n}".encode()
                reply = await lifecycle.objects.UpdateObject(
                    pb.UpdateObjectRequest(id=object_id, value=value)
                )
                expected[object_id, reply.metadata.version_id] = value
                updates += 1
        raise AssertionError("unreachable")

    churners = [asyncio.create_task(churn(offset)) for offset in range(4)]
    job = await wait_job(lifecycle.admin, started.id)
    done.set()
    updates = sum(await asyncio.gather(*churners))
    assert job.state == apb.REWRAP_STATE_DONE, job.error
    assert updates > 0 and deleted

    after = await all_versions(lifecycle.vaultd.store, {*object_ids, bystander_id})
    # Deleted objects are kept until purged (soft delete), and moved like every other: one
    # undeleted after the rotation must still open.
    assert {key[0] for key in after} >= deleted
    for key, old in before.items():
        new = after[key]
        # The data and everything about the version but its wrapped DEK: byte for byte.
        assert (new.version_id, new.ciphertext, new.etag, new.size, new.created_at) == (
            old.version_id,
            old.ciphertext,
            old.etag,
            old.size,
            old.created_at,
        )
        assert EncryptedKeys.parse(new.encrypted_keys).dek_id == (
            EncryptedKeys.parse(old.encrypted_keys).dek_id
        )
        if key[0] == bystander_id:
            assert new.encrypted_keys == old.encrypted_keys, "not selected: untouched"
        else:
            assert new.encrypted_keys != old.encrypted_keys
            assert [n for _, n in entries(new)] == [2]
            assert list(new.key_ids) == [f"{k}.v{n}" for k, n in entries(new)]
    # No wrapped DEK of the selected KEKs is left on version 1, concurrent writes included.
    assert not [
        k for k, v in after.items() if k[0] != bystander_id and (1 in dict(entries(v)).values())
    ]
    selected = [k for k in before if k[0] != bystander_id]
    assert len(selected) <= job.versions_rewrapped <= len(before)
    assert job.objects_done >= len(object_ids)
    revived = sorted(deleted)[0]
    await lifecycle.objects.UndeleteObject(pb.UndeleteObjectRequest(id=revived))
    deleted.discard(revived)

    readable = [(key, value) for key, value in expected.items() if key[0] not in deleted]
    for start in range(0, len(readable), 250):
        chunk = readable[start : start + 250]
        got = await asyncio.gather(*(vault.get_version(ENV, *key) for key, _ in chunk))
        assert [g.value for g in got] == [value for _, value in chunk]
