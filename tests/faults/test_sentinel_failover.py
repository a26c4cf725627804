"""Sentinel failover under load: the master is killed, the sentinel promotes the replica.

vaultd runs on the redis+sentinel:// URL, whose writes are acknowledged only once a replica
confirms them (wait_replicas defaults to 1 there). So every acknowledged write must be on the
replica the sentinel promotes; the test looks for each one there, in the store itself, while the
promoted replica is the only Redis alive. (Not through vaultd: every call, reads too, stores an
audit event, and with no replica to confirm it vaultd rightly answers UNAVAILABLE.) While the
master is gone, and while the promoted replica has no replica of its own, writes must fail
UNAVAILABLE and never be acknowledged. Once the old master is back, empty, as a replica of the
new master, the same vaultd process writes again, and everything is read back through it, from
data that can only have come from the promoted replica.
"""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import grpc
import pytest

from testkit.fault_load import (
    API_KEY,
    BACKEND_FAULT_STATUSES,
    BACKEND_UNAVAILABLE,
    FaultReport,
    Load,
    Tracked,
    Verifier,
)
from testkit.redis_topologies import RedisSentinelSet
from vaultd.server import Vaultd, start
from vaultd.settings import Settings
from vaultd.storage import RedisStore

pytestmark = pytest.mark.faults

HEALTHY_SECONDS = 1.5
# down-after is 1 s (redis_topologies.py); the election and promotion take a few more.
FAILOVER_WITHIN_SECONDS = 20.0
# Longer than vaultd's replica wait (REPLICA_TIMEOUT_MS, 2 s), so writes on the promoted replica
# alone run into it and must come back unavailable.
ALONE_SECONDS = 2.5
REJOIN_WITHIN_SECONDS = 20.0
ACKS_AFTER_REJOIN = 20


def _cli(port: int, *args: str) -> str:
    return subprocess.run(
        ["redis-cli", "-p", str(port), *args], capture_output=True, text=True, timeout=5
    ).stdout


@pytest.fixture
def sentinel_set(tmp_path: Path) -> Iterator[RedisSentinelSet]:
    """A private set: this test kills its master, which the session's shared set must not see."""
    with RedisSentinelSet(tmp_path / "sentinel") as sentinel:
        yield sentinel


@pytest.fixture
async def vaultd_on(sentinel_set: RedisSentinelSet, tmp_path: Path) -> AsyncIterator[Vaultd]:
    settings = Settings(
        listen="127.0.0.1:0",
        data_dir=tmp_path / "vaultd",
        redis_url=sentinel_set.url,
        bootstrap_api_key=API_KEY,
        log_level="error",
    )
    vaultd = await start(settings)
    yield vaultd
    await vaultd.stop(None)


async def _poll(what: str, check: Callable[[], bool], within: float) -> None:
    """Poll a blocking check off the event loop (vaultd serves on it meanwhile), bounded."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while loop.time() < deadline:
        if await asyncio.to_thread(check):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{what}: not within {within}s")


async def _missing_on(url: str, environment_id: str, tracked: list[Tracked]) -> list[str]:
    """Every acknowledged version the store at `url` does not hold."""
    store = RedisStore.from_url(url)
    missing: list[str] = []
    try:
        for t in tracked:
            for write in t.acked:
                assert t.object_id is not None
                found = await store.get_object_version(
                    environment_id, t.object_id, write.version_id
                )
                if found is None:
                    missing.append(f"{t.name} {write.version_id}")
    finally:
        await store.close()
    return missing


async def test_sentinel_failover_under_load(
    sentinel_set: RedisSentinelSet, vaultd_on: Vaultd, fault_report: FaultReport
) -> None:
    assert sentinel_set.replica is not None
    replica = sentinel_set.replica
    old_master = sentinel_set.master

    def promoted() -> bool:
        return sentinel_set.current_master_port() == replica.port

    def rejoined() -> bool:
        info = _cli(replica.port, "info", "replication")
        return "role:master" in info and "connected_slaves:1" in info and "online" in info

    async with grpc.aio.insecure_channel(f"127.0.0.1:{vaultd_on.port}") as channel:
        load = Load(channel, fault_report, prefix=f"failover-{uuid.uuid4().hex[:8]}")
        verifier = Verifier(channel, fault_report)
        async with load.running():
            load.phase = "healthy"
            await asyncio.sleep(HEALTHY_SECONDS)

            load.phase = "failover"
            with fault_report.timed("failover"):
                old_master.kill()
                await _poll("the sentinel promotes the replica", promoted, FAILOVER_WITHIN_SECONDS)

            load.phase = "alone"
            await asyncio.sleep(ALONE_SECONDS)

        # The old master is dead: the promoted replica is the only copy of the data.
        assert await asyncio.to_thread(promoted) and not old_master.running
        (environment_id,) = load.environment_ids
        with fault_report.timed("check on the promoted replica"):
            missing = await _missing_on(replica.url, environment_id, load.tracked)
        fault_report.note(
            "acknowledged writes found on the promoted replica",
            sum(len(t.acked) for t in load.tracked) - len(missing),
        )

        # The old master comes back empty, as a replica of the new one, as an operator would
        # start it. (Left to itself the sentinel converts it too, but only once it has reported
        # the wrong role for 8 s.) No 5 s diskless-sync delay before its first sync: test speed.
        with fault_report.timed("rejoin"):
            await asyncio.to_thread(
                _cli, replica.port, "config", "set", "repl-diskless-sync-delay", "0"
            )
            old_master.extra_args += ["--replicaof", "127.0.0.1", str(replica.port)]
            await asyncio.to_thread(old_master.start)
            await _poll("the old master rejoins as a replica", rejoined, REJOIN_WITHIN_SECONDS)
        with fault_report.timed("load after rejoin"):
            async with load.running():
                load.phase = "rejoined"
                await load.wait_until(
                    f"{ACKS_AFTER_REJOIN} writes acknowledged with a replica again",
                    lambda: load.acked("rejoined") >= ACKS_AFTER_REJOIN,
                    REJOIN_WITHIN_SECONDS,
                )
        with fault_report.timed("verify"):
            after_rejoin = await verifier.verify(load.tracked)

    assert not missing, "acknowledged, not on the promoted replica:\n" + "\n".join(missing[:30])
    assert not after_rejoin, "after the old master rejoined:\n" + "\n".join(after_rejoin[:30])
    assert load.acked("healthy") > 0, "the load never got going before the fault"
    unavailable = (
        load.seen("failover")[BACKEND_UNAVAILABLE] + load.seen("alone")[BACKEND_UNAVAILABLE]
    )
    assert unavailable > 0, f"no call saw the failover: {dict(load.by_phase)}"
    # wait_replicas=1 with no replica alive: nothing may be acknowledged.
    assert load.acked("alone") == 0, "writes acknowledged with no replica to confirm them"
    fault_report.assert_statuses(BACKEND_FAULT_STATUSES)
