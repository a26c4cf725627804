"""vaultd killed with SIGKILL in the middle of a burst of concurrent creates and updates.

`vaultd serve` runs as its own process, as operators run it, on the embedded store and on a
private Redis (AOF, fsync always). Killed with calls in flight, then started again on the same
storage, it must: read back every acknowledged write; have no half-written object (whatever a
name resolves to, and whatever is listed, reads whole); hold no name for an object that does
not exist (a name whose create was never acknowledged either resolves to a readable object or
can be created now).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from testkit.fault_load import (
    API_KEY,
    BACKEND_FAULT_STATUSES,
    TRANSPORT_UNAVAILABLE,
    FaultReport,
    Load,
    Verifier,
)
from testkit.redis_server import RedisServer
from testkit.serving import ServeProcess, clean_env, wait_serving

pytestmark = pytest.mark.faults

DURABLE = ["--appendonly", "yes", "--appendfsync", "always"]
WORKERS = 16
ACKS_BEFORE_KILL = 80
BURST_WITHIN_SECONDS = 20.0
START_ATTEMPTS = 150  # health checks 0.1 s apart: a cold start on a busy 2-CPU machine
# After the kill the load runs on briefly, so calls in flight and new ones meet the dead server.
AFTER_KILL_SECONDS = 0.15
# Once vaultd is gone the client sees connection-level failures (no vaultd status details).
ALLOWED = BACKEND_FAULT_STATUSES | {TRANSPORT_UNAVAILABLE}


@pytest.fixture(params=["sqlite", "redis"])
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServeProcess]:
    env = clean_env() | {
        "VAULTD_DATA_DIR": str(tmp_path / "data"),
        "VAULTD_BOOTSTRAP_API_KEY": API_KEY,
        "VAULTD_LOG_LEVEL": "warning",
    }
    redis: RedisServer | None = None
    if request.param == "redis":
        redis = RedisServer(tmp_path / "redis", extra_args=DURABLE)
        redis.start()
        env["VAULTD_REDIS_URL"] = redis.url
    process = ServeProcess(tmp_path, env)
    try:
        yield process
    finally:
        process.stop()
        if redis is not None:
            redis.stop()


async def _serving(process: ServeProcess) -> grpc.aio.Channel:
    target = await asyncio.to_thread(process.start)
    try:
        return await wait_serving(target, attempts=START_ATTEMPTS)
    except AssertionError:
        raise AssertionError(f"vaultd did not start; its log:\n{process.log_tail()}") from None


async def test_sigkill_in_a_burst_of_writes(
    served: ServeProcess, fault_report: FaultReport
) -> None:
    with fault_report.timed("start"):
        channel = await _serving(served)
    load = Load(
        channel,
        fault_report,
        prefix=f"sigkill-{uuid.uuid4().hex[:8]}",
        workers=WORKERS,
        create_share=0.5,
        pause_after_failure=0.02,
    )
    try:
        async with load.running():
            load.phase = "burst"
            began = time.monotonic()
            await load.wait_until(
                f"{ACKS_BEFORE_KILL} writes acknowledged",
                lambda: load.acked("burst") >= ACKS_BEFORE_KILL,
                BURST_WITHIN_SECONDS,
            )
            in_flight = load.in_flight
            served.kill()
            fault_report.note("burst s", round(time.monotonic() - began, 2))
            load.phase = "killed"
            await asyncio.sleep(AFTER_KILL_SECONDS)
    finally:
        await channel.close()
    fault_report.note("calls in flight at SIGKILL", in_flight)

    with fault_report.timed("restart"):
        channel = await _serving(served)
    try:
        with fault_report.timed("verify"):
            violations = await Verifier(channel, fault_report).verify(load.tracked)
    finally:
        await channel.close()

    assert not violations, "\n".join(violations[:30])
    assert in_flight > 0, "nothing was in flight when vaultd was killed"
    assert load.seen("killed")[TRANSPORT_UNAVAILABLE] > 0, dict(load.seen("killed"))
    fault_report.assert_statuses(ALLOWED)
