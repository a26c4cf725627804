"""Running `vaultd serve` as a separate process, as operators do, and waiting for it."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

VAULTD = Path(sys.executable).parent / "vaultd"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env() -> dict[str, str]:
    """This process's environment without any VAULTD_* variable a developer may have set."""
    return {k: v for k, v in os.environ.items() if not k.startswith("VAULTD_")}


async def wait_serving(target: str, attempts: int = 100) -> grpc.aio.Channel:
    """A channel to `target` once its health service says SERVING (at most ~attempts/10 s)."""
    channel = grpc.aio.insecure_channel(target)
    health = health_pb2_grpc.HealthStub(channel)
    for _ in range(attempts):
        try:
            reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=1)
            if reply.status == health_pb2.HealthCheckResponse.SERVING:
                return channel
        except grpc.aio.AioRpcError:
            pass
        await asyncio.sleep(0.1)
    await channel.close()
    raise AssertionError(f"vaultd at {target} did not become healthy")


class ServeProcess:
    """`vaultd serve` on a fresh port per start, with its log kept in a file for failures."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.workdir = workdir
        self.env = env
        self.port = 0
        self.starts = 0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.workdir / f"vaultd-{self.starts}.log"

    def start(self) -> str:
        self.starts += 1
        self.port = free_port()
        env = self.env | {"VAULTD_LISTEN": f"127.0.0.1:{self.port}"}
        with open(self.log, "wb") as log:
            self._process = subprocess.Popen(
                [str(VAULTD), "serve"], cwd=self.workdir, env=env, stdout=log, stderr=log
            )
        return f"127.0.0.1:{self.port}"

    def kill(self) -> None:
        assert self._process is not None and self._process.poll() is None, "vaultd is not up"
        os.kill(self._process.pid, signal.SIGKILL)
        self._process.wait(10)
        self._process = None

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(port: int) -> Samples:
    """Every sample on http://127.0.0.1:port/metrics, by (name, labels)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
