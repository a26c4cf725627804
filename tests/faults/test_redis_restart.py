"""Redis killed (SIGKILL) and restarted under a mixed load of creates and updates.

Promises checked (issue 6, docs/ARCHITECTURE.md sections 6 and 7): while Redis is down every
call fails UNAVAILABLE / BACKEND_UNAVAILABLE (never INTERNAL or UNKNOWN); once it is back the
same vaultd process serves again; every acknowledged write reads back with its value.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest

from testkit.fault_load import (
    API_KEY,
    BACKEND_FAULT_STATUSES,
    BACKEND_UNAVAILABLE,
    FaultReport,
    Load,
    Verifier,
)
from testkit.redis_server import RedisServer
from vaultd.server import Vaultd, start
from vaultd.settings import Settings

pytestmark = pytest.mark.faults

# AOF with an fsync per write: what an operator who cannot lose acknowledged writes runs, and
# what makes "acknowledged" mean "survives a SIGKILL" (the default test args keep nothing).
DURABLE = ["--appendonly", "yes", "--appendfsync", "always"]
HEALTHY_SECONDS = 1.5
OUTAGE_SECONDS = 1.5
RECOVERY_WITHIN_SECONDS = 10.0
ACKS_AFTER_RECOVERY = 30


@pytest.fixture
def durable_redis(tmp_path: Path) -> Iterator[RedisServer]:
    with RedisServer(tmp_path / "redis", extra_args=DURABLE) as server:
        yield server


@pytest.fixture
async def vaultd_on(durable_redis: RedisServer, tmp_path: Path) -> AsyncIterator[Vaultd]:
    settings = Settings(
        listen="127.0.0.1:0",
        data_dir=tmp_path / "vaultd",
        redis_url=durable_redis.url,
        bootstrap_api_key=API_KEY,
        log_level="error",
    )
    vaultd = await start(settings)
    yield vaultd
    await vaultd.stop(None)


async def test_redis_killed_and_restarted_under_load(
    durable_redis: RedisServer, vaultd_on: Vaultd, fault_report: FaultReport
) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{vaultd_on.port}") as channel:
        load = Load(channel, fault_report, prefix=f"restart-{uuid.uuid4().hex[:8]}")
        async with load.running():
            load.phase = "healthy"
            await asyncio.sleep(HEALTHY_SECONDS)

            load.phase = "outage"
            durable_redis.kill()
            await asyncio.sleep(OUTAGE_SECONDS)

            load.phase = "recovered"
            # Started off the event loop: the in-process vaultd must keep answering meanwhile.
            await asyncio.to_thread(durable_redis.start)
            took = await load.wait_until(
                f"{ACKS_AFTER_RECOVERY} writes acknowledged after Redis came back",
                lambda: load.acked("recovered") >= ACKS_AFTER_RECOVERY,
                RECOVERY_WITHIN_SECONDS,
            )
        fault_report.note("recovery seconds", round(took, 2))

        violations = await Verifier(channel, fault_report).verify(load.tracked)

    assert not violations, "\n".join(violations[:30])
    assert load.acked("healthy") > 0, "the load never got going before the fault"
    outage = load.seen("outage")
    assert outage[BACKEND_UNAVAILABLE] > 0, f"no call saw the outage: {dict(outage)}"
    fault_report.assert_statuses(BACKEND_FAULT_STATUSES)
