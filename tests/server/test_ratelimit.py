"""Rate limiting per API key: past the burst, RESOURCE_EXHAUSTED with RetryInfo; others go on."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from testkit.grpc_errors import details_of
from testkit.running import settings_for
from vaultd.core.apikeys import ApiKeys, new_secret
from vaultd.core.cache import TtlCache
from vaultd.core.ratelimit import TokenBuckets
from vaultd.server import Vaultd, start
from vaultd.v1 import object_service_pb2 as pb
from vaultd.v1 import object_service_pb2_grpc as pb_grpc

BURST = 3
# One token per 100 s: no token comes back while the test runs, however slow the machine.
RATE = 0.01
MISSING_ID = "secret_01HZZZZZZZZZZZZZZZZZZZZZZZ"


@pytest.fixture
async def limited(tmp_path: Path) -> AsyncIterator[tuple[Vaultd, grpc.aio.Channel, str, str]]:
    first = new_secret()
    vaultd = await start(
        settings_for(
            tmp_path,
            None,
            bootstrap_api_key=first,
            rate_limit={"requests_per_second": RATE, "burst": BURST},
        )
    )
    keys = ApiKeys(vaultd.store, TtlCache(0, 0))
    second = (await keys.create("default", ["objects:read", "objects:write"], "second")).secret
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{vaultd.port}")
    yield vaultd, channel, first, second
    await channel.close()
    await vaultd.stop(None)


def _bearer(key: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {key}")]


async def test_a_burst_past_the_bucket_is_refused_with_a_retry_delay(
    limited: tuple[Vaultd, grpc.aio.Channel, str, str],
) -> None:
    _, channel, noisy, quiet = limited
    stub = pb_grpc.ObjectServiceStub(channel)
    describe = pb.DescribeObjectRequest(id=MISSING_ID)
    for _ in range(BURST):
        with pytest.raises(grpc.aio.AioRpcError) as allowed:
            await stub.DescribeObject(describe, metadata=_bearer(noisy))
        assert allowed.value.code() == grpc.StatusCode.NOT_FOUND  # let through, and answered

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.DescribeObject(describe, metadata=_bearer(noisy))
    details = details_of(refused.value)
    assert details.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert details.reason == "RATE_LIMITED" and details.domain == "vaultd"
    assert details.retry_delay is not None and 0 < details.retry_delay <= 1 / RATE
    assert dict(refused.value.trailing_metadata() or ()).get("x-request-id")

    # Another key has its own bucket and is not slowed by the noisy one.
    created = await stub.CreateObject(
        pb.CreateObjectRequest(name="quiet", value=b"v", key_context={"org": "o"}),
        metadata=_bearer(quiet),
    )
    assert created.metadata.id
    # Health checks are never limited, whoever sends them.
    health = health_pb2_grpc.HealthStub(channel)
    reply = await health.Check(health_pb2.HealthCheckRequest(), metadata=_bearer(noisy))
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_token_bucket_refills_at_its_rate_up_to_its_burst() -> None:
    now = [0.0]
    buckets: TokenBuckets[str] = TokenBuckets(2.0, 3, max_keys=2, clock=lambda: now[0])
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a") == pytest.approx(0.5)  # half a second to the next token
    now[0] += 0.5
    assert buckets.take("a") == 0.0
    now[0] += 100
    assert [buckets.take("a") for _ in range(4)][-1] > 0, "refilled to the burst, not beyond"
    assert buckets.take("b") == 0.0
    # A third key pushes out the least recently used bucket, which comes back full.
    buckets.take("c")
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError):
        TokenBuckets(0, 1)
