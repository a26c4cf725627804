"""`vaultd serve --workers N`: one port, N processes, and SIGTERM drains every one of them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from testkit.redis_server import RedisServer
from testkit.serving import VAULTD, clean_env, free_port, scrape
from vaultd.core.apikeys import new_secret
from vaultd.settings import Settings
from vaultd.v1 import object_service_pb2 as pb
from vaultd.v1 import object_service_pb2_grpc as pb_grpc
from vaultd.workers import worker_settings

CALLS = 100
CHANNELS = 20  # connections: the kernel picks a worker per connection, not per call
# Every wait is bounded, generously for a loaded machine; none asserts how long anything took.
WAIT_SECONDS = 60.0


class _Stderr:
    """Collects a process's stderr lines in a thread, so the test can read them as it goes."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        assert proc.stderr is not None
        stream = proc.stderr
        threading.Thread(target=lambda: self.lines.extend(stream), daemon=True).start()

    def json(self) -> list[dict[str, object]]:
        parsed = []
        for line in list(self.lines):
            # Not JSON: e.g. a traceback from a crashed worker, shown on failure via `text`.
            with contextlib.suppress(json.JSONDecodeError):
                parsed.append(json.loads(line))
        return parsed

    @property
    def text(self) -> str:
        return "".join(self.lines)


async def _until(condition: Callable[[], bool], what: str, stderr: _Stderr) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        if await asyncio.to_thread(condition):  # scrapes and probes block: off the event loop
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"gave up waiting for {what}\n{stderr.text}")


@pytest.mark.parametrize("workers", [1, 2])
async def test_sigterm_drains_100_calls_in_flight_in_every_worker(
    workers: int, tmp_path: Path
) -> None:
    api_key = new_secret()
    auth = ("authorization", f"Bearer {api_key}")
    port, metrics_port = free_port(), _free_ports(workers)
    metrics_ports = [metrics_port + k for k in range(workers)]
    with RedisServer(tmp_path / "redis") as redis:
        # Calls will wait on a frozen Redis; give its replies longer than the 5 s default.
        redis_url = f"{redis.url}?socket_timeout=120"
        proc = _serve(
            ["--workers", str(workers), "--listen", f"127.0.0.1:{port}", "--redis-url", redis_url,
             "--metrics-listen", f"127.0.0.1:{metrics_port}", "--data-dir", str(tmp_path)],
            # Calls must stay in flight on the frozen Redis, not time out in the store.
            {"VAULTD_BOOTSTRAP_API_KEY": api_key, "VAULTD_STORE_TIMEOUT_SECONDS": "120"},
        )  # fmt: skip
        stderr = _Stderr(proc)
        # Separate connections: grpc would otherwise share one between channels.
        channels = [
            grpc.aio.insecure_channel(
                f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)]
            )
            for _ in range(CHANNELS)
        ]
        try:
            await _until(lambda: _health(port) == "SERVING", "vaultd to serve", stderr)
            # Each worker serves its metrics once it has bound the gRPC port.
            await _until(lambda: all(_answers(p) for p in metrics_ports), "every worker", stderr)
            stubs = [pb_grpc.ObjectServiceStub(channel) for channel in channels]
            created = await stubs[0].CreateObject(
                pb.CreateObjectRequest(name="drained", value=b"v", key_context={"org": "o"}),
                metadata=[auth],
            )

            # With Redis frozen, every call stays in flight inside a worker.
            os.kill(redis.pid, signal.SIGSTOP)
            replies = asyncio.gather(
                *(
                    stubs[i % CHANNELS].GetObject(
                        pb.GetObjectRequest(id=created.metadata.id),
                        metadata=[auth, ("x-request-id", f"drain-{i}")],
                        timeout=WAIT_SECONDS * 2,
                    )
                    for i in range(CALLS)
                )
            )
            await _until(lambda: sum(_in_flight(metrics_ports)) == CALLS, "calls in flight", stderr)
            assert all(n > 0 for n in _in_flight(metrics_ports)), "every worker holds calls"

            proc.send_signal(signal.SIGTERM)
            # A new connection is refused only once every worker has closed its listener,
            # i.e. is draining: only then may the frozen calls go on.
            await _until(lambda: _health(port) == "UNAVAILABLE", "no worker listening", stderr)
            os.kill(redis.pid, signal.SIGCONT)

            answered = await replies
            assert [r.object.value for r in answered] == [b"v"] * CALLS
            assert await asyncio.to_thread(proc.wait, WAIT_SECONDS) == 0, stderr.text
        finally:
            os.kill(redis.pid, signal.SIGCONT)
            for channel in channels:
                await channel.close()
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    # Which process answered each call: its access log line, found by request id.
    answers = [
        line for line in stderr.json() if str(line.get("request_id", "")).startswith("drain-")
    ]
    assert len(answers) == CALLS and all(line["code"] == "OK" for line in answers)
    pids = {line["pid"] for line in answers}
    assert len(pids) == workers, stderr.text
    if workers > 1:
        assert proc.pid not in pids, "the parent only supervises"


