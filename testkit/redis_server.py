"""A private redis-server for tests, on a free loopback port: never the system one on 6379."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

START_TIMEOUT_SECONDS = 10.0
STOP_TIMEOUT_SECONDS = 10.0


PERSISTENT_ARGS = ("--appendonly", "yes", "--appendfsync", "no")
"""An AOF, as vaultd requires of a Redis it serves: what a killed or stopped server acknowledged
comes back on restart (the OS, not an fsync per write, takes it to disk: tests are not about
power cuts)."""
VOLATILE_ARGS = ("--appendonly", "no")
"""Redis keeping nothing: a restart comes back empty (vaultd refuses it unless told)."""


class RedisServer:
    """Starts, stops, kills and restarts its own redis-server in `directory`.

    The port is chosen on the first start and kept, so a restarted server answers at the same
    `url` and clients made before the restart can reconnect. It logs to an AOF unless made with
    `persistent=False`; it never takes RDB snapshots.
    """

    def __init__(
        self,
        directory: Path,
        binary: str | None = None,
        extra_args: Sequence[str] = (),
        *,
        persistent: bool = True,
    ) -> None:
        found = binary or shutil.which("redis-server")
        if found is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.binary = found
        self.directory = directory
        self.extra_args = [*(PERSISTENT_ARGS if persistent else VOLATILE_ARGS), *extra_args]
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        if not self.port:
            raise RuntimeError("the server has not been started")
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        """The server's process id, e.g. to freeze it (SIGSTOP) and thaw it (SIGCONT)."""
        if self._process is None:
            raise RuntimeError("the server is not running")
        return self._process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        if self._process is not None:
            raise RuntimeError("the server is already running")
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = self.port or _free_port()
        with open(self.directory / "redis.log", "ab") as log:
            self._process = subprocess.Popen(
                [
                    self.binary,
                    "--port", str(self.port),
                    "--bind", "127.0.0.1",
                    "--save", "",
                    "--dir", str(self.directory),
                    *self.extra_args,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        self._wait_until_ready()

    def stop(self) -> None:
        """SIGTERM: a clean shutdown (nothing is saved)."""
        self._end(kill=False)

    def kill(self) -> None:
        """SIGKILL: the server vanishes mid-whatever, as in a crash."""
        self._end(kill=True)

    def restart(self) -> None:
        if self._process is not None:
            self.stop()
        self.start()

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._process is not None:
            self.stop()

    def _end(self, *, kill: bool) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if kill:
            process.kill()
        else:
            process.terminate()
        try:
            process.wait(STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def _wait_until_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                self._process = None
                log = (self.directory / "redis.log").read_text(errors="replace")
                raise RuntimeError(f"redis-server exited at start:\n{log[-2000:]}")
            if _answers_ping(self.port):
                return
            time.sleep(0.01)
        self.kill()
        raise RuntimeError(f"redis-server did not answer PING within {START_TIMEOUT_SECONDS}s")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False
