"""CPU time per call: `python -m bench.cpu_per_call --rpc GetObject --store redis`.

Requests per second swing with whatever else the machine runs; the CPU time vaultd's process
spends per call much less so, which makes this the better before/after measure on a shared
machine. One `vaultd serve` (1 worker), the harness's fixture, h2load sending `--calls` calls of
the RPC's fixed body (after a discarded warm-up of 1,000), and from /proc: the CPU seconds of
vaultd (all its threads) and of redis-server over the measured calls, divided by the calls.
With Redis it also reports Redis's socket reads per call (INFO stats total_reads_processed):
about the round trips a call costs, since pipelined commands arrive in one read.
Every answer is checked as in the harness (2xx, and DATA bytes of real answers, no errors).

Two floors measured the same way, to say what share of vaultd's CPU is its own:
- the transport floor (bench.floor_server answering with vaultd's recorded answer): what gRPC
  costs per call before any work;
- the backend floor (bench.backend_floor, in this process, 32 tasks): the storage and crypto
  work the RPC needs at the least, without gRPC.
Their sum is about what any implementation of the RPC on this stack pays per call, so it says
roughly how near the transport floor one could come. An estimate, not a bound: the backend
floor sends each call's commands on their own, where vaultd shares round trips between calls.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import grpc

from bench import h2load
from bench.backend_floor import BackendFloor, FloorStore, RedisFloorStore, SqliteFloorStore
from bench.floor_server import write_answers
from bench.loadgen import closed_loop
from bench.servers import FloorServer, VaultdServer, new_api_key
from bench.workload import (
    RPCS,
    Probe,
    Workload,
    auth_metadata,
    canned_answers,
    grpc_frame,
    make_fixture,
    probe,
)

WARMUP_CALLS = 1000
CONCURRENCY = 32  # h2load's 8 connections x 4 streams


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all threads, from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def h2load_calls(
    url: str, body: Path, headers: list[tuple[str, str]], calls: int
) -> h2load.H2Result:
    command = h2load.grpc_command(url, body, headers, connections=8, streams=4, duration=1)
    # A number of calls, not a duration: every run does the same work.
    command = [arg for arg in command if not arg.startswith("--duration=")]
    return asyncio.run(h2load.run([*command[:1], f"--requests={calls}", *command[1:]]))


async def prepare(target: str, rpc: str, api_key: str | None) -> tuple[bytes, Probe]:
    """The RPC's fixed body, and vaultd's checked answer to it."""
    async with grpc.aio.insecure_channel(target) as channel:
        metadata = auth_metadata(api_key)
        fixture = await make_fixture(channel, Workload(orgs=1, objects_per_org=1), metadata)
        found = await probe(channel, fixture, rpc, metadata)
    return fixture.fixed_body(rpc), found


def measured_calls(
    pid: int, url: str, body: Path, headers: list[tuple[str, str]], calls: int
) -> tuple[float, h2load.H2Result]:
    """CPU seconds `pid` spent on `calls` calls, and h2load's result."""
    before = cpu_seconds(pid)
    result = h2load_calls(url, body, headers, calls)
    return cpu_seconds(pid) - before, result


