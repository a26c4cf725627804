"""BYOK end to end: a real vaultd whose tenants' KEKs live in each provider's stand-in.

Every test runs once per provider (AWS KMS on moto, Google Cloud KMS, Azure Key Vault and
HashiCorp Vault Transit on OpenBao), through the real SDK over real sockets.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from testkit.auth import BOOTSTRAP_API_KEY
from testkit.auth import channel as authed_channel
from testkit.byok import STANDINS, TTL, Clock, providers_for
from testkit.grpc_errors import details_of, refused
from testkit.standins import StandIn
from vaultd.server import Vaultd, start
from vaultd.settings import ByokRuleSettings, Settings
from vaultd.v1 import key_service_pb2 as kpb
from vaultd.v1 import key_service_pb2_grpc as kpb_grpc
from vaultd.v1 import object_service_pb2 as pb
from vaultd.v1 import object_service_pb2_grpc as pb_grpc


@dataclass
class Byok:
    standin: StandIn
    vaultd: Vaultd
    channel: grpc.aio.Channel
    tenants: dict[str, str]  # organization_id -> key URI (every org_<scheme>_* prefix too)
    prefix: str
    clock: Clock

    @property
    def objects(self) -> pb_grpc.ObjectServiceStub:
        return pb_grpc.ObjectServiceStub(self.channel)

    @property
    def keys(self) -> kpb_grpc.KeyServiceStub:
        return kpb_grpc.KeyServiceStub(self.channel)

    def new_tenant(self) -> dict[str, str]:
        """A context governed by the stand-in's key that no test has used yet (cold)."""
        return {"organization_id": f"{self.prefix}{uuid.uuid4().hex[:10]}"}


@pytest.fixture(scope="session", params=sorted(STANDINS))
async def byok(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Byok]:
    standin: StandIn = request.getfixturevalue(STANDINS[request.param])
    key_uri = standin.create_key(f"tenant-{uuid.uuid4().hex[:8]}")
    prefix = f"org_{request.param}_"
    configured, injected = providers_for(standin)
    settings = Settings(
        listen="127.0.0.1:0",
        data_dir=tmp_path_factory.mktemp(f"byok-{request.param}"),
        kek_cache={"ttl_seconds": TTL, "max_entries": 1000},
        providers=configured,
        byok=[ByokRuleSettings(match={"organization_id": f"{prefix}*"}, key=key_uri)],
        bootstrap_api_key=BOOTSTRAP_API_KEY,
    )
    vaultd = await start(settings, injected)
    clock = Clock()
    vaultd.keyring.cache.clock = clock
    channel = authed_channel(f"127.0.0.1:{vaultd.port}")
    yield Byok(standin, vaultd, channel, {prefix: key_uri}, prefix, clock)
    await channel.close()
    await vaultd.stop(None)


def calls(b: Byok) -> tuple[int, int]:
    return b.standin.calls["wrap"], b.standin.calls["unwrap"]


async def test_round_trip_binds_the_item_and_caches_the_kek(byok: Byok) -> None:
    tenant = byok.new_tenant()
    wraps, unwraps = calls(byok)
    created = await byok.objects.CreateObject(
        pb.CreateObjectRequest(
            name=f"byok-{uuid.uuid4().hex}", value=b"tenant secret", key_context=tenant
        )
    )
    assert calls(byok) == (wraps + 1, unwraps), "one wrap for the tenant's new KEK"
    data_key = await byok.keys.CreateDataKey(kpb.CreateDataKeyRequest(key_context=tenant))
    got = await byok.objects.GetObject(pb.GetObjectRequest(id=created.metadata.id))
    assert got.object.value == b"tenant secret"
    opened = await byok.keys.DecryptDataKey(
        kpb.DecryptDataKeyRequest(encrypted_keys=data_key.encrypted_keys)
    )
    assert opened.data_key == data_key.data_key
    assert calls(byok) == (wraps + 1, unwraps), "inside the TTL the cache answers"

    byok.clock.pass_ttl()
    for _ in range(3):
        got = await byok.objects.GetObject(pb.GetObjectRequest(id=created.metadata.id))
    assert got.object.value == b"tenant secret"
    assert calls(byok) == (wraps + 1, unwraps + 1), "after the TTL: exactly one unwrap"


async def test_byok_item_alone_wraps_a_mixed_context(byok: Byok) -> None:
    tenant = byok.new_tenant()
    mixed = tenant | {"user_id": "u-1"}
    created = await byok.keys.CreateDataKey(kpb.CreateDataKeyRequest(key_context=mixed))
    assert len(created.key_ids) == 1, "the internal item must not wrap a BYOK tenant's DEK"


