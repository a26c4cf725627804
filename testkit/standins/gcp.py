"""A stand-in for Google Cloud KMS: an in-process gRPC server speaking Encrypt and Decrypt.

Google ships no emulator, so, like sops' `gcpkms/mock_kms_server_test.go`, this serves the real
`google.cloud.kms.v1.KeyManagementService` wire protocol (the SDK's own proto-plus messages) on
127.0.0.1, and the real SDK client talks to it over a socket. Unlike a canned mock it behaves
like the service where vaultd depends on it: real AES-256-GCM per key with the AAD bound, the
CRC32C fields checked and echoed, disabled keys refused, unknown keys not found.

The server runs on its own event loop in its own thread, so the tests' loop never shares it
and the synchronous stop()/start() of the StandIn shape can simply wait for it.

Impersonation: `iam` is a stand-in for the IAM Credentials API (generateAccessToken over HTTP,
as google-auth's impersonated credentials call it). It mints a token for a service account
only to a caller presenting SOURCE_TOKEN (vaultd's own identity) and only while the service
account grants vaultd the token-creator role (grant_token_creator). A key may be restricted to
service accounts (allow_only): Encrypt / Decrypt on it then need a bearer token minted for one
of them, else PERMISSION_DENIED, as Cloud KMS answers a principal without the IAM role.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import re
import threading
from collections import Counter
from collections.abc import Coroutine, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

import google_crc32c
import grpc
import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from google.cloud import kms_v1

T = TypeVar("T")

SERVICE = "google.cloud.kms.v1.KeyManagementService"
KEY_RING = "projects/vaultd-test/locations/global/keyRings/vaultd"
_NONCE_BYTES = 12
SOURCE_TOKEN = "vaultd-source-token"
"""The bearer token of vaultd's own identity, which may ask to impersonate."""
_GENERATE = re.compile(r"^/v1/projects/-/serviceAccounts/(?P<sa>[^/:]+):generateAccessToken$")


