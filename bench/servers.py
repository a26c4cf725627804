"""The gRPC servers under test, each started as `vaultd serve` would be run by an operator:
vaultd itself (embedded or Redis store) and the transport floor (bench.floor_server).
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.procs import Child, free_port
from vaultd.settings import Settings

START_TIMEOUT_SECONDS = 60.0
LISTENING_LINE = "vaultd listening"


def vaultd_command() -> list[str]:
    """`vaultd` from this venv (what an operator runs), else the same main through -m."""
    script = Path(sys.executable).parent / "vaultd"
    return [str(script)] if script.exists() else [sys.executable, "-m", "vaultd.cli"]


def serve_supports_workers() -> bool:
    """Whether this vaultd has `serve --workers` yet (issue: TLS/metrics/workers)."""
    out = subprocess.run(
        [*vaultd_command(), "serve", "--help"], capture_output=True, text=True, check=False
    )
    return "--workers" in out.stdout


def new_api_key() -> str | None:
    """A bootstrap key of the shape vaultd accepts, when this vaultd has API keys at all."""
    if "bootstrap_api_key" not in Settings.model_fields:
        return None
    return "sk_" + secrets.token_urlsafe(32)


@dataclass
class VaultdServer:
    """One `vaultd serve` (with `workers` processes) in its own data directory."""

    directory: Path
    workers: int = 1
    redis_url: str | None = None
    config: dict[str, object] | None = None
    api_key: str | None = None
    prefix: list[str] = field(default_factory=list)
    """Run under this command (e.g. valgrind and its options)."""
    port: int = field(default_factory=free_port)
    _child: Child | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        argv = [
            *self.prefix,
            *vaultd_command(),
            "serve",
            "--listen", self.target,
            "--data-dir", str(self.directory / "data"),
        ]  # fmt: skip
        if self.redis_url:
            argv += ["--redis-url", self.redis_url]
        if self.workers > 1:
            argv += ["--workers", str(self.workers)]
        if self.config:
            config_file = self.directory / "vaultd.yaml"
            config_file.write_text(json.dumps(self.config))  # JSON is YAML
            argv += ["--config", str(config_file)]
        env = {"VAULTD_BOOTSTRAP_API_KEY": self.api_key} if self.api_key else {}
        log_path = self.directory / "vaultd.log"
        log_path.unlink(missing_ok=True)
        self._child = Child(argv, log_path, env)
        self._child.wait_for_port(self.port, START_TIMEOUT_SECONDS)
        self._wait_for_workers(log_path)

    def _wait_for_workers(self, log_path: Path) -> None:
        # The port answers once the first worker listens; the others may still be starting,
        # and until they do the kernel gives them no connections.
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            text = log_path.read_text(errors="replace")
            if text.count(LISTENING_LINE) >= self.workers:
                return
            time.sleep(0.1)
        raise RuntimeError(f"vaultd: {self.workers} workers did not all start:\n{text[-2000:]}")

    def stop(self) -> None:
        if self._child is not None:
            self._child.stop()
            self._child = None

    def restart(self) -> None:
        """Same port, same data: a cold KEK cache over a warm store."""
        self.stop()
        self.start()

    @property
    def pids(self) -> list[int]:
        return [self._child.pid] if self._child else []


@dataclass
class FloorServer:
    """The transport floor: `workers` processes of bench.floor_server sharing one port."""

    directory: Path
    answers_file: Path
    workers: int = 1
    prefix: list[str] = field(default_factory=list)
    port: int = field(default_factory=free_port)
    _children: list[Child] = field(default_factory=list)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        for index in range(self.workers):
            child = Child(
                [
                    *self.prefix,
                    sys.executable, "-m", "bench.floor_server",
                    "--listen", self.target,
                    "--answers", str(self.answers_file),
                ],
                self.directory / f"floor-{index}.log",
                cwd=Path(__file__).resolve().parent.parent,
            )  # fmt: skip
            self._children.append(child)
            child.wait_for_port(self.port, START_TIMEOUT_SECONDS)
        # Each process logs once it listens; wait for all so the kernel spreads over all.
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if all("listening" in c.log_tail() for c in self._children):
                return
            time.sleep(0.05)
        raise RuntimeError("transport floor: not every process started")

    def stop(self) -> None:
        for child in self._children:
            child.stop()
        self._children = []

    @property
    def pids(self) -> list[int]:
        return [child.pid for child in self._children]


def redis_available() -> bool:
    return shutil.which("redis-server") is not None
