"""A tenant with two keys in two providers: each provider in turn as the primary, another as the
secondary (and AWS KMS + Google Cloud KMS for the KMS-call count).

Each through its real SDK against its stand-in, over real gRPC to vaultd. What must hold:
- a new KEK version is wrapped by both keys (one wrap each), and the admin API shows both;
- the tenant stays readable when the primary's KMS is down or its key is revoked, through the
  secondary; only when both refuse is it refused;
- a changed key set (a new primary, the old one dropped) reaches old data through a rewrap job,
  after which the dropped key can be revoked without losing anything;
- KMS calls per 10,000 operations with two keys per tenant, warm and cold (printed with -s, for
  docs/BYOK.md): two keys cost one more wrap per KEK version, and no more unwraps.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from providers import KeyProvider
from testkit.auth import BOOTSTRAP_API_KEY
from testkit.auth import channel as authed_channel
from testkit.byok import STANDINS, Clock, providers_for
from testkit.grpc_errors import expect_error
from testkit.lifecycle import wait_job
from testkit.standins import StandIn
from testkit.standins.aws import AwsKmsStandIn
from testkit.standins.gcp import GcpKmsStandIn
from vaultd.server import Vaultd, start
from vaultd.settings import ByokRuleSettings, Settings
from vaultd.v1 import admin_service_pb2 as apb
from vaultd.v1 import admin_service_pb2_grpc as apb_grpc
from vaultd.v1 import object_service_pb2 as pb
from vaultd.v1 import object_service_pb2_grpc as pb_grpc


@dataclass
class Served:
    vaultd: Vaultd
    objects: pb_grpc.ObjectServiceStub
    admin: apb_grpc.AdminServiceStub
    clock: Clock

    async def create(self, tenant: dict[str, str], value: bytes) -> str:
        made = await self.objects.CreateObject(
            pb.CreateObjectRequest(name=f"k-{uuid.uuid4().hex}", value=value, key_context=tenant),
            timeout=10,
        )
        return str(made.metadata.id)

    async def read(self, object_id: str) -> bytes:
        got = await self.objects.GetObject(pb.GetObjectRequest(id=object_id), timeout=10)
        return bytes(got.object.value)

    async def kek_of(self, tenant: dict[str, str]) -> apb.KekMetadata:
        ((key, value),) = tenant.items()
        listed = (await self.admin.ListKeks(apb.ListKeksRequest())).keks
        (kek,) = [k for k in listed if (k.item_key, k.item_value) == (key, value)]
        return kek


@asynccontextmanager
async def serve(
    data_dir: Path,
    standins: list[StandIn],
    prefix: str,
    keys: list[str],
    ttl: float = 60.0,
) -> AsyncIterator[Served]:
    """A vaultd reaching every stand-in, whose rule gives every `prefix*` tenant `keys` (the
    primary first)."""
    configured: dict[str, dict[str, Any]] = {}
    injected: list[KeyProvider] = []
    for standin in standins:
        settings_of, built = providers_for(standin)
        configured.update(settings_of)
        injected += built
    settings = Settings(
        listen="127.0.0.1:0",
        data_dir=data_dir,
        kek_cache={"ttl_seconds": ttl, "max_entries": 10_000},
        keys={"rewrap_versions_per_second": 0},
        providers=configured,
        byok=[ByokRuleSettings(match={"organization_id": f"{prefix}*"}, key=keys)],
        bootstrap_api_key=BOOTSTRAP_API_KEY,
    )
    vaultd = await start(settings, injected)
    clock = Clock()
    vaultd.keyring.cache.clock = clock
    channel = authed_channel(f"127.0.0.1:{vaultd.port}")
    try:
        yield Served(
            vaultd, pb_grpc.ObjectServiceStub(channel), apb_grpc.AdminServiceStub(channel), clock
        )
    finally:
        await channel.close()
        await vaultd.stop(None)


async def until_unwrapped_by(standin: StandIn, served: Served, object_id: str) -> None:
    for _ in range(100):
        unwraps = standin.calls["unwrap"]
        served.clock.pass_ttl()
        await served.read(object_id)
        if standin.calls["unwrap"] > unwraps:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{standin.scheme} was never asked again after it came back")


@contextmanager
def revoked(standin: StandIn, key_uri: str) -> Iterator[None]:
    standin.revoke(key_uri)
    try:
        yield
    finally:
        standin.restore(key_uri)


SCHEMES = sorted(STANDINS)
# Each provider once as the primary, the next one as its secondary.
PAIRS = [(scheme, SCHEMES[(i + 1) % len(SCHEMES)]) for i, scheme in enumerate(SCHEMES)]


@pytest.mark.parametrize(("primary_scheme", "secondary_scheme"), PAIRS)
async def test_either_key_keeps_the_tenant_readable_and_a_rewrap_moves_it_to_a_new_key_set(
    primary_scheme: str, secondary_scheme: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    first: StandIn = request.getfixturevalue(STANDINS[primary_scheme])
    second: StandIn = request.getfixturevalue(STANDINS[secondary_scheme])
    standins = [first, second]
    primary = first.create_key(f"primary-{uuid.uuid4().hex[:8]}")
    secondary = second.create_key(f"secondary-{uuid.uuid4().hex[:8]}")
    prefix = f"org_two_{uuid.uuid4().hex[:6]}_"
    tenant = {"organization_id": f"{prefix}a"}
    written: dict[str, bytes] = {}

    async with serve(tmp_path, standins, prefix, [primary, secondary]) as served:
        wraps = first.calls["wrap"], second.calls["wrap"]
        for n in range(3):
            written[await served.create(tenant, f"v{n}".encode())] = f"v{n}".encode()
        assert (first.calls["wrap"], second.calls["wrap"]) == (wraps[0] + 1, wraps[1] + 1)
        kek = await served.kek_of(tenant)
        assert [(v.key_uri, list(v.secondary_key_uris)) for v in kek.versions] == [
            (primary, [secondary])
        ]
        assert (kek.key_uri, list(kek.secondary_key_uris)) == (primary, [secondary])

        # The primary's KMS is down: the secondary unwraps.
        served.clock.pass_ttl()
        second_unwraps = second.calls["unwrap"]
        first.stop()
        try:
            for object_id, value in written.items():
                assert await served.read(object_id) == value
        finally:
            first.start()
        assert second.calls["unwrap"] == second_unwraps + 1
        # Back up: the primary is asked again once its breaker's cool-down (or the SDK's
        # reconnect backoff) has passed; until then an unwrap skips it as unavailable.
        await until_unwrapped_by(first, served, next(iter(written)))

        # The primary key is revoked: still readable through the secondary.
        served.clock.pass_ttl()
        with revoked(first, primary):
            for object_id, value in written.items():
                assert await served.read(object_id) == value
            # Both revoked: nothing unwraps, and the refusal says so.
            served.clock.pass_ttl()
            with revoked(second, secondary):
                await expect_error(
                    served.objects.GetObject(pb.GetObjectRequest(id=next(iter(written)))),
                    grpc.StatusCode.FAILED_PRECONDITION,
                    "KEY_UNAVAILABLE",
                )

    # The tenant moves: the secondary becomes the primary, a new key the secondary.
    replacement = first.create_key(f"replacement-{uuid.uuid4().hex[:8]}")
    # A short TTL: a rewrap job first waits one TTL, until no process writes under a KEK
    # version it cached before the rule changed.
    async with serve(tmp_path, standins, prefix, [secondary, replacement], ttl=0.5) as served:
        selector = apb.KekSelector(items=[f"organization_id={prefix}*"])
        job = (await served.admin.StartRewrap(apb.StartRewrapRequest(selector=selector))).job
        finished = await wait_job(served.admin, job.id)
        assert finished.state == apb.REWRAP_STATE_DONE, finished.error
        assert finished.keks_rewrapped == 1
        kek = await served.kek_of(tenant)
        assert [(v.key_uri, list(v.secondary_key_uris)) for v in kek.versions] == [
            (secondary, [replacement])
        ]
        # The old primary is revoked for good: nothing depended on it any more.
        with revoked(first, primary):
            served.clock.pass_ttl()
            for object_id, value in written.items():
                assert await served.read(object_id) == value


async def test_kms_calls_per_10000_operations_with_two_keys_per_tenant(
    aws_kms_standin: AwsKmsStandIn, gcp_kms_standin: GcpKmsStandIn, tmp_path: Path
) -> None:
    aws, gcp = aws_kms_standin, gcp_kms_standin
    primary = aws.create_key(f"ops-primary-{uuid.uuid4().hex[:8]}")
    secondary = gcp.create_key(f"ops-secondary-{uuid.uuid4().hex[:8]}")
    prefix = f"org_ops_{uuid.uuid4().hex[:6]}_"
    tenants = [{"organization_id": f"{prefix}{n}"} for n in range(100)]
    operations = 10_000
    rng = random.Random(17)

    def kms_calls() -> tuple[int, int, int, int]:
        return aws.calls["wrap"], aws.calls["unwrap"], gcp.calls["wrap"], gcp.calls["unwrap"]

    def spent(before: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(now - then for now, then in zip(kms_calls(), before, strict=True))

    stored: list[tuple[str, bytes]] = []
    async with serve(tmp_path, [aws, gcp], prefix, [primary, secondary]) as served:
        before = kms_calls()
        for tenant in tenants:  # one object per tenant first, then a mix
            stored.append((await served.create(tenant, b"first"), b"first"))

        async def one_operation(n: int) -> None:
            if n % 10 == 0:
                value = f"w{n}".encode()
                stored.append((await served.create(rng.choice(tenants), value), value))
            else:
                object_id, value = rng.choice(stored)
                assert await served.read(object_id) == value

        for start_at in range(len(tenants), operations, 50):
            await asyncio.gather(
                *(one_operation(n) for n in range(start_at, min(start_at + 50, operations)))
            )
        warm = spent(before)

    async with serve(tmp_path, [aws, gcp], prefix, [primary, secondary]) as served:
        before = kms_calls()
        for _ in range(0, operations, 50):
            batch = [rng.choice(stored) for _ in range(50)]
            values = await asyncio.gather(*(served.read(object_id) for object_id, _ in batch))
            assert values == [value for _, value in batch]
        cold = spent(before)

    print(
        f"\nKMS calls per {operations} operations, {len(tenants)} tenants, two keys each "
        f"(aws wrap, aws unwrap, gcp wrap, gcp unwrap): one process, writes and reads "
        f"{warm}; a fresh process, reads only {cold}"
    )
    # One KEK per tenant, wrapped once by each key; then served from the cache.
    assert warm == (len(tenants), 0, len(tenants), 0)
    # A fresh process unwraps each tenant's KEK once, through the primary only.
    assert cold[0] == cold[2] == cold[3] == 0 and 0 < cold[1] <= len(tenants)
