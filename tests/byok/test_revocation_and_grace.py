"""Revocation is honoured at once, and an outage may be ridden out for a bounded grace.

A real vaultd per provider stand-in (AWS KMS on moto, Google Cloud KMS, Azure Key Vault,
OpenBao Transit), over real gRPC. The KEK cache's clock is moved by the tests, so the TTL and
the grace are exact and no assertion depends on timing; the times printed (run with -s) are
measurements for docs/BYOK.md, not assertions.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest

from testkit.auth import BOOTSTRAP_API_KEY
from testkit.auth import channel as authed_channel
from testkit.byok import STANDINS, Clock, providers_for
from testkit.grpc_errors import details_of, refused
from testkit.standins import StandIn
from vaultd.server import Vaultd, start
from vaultd.settings import ByokRuleSettings, Settings
from vaultd.v1 import object_service_pb2 as pb
from vaultd.v1 import object_service_pb2_grpc as pb_grpc

TTL = 60.0
GRACE = 3600.0
OUTAGE_DEADLINE = 3.0


@dataclass
class Graced:
    standin: StandIn
    vaultd: Vaultd
    channel: grpc.aio.Channel
    key_uri: str
    prefix: str
    clock: Clock

    @property
    def objects(self) -> pb_grpc.ObjectServiceStub:
        return pb_grpc.ObjectServiceStub(self.channel)

    def tenant(self) -> dict[str, str]:
        return {"organization_id": f"{self.prefix}{uuid.uuid4().hex[:10]}"}

    async def create(self, tenant: dict[str, str], value: bytes, **kw: float) -> str:
        created = await self.objects.CreateObject(
            pb.CreateObjectRequest(name=f"g-{uuid.uuid4().hex}", value=value, key_context=tenant),
            **kw,
        )
        return str(created.metadata.id)

    async def read(self, object_id: str, **kw: float) -> bytes:
        got = await self.objects.GetObject(pb.GetObjectRequest(id=object_id), **kw)
        return bytes(got.object.value)


@pytest.fixture(scope="module", params=sorted(STANDINS))
async def graced(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Graced]:
    """A vaultd with `kek_cache.outage_grace_seconds` on, its tenants' key in one stand-in."""
    standin: StandIn = request.getfixturevalue(STANDINS[request.param])
    key_uri = standin.create_key(f"graced-{uuid.uuid4().hex[:8]}")
    prefix = f"org_graced_{request.param}_"
    configured, injected = providers_for(standin)
    settings = Settings(
        listen="127.0.0.1:0",
        data_dir=tmp_path_factory.mktemp(f"graced-{request.param}"),
        kek_cache={"ttl_seconds": TTL, "max_entries": 1000, "outage_grace_seconds": GRACE},
        providers=configured,
        byok=[ByokRuleSettings(match={"organization_id": f"{prefix}*"}, key=key_uri)],
        bootstrap_api_key=BOOTSTRAP_API_KEY,
    )
    vaultd = await start(settings, injected)
    clock = Clock()
    vaultd.keyring.cache.clock = clock
    channel = authed_channel(f"127.0.0.1:{vaultd.port}")
    yield Graced(standin, vaultd, channel, key_uri, prefix, clock)
    await channel.close()
    await vaultd.stop(None)