async def test_revocation_locks_only_that_tenant_and_restores_without_restart(
    byok: Byok,
) -> None:
    tenant = byok.new_tenant()
    other = {"organization_id": f"internal_{uuid.uuid4().hex[:8]}"}
    mine = await byok.objects.CreateObject(
        pb.CreateObjectRequest(name=f"r-{uuid.uuid4().hex}", value=b"mine", key_context=tenant)
    )
    mixed = await byok.objects.CreateObject(
        pb.CreateObjectRequest(
            name=f"r-{uuid.uuid4().hex}", value=b"mixed", key_context=tenant | {"user_id": "u"}
        )
    )
    theirs = await byok.objects.CreateObject(
        pb.CreateObjectRequest(name=f"r-{uuid.uuid4().hex}", value=b"theirs", key_context=other)
    )
    data_key = await byok.keys.CreateDataKey(kpb.CreateDataKeyRequest(key_context=tenant))
    key_uri = byok.tenants[byok.prefix]

    byok.standin.revoke(key_uri)
    try:
        byok.clock.pass_ttl()
        for obj in (mine, mixed):
            await refused(
                byok.objects.GetObject(pb.GetObjectRequest(id=obj.metadata.id)),
                grpc.StatusCode.FAILED_PRECONDITION,
                "KEY_UNAVAILABLE",
            )
        await refused(
            byok.keys.DecryptDataKey(
                kpb.DecryptDataKeyRequest(encrypted_keys=data_key.encrypted_keys)
            ),
            grpc.StatusCode.FAILED_PRECONDITION,
            "KEY_UNAVAILABLE",
        )
        got = await byok.objects.GetObject(pb.GetObjectRequest(id=theirs.metadata.id))
        assert got.object.value == b"theirs"
    finally:
        byok.standin.restore(key_uri)
    got = await byok.objects.GetObject(pb.GetObjectRequest(id=mine.metadata.id))
    assert got.object.value == b"mine"


async def test_outage_is_unavailable_in_the_deadline_and_writes_nothing(byok: Byok) -> None:
    tenant = byok.new_tenant()
    name = f"outage-{uuid.uuid4().hex}"
    byok.standin.stop()
    try:
        began = time.monotonic()
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await byok.objects.CreateObject(
                pb.CreateObjectRequest(name=name, value=b"x", key_context=tenant), timeout=10
            )
        assert time.monotonic() - began < 10
        details = details_of(caught.value)
        assert (details.code, details.reason) == (
            grpc.StatusCode.UNAVAILABLE,
            "BACKEND_UNAVAILABLE",
        ), details
    finally:
        byok.standin.start()
    await refused(
        byok.objects.GetObjectByName(pb.GetObjectByNameRequest(name=name)),
        grpc.StatusCode.NOT_FOUND,
        "OBJECT_NOT_FOUND",
    )
    # The SDK's channel may still be in its (capped, 1 s) reconnect backoff: a client retries
    # UNAVAILABLE, and within a few seconds the same vaultd serves again, unrestarted.
    for _ in range(50):
        try:
            created = await byok.objects.CreateObject(
                pb.CreateObjectRequest(name=name, value=b"after", key_context=tenant)
            )
            break
        except grpc.aio.AioRpcError as error:
            assert error.code() == grpc.StatusCode.UNAVAILABLE, details_of(error)
            await asyncio.sleep(0.1)
    else:
        pytest.fail("vaultd did not recover after the provider came back")
    got = await byok.objects.GetObject(pb.GetObjectRequest(id=created.metadata.id))
    assert got.object.value == b"after"


async def test_concurrent_cold_reads_make_one_unwrap(byok: Byok) -> None:
    tenant = byok.new_tenant()
    created = await byok.objects.CreateObject(
        pb.CreateObjectRequest(name=f"cold-{uuid.uuid4().hex}", value=b"cold", key_context=tenant)
    )
    byok.vaultd.keyring.cache.clear()
    _, unwraps = calls(byok)
    replies = await asyncio.gather(
        *(byok.objects.GetObject(pb.GetObjectRequest(id=created.metadata.id)) for _ in range(200))
    )
    assert {r.object.value for r in replies} == {b"cold"}
    assert calls(byok)[1] == unwraps + 1


def test_bad_configuration_fails_at_start_naming_the_rule(tmp_path: Path) -> None:
    import subprocess
    import sys

    vaultd = Path(sys.executable).parent / "vaultd"
    cases = {
        "unknown scheme": (
            "byok:\n  - match: {organization_id: org_a}\n    key: nope://k\n",
            "byok rule 1 (organization_id=org_a -> nope://k)",
        ),
        "provider not configured": (
            "byok:\n  - match: {organization_id: org_a}\n    key: hcvault://transit/keys/a\n",
            "no provider is configured for hcvault://",
        ),
        "overlapping rules": (
            "providers: {hcvault: {address: 'http://127.0.0.1:1', token: t}}\n"
            "byok:\n  - match: {organization_id: org_a}\n    key: hcvault://transit/keys/a\n"
            "  - match: {organization_id: org_a}\n    key: hcvault://transit/keys/b\n",
            "byok rule 2 (organization_id=org_a -> hcvault://transit/keys/b) overlaps byok rule 1",
        ),
        "unknown provider": ("providers: {nope: {}}\n", "unknown provider 'nope'"),
        "bad provider settings": ("providers: {aws-kms: {regoin: x}}\n", "regoin"),
    }
    for case, (config, expected) in cases.items():
        path = tmp_path / f"{case.replace(' ', '-')}.yaml"
        path.write_text(config)
        result = subprocess.run(
            [
                str(vaultd),
                "serve",
                "--config",
                str(path),
                "--data-dir",
                str(tmp_path / "d"),
                "--listen",
                "127.0.0.1:0",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 2, (case, result.stderr)
        assert expected in result.stderr, (case, result.stderr)
        assert "listening" not in result.stderr, case