@pytest.mark.parametrize("when", ["starting", "serving"])
async def test_a_dead_worker_takes_the_server_down_and_none_serves_alone(
    when: str, tmp_path: Path
) -> None:
    """Killed before every worker listens, no worker ever answers SERVING; killed later, the
    parent stops the rest and exits 1 with a line naming it: never a half-capacity server."""
    port = free_port()
    with RedisServer(tmp_path / "redis") as redis:
        proc = _serve(
            ["--workers", "2", "--listen", f"127.0.0.1:{port}", "--redis-url", redis.url,
             "--data-dir", str(tmp_path)],
            {"VAULTD_BOOTSTRAP_API_KEY": new_secret()},
        )  # fmt: skip
        stderr = _Stderr(proc)
        try:
            await _until(lambda: bool(_worker_pids(stderr)), "the workers to start", stderr)
            victim = _worker_pids(stderr)[0]
            seen: set[str] = set()
            if when == "serving":
                await _until(lambda: _health(port) == "SERVING", "vaultd to serve", stderr)
            os.kill(victim, signal.SIGKILL)
            while proc.poll() is None:
                seen.add(await asyncio.to_thread(_health, port))
                await asyncio.sleep(0.05)
            assert proc.wait() == 1
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    if when == "starting":
        assert "SERVING" not in seen, seen
    died = [
        line
        for line in stderr.json()
        if str(line.get("msg", "")).startswith(f"worker pid {victim}")
    ]
    assert died and "exited with code -9; stopping the others" in str(died[0]["msg"]), stderr.text


def _worker_pids(stderr: _Stderr) -> list[int]:
    for line in stderr.json():
        message = str(line.get("msg", ""))
        if message.startswith("started 2 workers (pids "):
            return [int(pid) for pid in message.split("(pids ")[1].rstrip(")").split(", ")]
    return []


def _serve(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(VAULTD), "serve", *args],
        env={**clean_env(), **env},
        stderr=subprocess.PIPE,
        text=True,
    )


def _free_ports(count: int) -> int:
    """A port p with p .. p + count - 1 all free: the metrics ports of `count` workers."""
    for _ in range(50):
        first = free_port()
        with contextlib.ExitStack() as stack:
            try:
                for port in range(first + 1, first + count):
                    stack.enter_context(socket.socket()).bind(("127.0.0.1", port))
            except OSError:
                continue
        return first
    raise AssertionError(f"no {count} adjacent free ports")


def _answers(port: int) -> bool:
    try:
        scrape(port)
        return True
    except OSError:
        return False


def _in_flight(ports: list[int]) -> list[float]:
    try:
        return [scrape(port).get(("vaultd_rpc_in_flight", frozenset()), 0.0) for port in ports]
    except OSError:
        return [0.0 for _ in ports]


def _health(port: int) -> str:
    """The health status a call on a new connection gets, or its error code: UNAVAILABLE
    when no worker listens any more."""
    options = [("grpc.use_local_subchannel_pool", 1)]
    with grpc.insecure_channel(f"127.0.0.1:{port}", options=options) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=1
            )
        except grpc.RpcError as exc:
            return str(exc.code().name)
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


def test_several_workers_need_a_fixed_port(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(VAULTD), "serve", "--workers", "2", "--listen", "127.0.0.1:0"],
        cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "--workers needs a fixed port" in result.stderr


def test_each_worker_serves_metrics_on_its_own_port() -> None:
    settings = Settings(listen="0.0.0.0:50051", workers=3, metrics_listen="[::1]:9100")
    assert [worker_settings(settings, k).metrics_listen for k in range(3)] == [
        "[::1]:9100",
        "[::1]:9101",
        "[::1]:9102",
    ]
    assert worker_settings(Settings(workers=2), 1).metrics_listen is None
