"""A local Azure Key Vault: the keys REST API's wrap and unwrap over HTTPS on 127.0.0.1.

No Key Vault emulator can be installed, so this speaks just enough of the API for the real
CryptographyClient: the 401 bearer challenge, GET key answered 403 (so the client wraps on the
service instead of fetching the public key), POST wrapkey / unwrapkey doing real RSA-OAEP-256,
key enable/disable, and Key Vault's error JSON. Every request must carry the static token that
StaticTokenCredential hands out. The certificate is made per session for 127.0.0.1.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import re
import ssl
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from azure.core.credentials import AccessToken
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

TOKEN = "vaultd-test-azure-token"
TENANT = "00000000-0000-0000-0000-000000000000"
CHALLENGE = (
    f'Bearer authorization="https://login.microsoftonline.com/{TENANT}", '
    'resource="https://vault.azure.net"'
)
_OAEP = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
# The SDK sends an empty version ("/keys/k//wrapkey") for "the newest version", as Key Vault allows.
_PATH = re.compile(
    r"^/keys/(?P<name>[^/]+)(?:/(?P<version>[^/]*))?(?:/(?P<op>wrapkey|unwrapkey))?$"
)


class StaticTokenCredential:
    """A TokenCredential that always hands out TOKEN, so no call goes to Entra ID."""

    def __init__(self, token: str = TOKEN) -> None:
        self._token = token

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self._token, int(time.time()) + 3600)


@dataclass
class _Key:
    version: str
    private: rsa.RSAPrivateKey
    enabled: bool = True
    older: dict[str, rsa.RSAPrivateKey] = field(default_factory=dict)
    """Versions before the newest, still usable when asked for by version, as in Key Vault."""

    def at(self, version: str | None) -> tuple[str, rsa.RSAPrivateKey] | None:
        if version in (None, "", self.version):
            return self.version, self.private
        if version in self.older:
            return version, self.older[version]
        return None


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.0: one request per connection, so stop() leaves no kept-alive connection serving.
    protocol_version = "HTTP/1.0"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep pytest output clean

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def _handle(self, method: str) -> None:
        vault = self.server.vault
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.headers.get("Authorization") != f"Bearer {vault.token}":
            # Key Vault's challenge: the client learns the tenant and resource from it.
            self._reply(401, None, {"WWW-Authenticate": CHALLENGE})
            return
        url = urlsplit(self.path)
        if "api-version" not in parse_qs(url.query):
            self._reply(400, _error("BadParameter", "api-version is required"))
            return
        match = _PATH.match(url.path)
        if match is None or (method == "POST") != bool(match["op"]):
            self._reply(404, _error("NotFound", f"{method} {url.path} is not served here"))
            return
        if method == "GET":
            # As for an identity without keys/get: the SDK then wraps on the service.
            self._reply(403, _error("Forbidden", "The user does not have keys get permission."))
            return
        if fault := vault.next_fault():
            vault.count("faulted")  # a request that reached the vault, answered with the fault
            self._reply(fault, _error("Throttled" if fault == 429 else "ServiceError", "injected"))
            return
        op = "wrap" if match["op"] == "wrapkey" else "unwrap"
        vault.count(op)
        self._operate(op, match["name"], match["version"], body)

    def _operate(self, op: str, name: str, version: str | None, body: bytes) -> None:
        vault = self.server.vault
        key = vault.keys.get(name)
        found = None if key is None else key.at(version)
        if key is None or found is None:
            self._reply(404, _error("KeyNotFound", f"A key with (name/id) {name} was not found"))
            return
        used_version, private = found
        if not key.enabled:
            self._reply(
                403,
                _error("Forbidden", f"Operation {op}Key is not allowed on a disabled key."),
            )
            return
        request = json.loads(body or b"{}")
        if request.get("alg") != "RSA-OAEP-256" or "value" not in request:
            self._reply(400, _error("BadParameter", "alg must be RSA-OAEP-256, with a value"))
            return
        value = _b64url_decode(request["value"])
        try:
            if op == "wrap":
                result = private.public_key().encrypt(value, _OAEP)
            else:
                result = private.decrypt(value, _OAEP)
        except ValueError:
            self._reply(400, _error("BadParameter", "The parameter value is not valid."))
            return
        kid = f"https://{vault.host}/keys/{name}/{used_version}"
        self._reply(200, {"kid": kid, "value": _b64url_encode(result)})

    def _reply(
        self, status: int, doc: dict[str, Any] | None, headers: dict[str, str] | None = None
    ) -> None:
        data = json.dumps(doc).encode() if doc is not None else b""
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, tls: ssl.SSLContext, vault: AzureKvStandIn) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.tls = tls
        self.vault = vault

    def finish_request(self, request: Any, client_address: Any) -> None:
        # TLS handshake here, in the connection's own thread, not in the accept loop.
        try:
            conn = self.tls.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        with conn:
            _Handler(conn, client_address, self)


class AzureKvStandIn:
    """The StandIn shape (testkit/standins/__init__.py) over a local Key Vault keys API."""

    scheme = "azure-kv"

    def __init__(self, cert_path: Path, key_path: Path, token: str = TOKEN) -> None:
        self.token = token
        self.tls_files = (cert_path, key_path)
        self.credential = StaticTokenCredential(token)
        self.calls: Counter[str] = Counter()
        self.keys: dict[str, _Key] = {}
        self.provider_settings: dict[str, Any] = {
            "connection_verify": str(cert_path),
            # The challenge names vault.azure.net, which 127.0.0.1 is not.
            "verify_challenge_resource": False,
        }
        self._tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._tls.load_cert_chain(cert_path, key_path)
        self._lock = threading.Lock()
        self._faults: list[int] = []
        self._port = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self._port}"

    def create_key(self, name: str) -> str:
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.keys[name] = _Key(version=uuid.uuid4().hex, private=private)
        return f"azure-kv://{self.host}/keys/{name}"

    def import_key(self, name: str, private: rsa.RSAPrivateKey, version: str) -> str:
        """A key with given material and version id (for vectors made elsewhere)."""
        self.keys[name] = _Key(version=version, private=private)
        return f"azure-kv://{self.host}/keys/{name}"

    def rotate(self, key_uri: str) -> str:
        """A new newest version, as Key Vault's rotate does; older versions stay usable by id.
        Returns the new version id."""
        key = self.keys[self._name(key_uri)]
        key.older[key.version] = key.private
        key.version = uuid.uuid4().hex
        key.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return key.version

    def revoke(self, key_uri: str) -> None:
        self.keys[self._name(key_uri)].enabled = False

    def restore(self, key_uri: str) -> None:
        self.keys[self._name(key_uri)].enabled = True

    def inject_faults(self, *statuses: int) -> None:
        """Answer the next authenticated wraps/unwraps with these statuses (429, 503, ...)."""
        with self._lock:
            self._faults.extend(statuses)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def next_fault(self) -> int | None:
        with self._lock:
            return self._faults.pop(0) if self._faults else None

    def count(self, op: str) -> None:
        with self._lock:
            self.calls[op] += 1

    def start(self) -> None:
        # The same port every time (SO_REUSEADDR is on), so clients find it again after stop().
        self._server = _Server(self._port, self._tls, self)
        self._port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join()
            self._server = self._thread = None

    def _name(self, key_uri: str) -> str:
        return key_uri.rstrip("/").split("/keys/", 1)[1].split("/")[0]


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (SAN IP), which is also its own trust anchor."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vaultd test Key Vault")])
    now = datetime.datetime.now(datetime.UTC)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture(scope="session")
def azure_kv_standin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AzureKvStandIn]:
    """One local Key Vault for the session; tests keep apart by creating their own keys."""
    cert_path, key_path = make_certificate(tmp_path_factory.mktemp("azure-kv"))
    standin = AzureKvStandIn(cert_path, key_path)
    standin.start()
    try:
        yield standin
    finally:
        standin.stop()
