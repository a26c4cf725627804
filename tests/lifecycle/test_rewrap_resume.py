"""A rewrap job whose `vaultd serve` is killed (SIGKILL) midway resumes in the next one, from
its saved cursor, and finishes: every version moved, no object counted twice."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from testkit.auth import BOOTSTRAP_API_KEY, channel
from testkit.running import SEEDING_ACTOR
from testkit.serving import ServeProcess, clean_env, wait_serving
from vaultd.core.envelope import EncryptedKeys
from vaultd.core.objects import ObjectVault
from vaultd.server import start
from vaultd.settings import load_settings
from vaultd.storage import SqliteStore
from vaultd.v1 import admin_service_pb2 as apb
from vaultd.v1 import admin_service_pb2_grpc as apb_grpc

OBJECTS = 1500
RATE = 500  # versions per second: the job runs ~3 s, long enough to be killed in the middle
CONFIG = f"""
kek_cache: {{ttl_seconds: 0.2, max_entries: 1000}}
keys: {{rewrap_versions_per_second: {RATE}, rewrap_lease_seconds: 1.5}}
log_level: info
"""


async def test_a_killed_rewrap_resumes_from_its_cursor(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    config = tmp_path / "vaultd.yaml"
    config.write_text(CONFIG)
    org = {"organization_id": f"org_{uuid.uuid4().hex[:8]}"}
    item = f"organization_id={org['organization_id']}"

    # Seed in this process, on the same data dir, then rotate: every version is on v1.
    seeding = await start(
        load_settings(
            config, data_dir=data_dir, listen="127.0.0.1:0", bootstrap_api_key=BOOTSTRAP_API_KEY
        )
    )
    vault = ObjectVault(seeding.store, seeding.keyring)
    for start_at in range(0, OBJECTS, 100):
        await asyncio.gather(
            *(
                vault.create("default", SEEDING_ACTOR, f"r-{n}", f"v{n}".encode(), org)
                for n in range(start_at, start_at + 100)
            )
        )
    await seeding.keyring.rotate("default", *next(iter(org.items())))
    await seeding.stop(None)

    env = clean_env() | {
        "VAULTD_CONFIG": str(config),
        "VAULTD_DATA_DIR": str(data_dir),
        "VAULTD_BOOTSTRAP_API_KEY": BOOTSTRAP_API_KEY,
    }
    process = ServeProcess(tmp_path, env)
    try:
        target = await asyncio.to_thread(process.start)
        await (await wait_serving(target)).close()
        async with channel(target) as chan:
            admin = apb_grpc.AdminServiceStub(chan)
            selector = apb.KekSelector(items=[item])
            job = (await admin.StartRewrap(apb.StartRewrapRequest(selector=selector))).job
            for _ in range(600):
                seen = (await admin.GetRewrapJob(apb.GetRewrapJobRequest(id=job.id))).job
                if seen.objects_done > 0:
                    break
                await asyncio.sleep(0.02)
        process.kill()
        assert seen.state == apb.REWRAP_STATE_RUNNING
        assert 0 < seen.objects_done < seen.objects_total == OBJECTS, seen

        target = await asyncio.to_thread(process.start)
        await wait_serving(target)
        async with channel(target) as chan:
            admin = apb_grpc.AdminServiceStub(chan)
            for _ in range(1200):
                final = (await admin.GetRewrapJob(apb.GetRewrapJobRequest(id=job.id))).job
                if final.state != apb.REWRAP_STATE_RUNNING:
                    break
                await asyncio.sleep(0.05)
    finally:
        process.stop()

    assert final.state == apb.REWRAP_STATE_DONE, final.error
    # From the cursor on: each object counted once although two processes worked on the job.
    assert final.objects_done == final.objects_total == OBJECTS
    assert f"resuming rewrap job {job.id}" in process.log.read_text()
    store = SqliteStore(data_dir / "vaultd.db")
    try:
        versions = [
            v for o in await store.scan_object_versions("default", "", OBJECTS) for v in o.versions
        ]
    finally:
        await store.close()
    assert len(versions) == OBJECTS
    assert {
        e.kek_version for v in versions for e in EncryptedKeys.parse(v.encrypted_keys).entries
    } == {2}
