"""A KEK that only the old primary ever had must never wrap an acknowledged write.

The sequence an independent fault run found (issue 13), on Redis with `wait_replicas=1`:

1. the replica stops replicating (frozen with SIGSTOP, its replication link cut by the primary,
   so nothing written from then on is on its way to it);
2. a create in a new key context fails UNAVAILABLE, but its new KEK reached the primary;
3. another create in that context reads the KEK back from the primary (and, before the fix,
   cached it) and fails UNAVAILABLE too;
4. the primary dies and the replica, which never got the KEK, is promoted: by hand (an operator
   runs REPLICAOF NO ONE and moves the service address, here a TCP proxy) or by Sentinel;
5. the old primary comes back as a replica of the new one, so writes can be confirmed again;
6. creates in that context are acknowledged; then the KEK cache expires (cleared here) and more
   are acknowledged.

Every acknowledged write must read back with its value: in the same process, and from a new
vaultd process started on the same store. Before the fix, the writes of step 6 were wrapped under
the KEK cached in step 3, which the promoted store never had; after the cache expired a new KEK
version 1 with other key bytes was made, and they read DECRYPTION_FAILED for ever.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import pytest

from testkit.fault_load import API_KEY, AUTH, BACKEND_UNAVAILABLE, FaultReport, status_name
from testkit.redis_server import RedisServer
from testkit.redis_topologies import RedisSentinelSet
from testkit.slow_proxy import SlowProxy
from vaultd.server import Vaultd, start
from vaultd.settings import Settings
from vaultd.v1 import object_service_pb2 as pb
from vaultd.v1 import object_service_pb2_grpc as pb_grpc

pytestmark = pytest.mark.faults

# AOF with an fsync per write: a restarted primary keeps what it acknowledged.
DURABLE = ["--appendonly", "yes", "--appendfsync", "always", "--repl-diskless-sync-delay", "0"]
WRITES_PER_ROUND = 15
SETTLE_WITHIN_SECONDS = 30.0
CALL_DEADLINE_SECONDS = 5.0


def _cli(port: int, *args: str) -> str:
    return subprocess.run(
        ["redis-cli", "-p", str(port), *args], capture_output=True, text=True, timeout=5
    ).stdout


async def _poll(
    what: str, check: Callable[[], bool], within: float = SETTLE_WITHIN_SECONDS
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while loop.time() < deadline:
        if await asyncio.to_thread(check):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{what}: not within {within}s")


def _replica_in_sync(port: int) -> Callable[[], bool]:
    return lambda: "master_link_status:up" in _cli(port, "info", "replication")


def _has_replica(port: int) -> Callable[[], bool]:
    def check() -> bool:
        info = _cli(port, "info", "replication")
        return "role:master" in info and "connected_slaves:1" in info and "online" in info

    return check


class Scenario:
    """Drives creates through one vaultd and remembers what it acknowledged."""

    def __init__(self, report: FaultReport) -> None:
        self.report = report
        self.context = {"organization_id": f"org_failover_{uuid.uuid4().hex[:8]}"}
        self.acknowledged: dict[str, bytes] = {}  # object id -> value

    async def create(
        self, channel: grpc.aio.Channel, label: str, context: dict[str, str] | None = None
    ) -> str:
        """One create (in the scenario's context unless told); its status (OK, CODE/REASON)."""
        value = os.urandom(24)
        name = f"{label}-{uuid.uuid4().hex[:12]}"
        try:
            reply = await pb_grpc.ObjectServiceStub(channel).CreateObject(
                pb.CreateObjectRequest(name=name, value=value, key_context=context or self.context),
                metadata=AUTH,
                timeout=CALL_DEADLINE_SECONDS,
            )
        except grpc.aio.AioRpcError as error:
            status = status_name(error)
        else:
            status = "OK"
            self.acknowledged[reply.metadata.id] = value
            self.report.writes_acknowledged += 1
        self.report.statuses[status] += 1
        return status

    async def acknowledged_creates(self, channel: grpc.aio.Channel, label: str, n: int) -> None:
        """`n` acknowledged creates, retrying those refused while the store settles."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SETTLE_WITHIN_SECONDS
        done = 0
        while done < n:
            assert loop.time() < deadline, f"{label}: {done} of {n} creates acknowledged"
            if await self.create(channel, label) == "OK":
                done += 1
            else:
                await asyncio.sleep(0.1)

    async def unreadable(self, channel: grpc.aio.Channel) -> list[str]:
        """Every acknowledged object that does not read back with its value."""
        stub = pb_grpc.ObjectServiceStub(channel)
        lost: list[str] = []
        for object_id, value in self.acknowledged.items():
            try:
                reply = await stub.GetObject(
                    pb.GetObjectRequest(id=object_id), metadata=AUTH, timeout=CALL_DEADLINE_SECONDS
                )
            except grpc.aio.AioRpcError as error:
                lost.append(f"{object_id}: {status_name(error)}")
                continue
            if reply.object.value != value:
                lost.append(f"{object_id}: another value")
            else:
                self.report.writes_verified += 1
        return lost


def _settings(redis_url: str, data_dir: Path) -> Settings:
    return Settings(
        listen="127.0.0.1:0",
        data_dir=data_dir,
        redis_url=redis_url,
        bootstrap_api_key=API_KEY,
        log_level="error",
    )


@asynccontextmanager
async def _serving(settings: Settings) -> AsyncIterator[tuple[Vaultd, grpc.aio.Channel]]:
    vaultd = await start(settings)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{vaultd.port}") as channel:
            yield vaultd, channel
    finally:
        await vaultd.stop(None)


async def _run(
    report: FaultReport,
    settings: Settings,
    freeze_replica: Callable[[], None],
    fail_over: Callable[[], Awaitable[None]],
) -> None:
    """Steps 1-6 of the module docstring, then the checks in this process and a new one."""
    scenario = Scenario(report)
    async with _serving(settings) as (vaultd, channel):
        # A healthy start, in another context: the scenario's context has no KEK yet.
        warm_up = {"organization_id": f"org_warm_up_{uuid.uuid4().hex[:8]}"}
        assert await scenario.create(channel, "warm-up", warm_up) == "OK"

        freeze_replica()
        assert await scenario.create(channel, "new-context") == BACKEND_UNAVAILABLE
        assert await scenario.create(channel, "kek-on-old-primary") == BACKEND_UNAVAILABLE

        with report.timed("failover"):
            await fail_over()

        await scenario.acknowledged_creates(channel, "after-failover", WRITES_PER_ROUND)
        vaultd.keyring.cache.clear()  # the KEK cache expires
        await scenario.acknowledged_creates(channel, "after-expiry", WRITES_PER_ROUND)
        lost_here = await scenario.unreadable(channel)

    async with _serving(settings) as (_, channel):
        lost_after_restart = await scenario.unreadable(channel)

    report.note("acknowledged", len(scenario.acknowledged))
    report.note("lost in the same process", len(lost_here))
    report.note("lost after a restart", len(lost_after_restart))
    assert not lost_here, "unreadable in the same process:\n" + "\n".join(lost_here)
    assert not lost_after_restart, "unreadable after a restart:\n" + "\n".join(lost_after_restart)
    assert len(scenario.acknowledged) == 2 * WRITES_PER_ROUND + 1


def _detach(replica: RedisServer, primary: RedisServer) -> None:
    """Stop replication dead: freeze the replica, then have the primary drop its link. (Only
    freezing it leaves the link up, and what the kernel buffers for it arrives on a thaw.)"""
    os.kill(replica.pid, signal.SIGSTOP)
    _cli(primary.port, "client", "kill", "type", "replica")
    assert "connected_slaves:0" in _cli(primary.port, "info", "replication")


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[RedisServer, RedisServer]]:
    primary = RedisServer(tmp_path / "primary", extra_args=DURABLE)
    primary.start()
    replica = RedisServer(
        tmp_path / "replica",
        extra_args=[*DURABLE, "--replicaof", "127.0.0.1", str(primary.port)],
    )
    replica.start()
    try:
        yield primary, replica
    finally:
        for server in (primary, replica):
            if server.running:
                os.kill(server.pid, signal.SIGCONT)
                server.stop()


async def test_a_kek_only_the_old_primary_had_strands_no_write_after_promotion_by_hand(
    pair: tuple[RedisServer, RedisServer], tmp_path: Path, fault_report: FaultReport
) -> None:
    primary, replica = pair
    await _poll("the replica syncs", _replica_in_sync(replica.port))
    # The service address the operator moves: vaultd reaches Redis through it.
    proxy = SlowProxy(primary.port)
    await proxy.start()
    settings = _settings(f"redis://127.0.0.1:{proxy.port}/0?wait_replicas=1", tmp_path / "vaultd")

    async def promote_by_hand() -> None:
        primary.kill()
        os.kill(replica.pid, signal.SIGCONT)
        await asyncio.to_thread(_cli, replica.port, "replicaof", "no", "one")
        proxy.upstream_port = replica.port
        primary.extra_args += ["--replicaof", "127.0.0.1", str(replica.port)]
        await asyncio.to_thread(primary.start)
        await _poll("the old primary rejoins as a replica", _has_replica(replica.port))

    try:
        await _run(fault_report, settings, lambda: _detach(replica, primary), promote_by_hand)
    finally:
        await proxy.close()


async def test_a_kek_only_the_old_primary_had_strands_no_write_after_a_sentinel_failover(
    tmp_path: Path, fault_report: FaultReport
) -> None:
    with RedisSentinelSet(tmp_path / "sentinel", extra_args=DURABLE) as sentinel:
        assert sentinel.replica is not None
        replica, primary = sentinel.replica, sentinel.master
        settings = _settings(sentinel.url, tmp_path / "vaultd")  # wait_replicas=1 by default

        async def sentinel_fails_over() -> None:
            primary.kill()
            os.kill(replica.pid, signal.SIGCONT)
            await _poll(
                "the sentinel promotes the replica",
                lambda: sentinel.current_master_port() == replica.port,
            )
            await asyncio.to_thread(
                _cli, replica.port, "config", "set", "repl-diskless-sync-delay", "0"
            )
            primary.extra_args += ["--replicaof", "127.0.0.1", str(replica.port)]
            await asyncio.to_thread(primary.start)
            await _poll("the old primary rejoins as a replica", _has_replica(replica.port))

        try:
            await _run(
                fault_report,
                settings,
                lambda: _detach(replica, primary),
                sentinel_fails_over,
            )
        finally:
            if replica.running:
                os.kill(replica.pid, signal.SIGCONT)
