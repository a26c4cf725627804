"""A KMS that answers 5xx for 30 seconds, in real time, with the outage grace on.

Tenant A's key (AWS KMS on moto) answers every call `500 KMSInternalException` for 30 s, while
the KEK cache's TTL is 1 s, so A's entries expire again and again during the outage. Readers and
writers of A keep going the whole time; halfway through, tenant B's customer revokes B's key. What
must hold:

- every read and write of A during the 30 s is served (stale, inside the grace);
- B is refused (FAILED_PRECONDITION / KEY_UNAVAILABLE) from the first call the KMS denies, and
  never served after it: an explicit denial is not ridden out;
- when A's key is healthy again, vaultd asks the KMS again and A's access is back to normal:
  fresh loads, nothing stale any more.

The counts and times printed (run with -s) are the measurements docs/BYOK.md quotes.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter

import grpc
import pytest

from testkit.auth import BOOTSTRAP_API_KEY
from testkit.auth import channel as authed_channel
from testkit.byok import providers_for
from testkit.grpc_errors import details_of
from testkit.standins.aws import AwsKmsStandIn
from vaultd.server import start
from vaultd.settings import ByokRuleSettings, Settings
from vaultd.v1 import object_service_pb2 as pb
from vaultd.v1 import object_service_pb2_grpc as pb_grpc

OUTAGE_SECONDS = 30.0
TTL = 1.0
GRACE = 3600.0
DEADLINE = 3.0


async def test_thirty_seconds_of_5xx_are_ridden_out_and_a_denial_still_refuses_at_once(
    aws_kms_standin: AwsKmsStandIn, tmp_path_factory: pytest.TempPathFactory
) -> None:
    standin = aws_kms_standin
    key_a = standin.create_key(f"outage-a-{uuid.uuid4().hex[:8]}")
    key_b = standin.create_key(f"outage-b-{uuid.uuid4().hex[:8]}")
    run = uuid.uuid4().hex[:8]
    tenant_a = {"organization_id": f"org_outage_a_{run}"}
    tenant_b = {"organization_id": f"org_outage_b_{run}"}
    configured, injected = providers_for(standin)
    settings = Settings(
        listen="127.0.0.1:0",
        data_dir=tmp_path_factory.mktemp("long-outage"),
        kek_cache={"ttl_seconds": TTL, "max_entries": 1000, "outage_grace_seconds": GRACE},
        providers=configured,
        byok=[
            ByokRuleSettings(match=tenant_a, key=key_a),
            ByokRuleSettings(match=tenant_b, key=key_b),
        ],
        bootstrap_api_key=BOOTSTRAP_API_KEY,
    )
    vaultd = await start(settings, injected)
    channel = authed_channel(f"127.0.0.1:{vaultd.port}")
    objects = pb_grpc.ObjectServiceStub(channel)

    async def create(tenant: dict[str, str], value: bytes) -> str:
        made = await objects.CreateObject(
            pb.CreateObjectRequest(name=f"o-{uuid.uuid4().hex}", value=value, key_context=tenant),
            timeout=DEADLINE,
        )
        return str(made.metadata.id)

    async def read(object_id: str) -> bytes:
        got = await objects.GetObject(pb.GetObjectRequest(id=object_id), timeout=DEADLINE)
        return bytes(got.object.value)

    try:
        stored_a = {await create(tenant_a, f"a{i}".encode()): f"a{i}".encode() for i in range(5)}
        stored_b = await create(tenant_b, b"b")
        a_outcomes: Counter[str] = Counter()
        b_outcomes: list[tuple[float, str]] = []
        written_a: dict[str, bytes] = {}
        a_kms_before, b_kms_before = standin.calls_for(key_a), standin.calls_for(key_b)
        stale_before = vaultd.keyring.cache.stats.stale_served

        standin.fail_key(key_a, "KMSInternalException", 500)
        began = time.monotonic()
        revoked_at: float | None = None

        async def read_outcome(object_id: str, expected: bytes) -> str:
            try:
                got = await read(object_id)
            except grpc.aio.AioRpcError as failed:
                details = details_of(failed)
                return f"{details.code.name}/{details.reason}"
            assert got == expected, "a read returned another value"
            return "OK"

        while (elapsed := time.monotonic() - began) < OUTAGE_SECONDS:
            for object_id, value in stored_a.items():
                a_outcomes["read " + await read_outcome(object_id, value)] += 1
            value = f"during-{len(written_a)}".encode()
            try:
                written_a[await create(tenant_a, value)] = value
                a_outcomes["write OK"] += 1
            except grpc.aio.AioRpcError as failed:
                a_outcomes[f"write {details_of(failed).code.name}"] += 1
            if revoked_at is None and elapsed >= OUTAGE_SECONDS / 2:
                standin.revoke(key_b)
                revoked_at = time.monotonic()
            if revoked_at is not None:
                seen = await read_outcome(stored_b, b"b")
                b_outcomes.append((time.monotonic() - revoked_at, seen))
            await asyncio.sleep(0.05)
        a_kms_during = standin.calls_for(key_a) - a_kms_before
        b_kms_during = standin.calls_for(key_b) - b_kms_before
        stale_during = vaultd.keyring.cache.stats.stale_served - stale_before

        # Every call for A during the outage was served, and served right.
        assert set(a_outcomes) == {"read OK", "write OK"}, a_outcomes
        assert stale_during > 0, "the TTL passed during the outage: A was served stale"
        # B: refused from the first denial on, never served after it.
        refusals = [at for at, seen in b_outcomes if seen != "OK"]
        assert refusals, b_outcomes
        first_refusal = refusals[0]
        after = [seen for at, seen in b_outcomes if at >= first_refusal]
        assert set(after) == {"FAILED_PRECONDITION/KEY_UNAVAILABLE"}, b_outcomes

        standin.heal_key(key_a)
        standin.restore(key_b)
        healed_at = time.monotonic()
        unwraps = standin.calls["unwrap"]
        for _ in range(200):  # the breaker's cool-down first; then one real load
            for object_id, value in {**stored_a, **written_a}.items():
                assert await read(object_id) == value
            if standin.calls["unwrap"] > unwraps:
                break
            await asyncio.sleep(0.1)
        else:
            pytest.fail("the KMS was never asked again after it healed")
        back_after = time.monotonic() - healed_at
        stale_after_heal = vaultd.keyring.cache.stats.stale_served
        for object_id, value in {**stored_a, **written_a}.items():
            assert await read(object_id) == value
        assert vaultd.keyring.cache.stats.stale_served == stale_after_heal, "back to fresh loads"
        assert await read(stored_b) == b"b", "B's key restored: B reads again"
        print(
            f"\n[aws-kms] {OUTAGE_SECONDS:.0f} s of 5xx, TTL {TTL:.0f} s, grace on: "
            f"{sum(a_outcomes.values())} calls for A, all served ({dict(a_outcomes)}), "
            f"{stale_during} served stale, {a_kms_during} KMS requests for A's key in the "
            f"outage; B refused {first_refusal * 1000:.0f} ms after its revocation and on every "
            f"one of {len(after)} calls after ({b_kms_during} KMS requests); A fresh again "
            f"{back_after:.2f} s after the KMS healed"
        )
    finally:
        standin.heal_key(key_a)
        standin.restore(key_b)
        await channel.close()
        await vaultd.stop(None)