def measure(rpc: str, store: str, calls: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="vaultd-bench-cpu-") as tmp_name:
        tmp = Path(tmp_name)
        redis = None
        if store == "redis":
            from testkit.redis_server import RedisServer

            redis = RedisServer(tmp / "redis")
            (tmp / "redis").mkdir()
            redis.start()
        api_key = new_api_key()
        server = VaultdServer(
            tmp / "vaultd", api_key=api_key, redis_url=redis.url if redis else None
        )
        server.start()
        try:
            body, found = asyncio.run(prepare(server.target, rpc, api_key))
            body_file = tmp / "body"
            body_file.write_bytes(grpc_frame(body))
            headers = list(auth_metadata(api_key))
            (pid,) = server.pids
            url = f"http://{server.target}{RPCS[rpc].path}"
            h2load_calls(url, body_file, headers, WARMUP_CALLS)
            reads_before = _redis_reads(redis.url) if redis else 0
            redis_before = cpu_seconds(redis.pid) if redis else 0.0
            vaultd_cpu, result = measured_calls(pid, url, body_file, headers, calls)
            redis_cpu = cpu_seconds(redis.pid) - redis_before if redis else 0.0
            reads = _redis_reads(redis.url) - reads_before - 1 if redis else 0  # less INFO's
            backend_cpu = asyncio.run(
                _backend_floor_cpu(rpc, redis.url if redis else None, tmp, calls)
            )
        finally:
            server.stop()
            if redis:
                redis.stop()
        floor_cpu, floor_result = _floor_cpu(tmp, rpc, found, body_file, calls)
    frame_range = found.frame_range(RPCS[rpc].fixed_size)
    return {
        "rpc": rpc,
        "store": store,
        "calls": result.succeeded,
        "vaultd_cpu_us_per_call": round(vaultd_cpu / calls * 1e6),
        "floor_cpu_us_per_call": round(floor_cpu / calls * 1e6),
        "backend_floor_cpu_us_per_call": round(backend_cpu / calls * 1e6),
        "redis_cpu_us_per_call": round(redis_cpu / calls * 1e6) if redis else None,
        "redis_reads_per_call": round(reads / calls, 2) if redis else None,
        "calls_per_second": round(result.rps),
        "floor_calls_per_second": round(floor_result.rps),
        "problems": result.problems(frame_range) + floor_result.problems(frame_range),
    }


async def _backend_floor_cpu(rpc: str, redis_url: str | None, tmp: Path, calls: int) -> float:
    """CPU seconds of this process doing `calls` of the RPC's storage and crypto work without
    gRPC (bench.backend_floor: what vaultd must do at the least), from 32 tasks."""
    store: FloorStore = (
        RedisFloorStore(redis_url) if redis_url else SqliteFloorStore(tmp / "floor.sqlite")
    )
    try:
        floor = BackendFloor(Workload(), store)
        await floor.setup()
        call = floor.call(rpc)
        await closed_loop(call, CONCURRENCY, total=WARMUP_CALLS)
        before = time.process_time()
        result = await closed_loop(call, CONCURRENCY, total=calls)
        spent = time.process_time() - before
    finally:
        await store.close()
    if result.errors:
        raise RuntimeError(f"backend floor {rpc}: {result.errors} errors: {result.first_error}")
    return spent


def _floor_cpu(
    tmp: Path, rpc: str, found: Probe, body_file: Path, calls: int
) -> tuple[float, h2load.H2Result]:
    """The same calls against the transport floor answering with vaultd's recorded answer."""
    answers_file = tmp / "floor-answers.json"
    write_answers(answers_file, canned_answers({rpc: found}))
    floor = FloorServer(tmp / "floor", answers_file)
    (tmp / "floor").mkdir()
    floor.start()
    try:
        (pid,) = floor.pids
        url = f"http://{floor.target}{RPCS[rpc].path}"
        h2load_calls(url, body_file, [], WARMUP_CALLS)
        return measured_calls(pid, url, body_file, [], calls)
    finally:
        floor.stop()


def _redis_reads(url: str) -> int:
    from redis import Redis

    with Redis.from_url(url) as client:
        return int(client.info("stats")["total_reads_processed"])


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.cpu_per_call", description=__doc__)
    p.add_argument("--rpc", choices=sorted(set(RPCS) - {"CreateObject"}), default="GetObject")
    p.add_argument("--store", choices=("embedded", "redis"), default="embedded")
    p.add_argument("--calls", type=int, default=3000)
    args = p.parse_args(argv)
    if h2load.binary() is None:
        print("h2load is not installed (apt-get install nghttp2-client)", file=sys.stderr)
        return 2
    result = measure(args.rpc, args.store, args.calls)
    print(json.dumps(result))
    return 1 if result["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