async def test_a_denial_drops_every_cached_kek_under_the_key_at_once(graced: Graced) -> None:
    """Tenant A's KEK is cached; the customer revokes the key; the first call that reaches the
    KMS for that key (tenant B, cold) is denied, and from then on A is refused too: no read and
    no new write under the revoked key, although A's cache entry is well inside its TTL."""
    a, b = graced.tenant(), graced.tenant()
    stored = await graced.create(a, b"a's secret")
    assert await graced.read(stored) == b"a's secret"
    graced.standin.revoke(graced.key_uri)
    try:
        revoked_at = time.monotonic()
        # Inside the TTL, with no KMS call, the cache still serves A: nothing has told vaultd.
        assert await graced.read(stored) == b"a's secret"
        await refused(
            graced.objects.CreateObject(
                pb.CreateObjectRequest(name=f"b-{uuid.uuid4().hex}", value=b"b", key_context=b)
            ),
            grpc.StatusCode.FAILED_PRECONDITION,
            "KEY_UNAVAILABLE",
        )
        await refused(
            graced.objects.GetObject(pb.GetObjectRequest(id=stored)),
            grpc.StatusCode.FAILED_PRECONDITION,
            "KEY_UNAVAILABLE",
        )
        refused_after = time.monotonic() - revoked_at
        await refused(
            graced.objects.CreateObject(
                pb.CreateObjectRequest(name=f"a-{uuid.uuid4().hex}", value=b"a", key_context=a)
            ),
            grpc.StatusCode.FAILED_PRECONDITION,
            "KEY_UNAVAILABLE",
        )
        print(
            f"\n[{graced.standin.scheme}] revoked -> first KMS contact denied -> cached tenant "
            f"refused: {refused_after * 1000:.0f} ms (3 RPCs; the cache's TTL is {TTL:.0f} s)"
        )
    finally:
        graced.standin.restore(graced.key_uri)
    assert await graced.read(stored) == b"a's secret", "restored: readable again, no restart"


async def test_an_outage_is_ridden_out_inside_the_grace_and_a_denial_still_refuses(
    graced: Graced,
) -> None:
    tenant = graced.tenant()
    stored = await graced.create(tenant, b"kept")
    graced.clock.pass_ttl()  # the entry is expired: a read must ask the KMS again
    graced.standin.stop()
    try:
        began = time.monotonic()
        assert await graced.read(stored, timeout=OUTAGE_DEADLINE) == b"kept"
        served_in = time.monotonic() - began
        # A write for the same tenant uses the same KEK: it goes on too.
        written = await graced.create(tenant, b"during", timeout=OUTAGE_DEADLINE)
    finally:
        graced.standin.start()
    print(
        f"\n[{graced.standin.scheme}] KMS down, TTL passed, grace on: read served stale in "
        f"{served_in:.2f} s under a {OUTAGE_DEADLINE:.0f} s deadline"
    )
    assert graced.vaultd.keyring.cache.stats.stale_served >= 1
    # Back up: the stale entry is replaced by a real load once the KMS answers. The breaker's
    # cool-down or an SDK's reconnect backoff may first serve it stale a little longer.
    for _ in range(100):
        unwraps = graced.standin.calls["unwrap"]
        assert await graced.read(written, timeout=10) == b"during"
        if graced.standin.calls["unwrap"] > unwraps:
            break
        await asyncio.sleep(0.1)  # the entry stays expired (stale): the next read asks again
    else:
        pytest.fail("the KMS was never asked again after it came back")

    # An explicit denial inside the grace is not ridden out: refused at once.
    graced.clock.pass_ttl()
    graced.standin.revoke(graced.key_uri)
    try:
        await refused(
            graced.objects.GetObject(pb.GetObjectRequest(id=stored), timeout=10),
            grpc.StatusCode.FAILED_PRECONDITION,
            "KEY_UNAVAILABLE",
        )
    finally:
        graced.standin.restore(graced.key_uri)
    assert await graced.read(stored, timeout=10) == b"kept"


async def test_past_the_grace_an_outage_is_unavailable_with_a_retry_hint(graced: Graced) -> None:
    tenant = graced.tenant()
    stored = await graced.create(tenant, b"x")
    graced.clock.now += TTL + GRACE + 1
    graced.standin.stop()
    try:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await graced.read(stored, timeout=OUTAGE_DEADLINE)
    finally:
        graced.standin.start()
    details = details_of(caught.value)
    assert (details.code, details.reason) == (
        grpc.StatusCode.UNAVAILABLE,
        "BACKEND_UNAVAILABLE",
    ), details
    assert details.metadata["key_uri"] == graced.key_uri
    assert details.retry_delay is not None and details.retry_delay > 0, details