class IamCredentialsStandIn:
    """generateAccessToken over HTTP on 127.0.0.1, with the token-creator grants it checks."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.tokens: dict[str, str] = {}
        """Token -> the service account it was minted for."""
        self._creators: set[str] = set()
        self._lock = threading.Lock()
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, doc = standin._generate(self.path, self.headers.get("Authorization"))
                data = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def grant_token_creator(self, service_account: str) -> None:
        with self._lock:
            self._creators.add(service_account)

    def revoke_token_creator(self, service_account: str) -> None:
        """The customer withdraws vaultd's right to act as their service account; tokens
        already minted die with it (as if they expired)."""
        with self._lock:
            self._creators.discard(service_account)
            self.tokens = {t: sa for t, sa in self.tokens.items() if sa != service_account}

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _generate(self, path: str, authorization: str | None) -> tuple[int, dict[str, Any]]:
        match = _GENERATE.match(path)
        with self._lock:
            self.calls["impersonate"] += 1
            if match is None:
                return 404, _iam_error(404, "NOT_FOUND")
            if authorization != f"Bearer {SOURCE_TOKEN}" or match["sa"] not in self._creators:
                return 403, _iam_error(403, "PERMISSION_DENIED")
            token = f"ya29.standin.{os.urandom(8).hex()}"
            self.tokens[token] = match["sa"]
        expires = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
        return 200, {"accessToken": token, "expireTime": expires.strftime("%Y-%m-%dT%H:%M:%SZ")}


def _iam_error(code: int, status: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": "Permission denied (stand-in)", "status": status}}


def crc32c(data: bytes) -> int:
    value: int = google_crc32c.value(data)
    return value


def _flip_first_byte(data: bytes) -> bytes:
    return bytes([data[0] ^ 0xFF]) + data[1:] if data else b"\x00"


class GcpKmsStandIn:
    """The server, its keys, and switches for the faults tests need."""

    scheme = "gcp-kms"

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.aads: list[bytes] = []
        """The additional_authenticated_data of every Encrypt and Decrypt received, in order."""
        self._keys: dict[str, AESGCM] = {}
        self._disabled: set[str] = set()
        self._principals: dict[str, frozenset[str]] = {}
        self.iam = IamCredentialsStandIn()
        self._fail_next: list[grpc.StatusCode] = []
        self._corrupt_next = 0
        self._server: grpc.aio.Server | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="gcp-kms-standin", daemon=True
        )
        self._thread.start()
        self.port = 0
        self.start()
        self.provider_settings: dict[str, Any] = {
            "endpoint": f"127.0.0.1:{self.port}",
            "insecure": True,
            "iam_endpoint": self.iam.url,
        }

    # The StandIn shape.

    def create_key(self, name: str) -> str:
        crypto_key = f"{KEY_RING}/cryptoKeys/{name}"
        self._keys[crypto_key] = AESGCM(AESGCM.generate_key(bit_length=256))
        return f"gcp-kms://{crypto_key}"

    def create_key_in(self, name: str, *, project: str, location: str) -> str:
        """A key in another project and location (the customer's)."""
        crypto_key = f"projects/{project}/locations/{location}/keyRings/customer/cryptoKeys/{name}"
        self._keys[crypto_key] = AESGCM(AESGCM.generate_key(bit_length=256))
        return f"gcp-kms://{crypto_key}"

    def allow_only(self, key_uri: str, *service_accounts: str) -> None:
        """Only these service accounts (by their minted tokens) may use the key."""
        self._principals[self._name(key_uri)] = frozenset(service_accounts)

    def source_credentials(self) -> Any:
        """google-auth credentials of vaultd's own identity, as the IAM stand-in knows it."""
        from google.oauth2.credentials import Credentials

        return Credentials(token=SOURCE_TOKEN)  # type: ignore[no-untyped-call]

    def revoke(self, key_uri: str) -> None:
        self._disabled.add(self._name(key_uri))

    def restore(self, key_uri: str) -> None:
        self._disabled.discard(self._name(key_uri))

    def stop(self) -> None:
        """Close the listening socket and every connection: clients get connection refused."""
        if self._server is not None:
            self._run(self._server.stop(grace=None))
            self._server = None

    def start(self) -> None:
        if self._server is None:
            self.port = self._run(self._serve(self.port))

    # Faults beyond the StandIn shape.

    def fail_next(self, count: int, code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE) -> None:
        """Answer the next `count` requests with `code`, as an overloaded service does."""
        self._fail_next.extend([code] * count)

    def clear_faults(self) -> None:
        self._fail_next.clear()

    def corrupt_next(self, count: int) -> None:
        """Damage the payload of the next `count` responses after their checksum is computed,
        as a bit flip in transit would."""
        self._corrupt_next += count

    def close(self) -> None:
        self.iam.close()
        self.stop()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    # The server.

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)

    async def _serve(self, port: int) -> int:
        # so_reuseport off: on restart the port must be ours alone, not shared with a stranger.
        server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    SERVICE,
                    {
                        "Encrypt": grpc.unary_unary_rpc_method_handler(
                            self._encrypt,
                            request_deserializer=kms_v1.EncryptRequest.deserialize,
                            response_serializer=kms_v1.EncryptResponse.serialize,
                        ),
                        "Decrypt": grpc.unary_unary_rpc_method_handler(
                            self._decrypt,
                            request_deserializer=kms_v1.DecryptRequest.deserialize,
                            response_serializer=kms_v1.DecryptResponse.serialize,
                        ),
                    },
                ),
            )
        )
        bound: int = server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        self._server = server
        return bound

    @staticmethod
    def _name(key_uri: str) -> str:
        return key_uri.removeprefix("gcp-kms://").partition("?")[0]

    async def _key(self, name: str, context: grpc.aio.ServicerContext[Any, Any]) -> AESGCM:
        if self._fail_next:
            await context.abort(self._fail_next.pop(0), "The service is currently unavailable.")
        key = self._keys.get(name)
        if key is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"CryptoKey {name} not found.")
        allowed = self._principals.get(name)
        if allowed is not None:
            metadata = dict(context.invocation_metadata() or ())
            bearer = str(metadata.get("authorization", "")).removeprefix("Bearer ")
            if self.iam.tokens.get(bearer) not in allowed:
                await context.abort(
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"Permission 'cloudkms.cryptoKeyVersions.useToEncrypt' denied on {name}.",
                )
        if name in self._disabled:
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"{name}/cryptoKeyVersions/1 is not enabled, current state is: DISABLED.",
            )
        assert key is not None
        return key

    @staticmethod
    async def _check_crc(
        context: grpc.aio.ServicerContext[Any, Any], request: Any, field: str
    ) -> bool:
        """The service's rule: a checksum sent must match its data; report whether one was."""
        if f"{field}_crc32c" not in request:
            return False
        if getattr(request, f"{field}_crc32c") != crc32c(getattr(request, field)):
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"The checksum in field {field}_crc32c did not match the data in field {field}.",
            )
        return True

    def _corrupting(self) -> bool:
        if self._corrupt_next:
            self._corrupt_next -= 1
            return True
        return False

    async def _encrypt(
        self, request: kms_v1.EncryptRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> kms_v1.EncryptResponse:
        self.calls["wrap"] += 1
        self.aads.append(request.additional_authenticated_data)
        key = await self._key(request.name, context)
        verified_plaintext = await self._check_crc(context, request, "plaintext")
        verified_aad = await self._check_crc(context, request, "additional_authenticated_data")
        nonce = os.urandom(_NONCE_BYTES)
        ciphertext = nonce + key.encrypt(
            nonce, request.plaintext, request.additional_authenticated_data or None
        )
        checksum = crc32c(ciphertext)
        if self._corrupting():
            ciphertext = _flip_first_byte(ciphertext)
        return kms_v1.EncryptResponse(
            name=f"{request.name}/cryptoKeyVersions/1",
            ciphertext=ciphertext,
            ciphertext_crc32c=checksum,
            verified_plaintext_crc32c=verified_plaintext,
            verified_additional_authenticated_data_crc32c=verified_aad,
            protection_level=kms_v1.ProtectionLevel.SOFTWARE,
        )

    async def _decrypt(
        self, request: kms_v1.DecryptRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> kms_v1.DecryptResponse:
        self.calls["unwrap"] += 1
        self.aads.append(request.additional_authenticated_data)
        key = await self._key(request.name, context)
        await self._check_crc(context, request, "ciphertext")
        await self._check_crc(context, request, "additional_authenticated_data")
        ciphertext = request.ciphertext
        try:
            plaintext = key.decrypt(
                ciphertext[:_NONCE_BYTES],
                ciphertext[_NONCE_BYTES:],
                request.additional_authenticated_data or None,
            )
        except (InvalidTag, ValueError):
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                "Decryption failed: the ciphertext is invalid.",
            )
        checksum = crc32c(plaintext)
        if self._corrupting():
            plaintext = _flip_first_byte(plaintext)
        return kms_v1.DecryptResponse(
            plaintext=plaintext,
            plaintext_crc32c=checksum,
            used_primary=True,
            protection_level=kms_v1.ProtectionLevel.SOFTWARE,
        )


@pytest.fixture(scope="session")
def gcp_kms_standin() -> Iterator[GcpKmsStandIn]:
    """One stand-in per session; tests keep apart by creating their own keys."""
    standin = GcpKmsStandIn()
    yield standin
    standin.close()
