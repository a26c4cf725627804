"""A tenant moves to a new CMK: its KEKs are re-wrapped under the new key by a rewrap job, the old
key is revoked, and every object of the tenant still reads. Once per provider, through the real
SDK against its stand-in."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from testkit.auth import BOOTSTRAP_API_KEY, channel
from testkit.byok import STANDINS, providers_for
from testkit.lifecycle import wait_job
from testkit.standins import StandIn
from vaultd.server import Vaultd, start
from vaultd.settings import ByokRuleSettings, Settings
from vaultd.v1 import admin_service_pb2 as apb
from vaultd.v1 import admin_service_pb2_grpc as apb_grpc
from vaultd.v1 import object_service_pb2 as pb
from vaultd.v1 import object_service_pb2_grpc as pb_grpc


async def serve(standin: StandIn, data_dir: Path, prefix: str, key_uri: str) -> Vaultd:
    """A vaultd whose rule gives every org_<prefix>* tenant `key_uri` (a fresh KEK cache)."""
    configured, injected = providers_for(standin)
    settings = Settings(
        listen="127.0.0.1:0",
        data_dir=data_dir,
        kek_cache={"ttl_seconds": 0.1, "max_entries": 100},
        keys={"rewrap_versions_per_second": 0},
        providers=configured,
        byok=[ByokRuleSettings(match={"organization_id": f"{prefix}*"}, key=key_uri)],
        bootstrap_api_key=BOOTSTRAP_API_KEY,
    )
    return await start(settings, injected)


@pytest.mark.parametrize("provider", sorted(STANDINS))
async def test_moving_a_tenant_to_a_new_cmk_then_revoking_the_old_loses_nothing(
    provider: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    standin: StandIn = request.getfixturevalue(STANDINS[provider])
    old_key = standin.create_key(f"old-{uuid.uuid4().hex[:8]}")
    new_key = standin.create_key(f"new-{uuid.uuid4().hex[:8]}")
    prefix = f"org_move{uuid.uuid4().hex[:6]}_"
    tenants = [{"organization_id": f"{prefix}{n}"} for n in range(3)]

    vaultd = await serve(standin, tmp_path, prefix, old_key)
    written: dict[str, bytes] = {}
    try:
        async with channel(f"127.0.0.1:{vaultd.port}") as chan:
            objects = pb_grpc.ObjectServiceStub(chan)
            admin = apb_grpc.AdminServiceStub(chan)
            for n, tenant in enumerate(tenants * 2):
                value = f"secret {n}".encode()
                meta = await objects.CreateObject(
                    pb.CreateObjectRequest(name=f"m-{n}", value=value, key_context=tenant)
                )
                written[meta.metadata.id] = value
            # A second KEK version too, so every version must move, not only the newest.
            selector = apb.KekSelector(items=[f"organization_id={prefix}*"])
            await admin.RotateKeks(apb.RotateKeksRequest(selector=selector))
    finally:
        await vaultd.stop(None)

    # The customer moves to the new CMK: the rule names it, and a rewrap moves the KEKs.
    vaultd = await serve(standin, tmp_path, prefix, new_key)
    try:
        async with channel(f"127.0.0.1:{vaultd.port}") as chan:
            objects = pb_grpc.ObjectServiceStub(chan)
            admin = apb_grpc.AdminServiceStub(chan)
            by_key = apb.KekSelector(key_uri_prefix=old_key)
            job = (await admin.StartRewrap(apb.StartRewrapRequest(selector=by_key))).job
            assert len(job.kek_ids) == len(tenants)
            finished = await wait_job(admin, job.id)
            assert finished.state == apb.REWRAP_STATE_DONE, finished.error
            assert finished.keks_rewrapped == 2 * len(tenants)
            listed = (await admin.ListKeks(apb.ListKeksRequest())).keks
            mine = [k for k in listed if k.item.startswith(f"organization_id={prefix}")]
            assert {v.key_uri for k in mine for v in k.versions} == {new_key}
            assert {k.key_uri for k in mine} == {new_key}

            standin.revoke(old_key)
            vaultd.keyring.cache.clear()  # no KEK left in memory: every read unwraps again
            for object_id, value in written.items():
                got = await objects.GetObject(pb.GetObjectRequest(id=object_id))
                assert got.object.value == value
    finally:
        standin.restore(old_key)
        await vaultd.stop(None)
