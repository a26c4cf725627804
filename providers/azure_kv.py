"""The Azure Key Vault provider: KEKs wrapped with RSA-OAEP-256 by a Key Vault RSA key.

Key URIs name a key, optionally one version of it:
`azure-kv://<vault host>[:port]/keys/<name>[/<version>]`, which is the key identifier
`https://<vault host>[:port]/keys/<name>[/<version>]` that azure-keyvault-keys'
CryptographyClient takes. The vault is the URI's, per key: one vaultd uses keys in any number of
vaults (the customer's own), each with its own client.

Wrapped bytes, version 2 (what wrap returns since December 2026):

    b"vdazkv\x00\x02" || u16 big-endian len(kid) || kid (ASCII) || RSA-OAEP-256 ciphertext

where `kid` is the versioned key identifier Key Vault answered the wrap with
(`https://<host>/keys/<name>/<version>`). unwrap asks for exactly that version, so rotating the
key in Key Vault (a new newest version) never strands what an older version wrapped. The kid
must name the same vault host and key as the key URI, or the wrapped key is refused without a
call: stored bytes never choose where vaultd sends a request. Version 1 (before) was the bare
ciphertext; it still unwraps, with the URI's version or the newest one, as before. The two
cannot be confused: a bare ciphertext is exactly 256, 384 or 512 bytes, and one starting with
the 8-byte marker and parsing as a consistent version 2 record is a 2^-64 chance at worst.
docs/FORMAT.md has the layout and tests/vectors/providers/azure_kv.json a vector.

Binding. RSA key wrap has no associated data, so the payload wrapped is

    b"vaultd-azkv-v1" || SHA-256(canonical_binding(binding)) || key

and unwrap checks the prefix and, in constant time, the digest before it returns the key. This
binds a wrapped key to its context item: only the vault holds the private key, so only the
service can open the RSA-OAEP ciphertext; OAEP is non-malleable, so nobody can swap the digest
inside one; and a wrapped key presented under another binding opens to a digest that does not
match, so it is refused. The wrapping key is public, so the scheme says which item a wrapped
key belongs to, not who made it; the Store's integrity covers that. The payload is 46 bytes
plus the key, well under the 190 bytes RSA-2048 OAEP-SHA-256 can take.

Where the work happens. Unwrap always runs on the service. Wrap does too when the identity may
not read the key (GET key -> 403); if it may, the SDK fetches the public key and wraps locally,
which is equally sound but means a disabled key is noticed at the next unwrap, not at wrap.

The SDK is the synchronous one, run on the provider's own worker threads: the async one needs
aiohttp, a dependency nothing else in vaultd wants. Its own retries are off and its timeouts
short, so `with_retries` and the caller's deadline decide how long a call may take.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from providers import (
    Binding,
    KeyUnavailableError,
    ProviderError,
    ProviderSetupError,
    ProviderUnavailableError,
    canonical_binding,
    require,
)
from providers._retry import Breakers, with_retries
from providers._threads import BlockingCalls

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.keyvault.keys.crypto import CryptographyClient

T = TypeVar("T")

SCHEME = "azure-kv"
EXTRA = "azure"
SETTINGS = frozenset({"connection_verify", "verify_challenge_resource"})

_PREFIX = b"vaultd-azkv-v1"
_DIGEST_BYTES = 32
WRAPPED_MARKER = b"vdazkv\x00\x02"
"""Starts version 2 wrapped bytes (the versioned kid, then the ciphertext)."""
_MAX_KID_BYTES = 1024
_RSA_CIPHERTEXT_BYTES = frozenset({256, 384, 512})  # RSA-2048/3072/4096, all Key Vault makes
# Key Vault answers a wrap in well under a second; a stuck connection should fail fast so
# with_retries can try again inside the caller's deadline.
_CONNECT_TIMEOUT_SECONDS = 3.0
_READ_TIMEOUT_SECONDS = 5.0


def key_id_of(key_uri: str) -> str:
    """The Key Vault key identifier (https URL) a key URI names."""
    rest = key_uri.removeprefix(f"{SCHEME}://")
    parts = rest.split("/")
    if rest == key_uri or len(parts) not in (3, 4) or parts[1] != "keys" or not all(parts):
        raise KeyUnavailableError(
            f"{key_uri!r} is not an {SCHEME} key URI "
            f"({SCHEME}://<vault host>/keys/<name>[/<version>])"
        )
    return f"https://{rest}"


def encode_wrapped(kid: str, ciphertext: bytes) -> bytes:
    """Version 2 wrapped bytes: the versioned kid the service wrapped with, then its output."""
    kid_bytes = kid.encode("ascii")
    if len(kid_bytes) > _MAX_KID_BYTES:
        raise ValueError("kid is longer than any Key Vault key identifier")
    return WRAPPED_MARKER + len(kid_bytes).to_bytes(2, "big") + kid_bytes + ciphertext


def decode_wrapped(wrapped: bytes) -> tuple[str | None, bytes]:
    """(kid, ciphertext) of version 2 bytes; (None, wrapped) for version 1 (bare ciphertext).

    Raises ValueError for bytes that are neither.
    """
    if wrapped.startswith(WRAPPED_MARKER):
        at = len(WRAPPED_MARKER)
        size = int.from_bytes(wrapped[at : at + 2], "big")
        kid_bytes, ciphertext = wrapped[at + 2 : at + 2 + size], wrapped[at + 2 + size :]
        if (
            len(kid_bytes) == size
            and 0 < size <= _MAX_KID_BYTES
            and kid_bytes.isascii()
            and len(ciphertext) in _RSA_CIPHERTEXT_BYTES
        ):
            return kid_bytes.decode("ascii"), ciphertext
    if len(wrapped) in _RSA_CIPHERTEXT_BYTES:
        return None, wrapped
    raise ValueError("neither a version 2 record nor an RSA ciphertext")


def _same_key(kid: str, key_uri: str) -> bool:
    """Whether a stored kid is a version of the key the URI names, in the same vault."""
    parts = key_id_of(key_uri).split("/")  # "https:", "", host, "keys", name[, version]
    prefix, sep, version = kid.rpartition("/")
    pinned = parts[5] if len(parts) == 6 else None
    return (
        bool(sep)
        and prefix == "/".join(parts[:5])
        and bool(version)
        and "?" not in version
        and pinned in (None, version)
    )


def _payload(key: bytes, binding: Binding) -> bytes:
    return _PREFIX + hashlib.sha256(canonical_binding(binding)).digest() + key


class AzureKvProvider:
    """Wraps KEKs with RSA-OAEP-256 on Azure Key Vault, binding the item inside the payload."""

    scheme = SCHEME

    def __init__(
        self,
        credential: TokenCredential,
        *,
        connection_verify: str | bool = True,
        verify_challenge_resource: bool = True,
    ) -> None:
        crypto = require("azure.keyvault.keys.crypto", EXTRA)
        self._client_class: type[CryptographyClient] = crypto.CryptographyClient
        self._algorithm = crypto.KeyWrapAlgorithm.rsa_oaep_256
        self._credential = credential
        self._client_options: dict[str, Any] = {
            "connection_verify": connection_verify,
            "verify_challenge_resource": verify_challenge_resource,
            "retry_total": 0,
            "connection_timeout": _CONNECT_TIMEOUT_SECONDS,
            "read_timeout": _READ_TIMEOUT_SECONDS,
        }
        self._clients: dict[str, CryptographyClient] = {}
        self._breakers = Breakers()
        self._threads = BlockingCalls("azure-kv")

    @classmethod
    def from_settings(
        cls, settings: Mapping[str, Any], *, credential: TokenCredential | None = None
    ) -> AzureKvProvider:
        """Build from `providers: {azure-kv: ...}`; DefaultAzureCredential unless one is given."""
        for name in settings:
            if name not in SETTINGS:
                known = ", ".join(sorted(SETTINGS))
                raise ProviderSetupError(
                    f"{SCHEME} settings: unknown key {name!r} (known: {known})"
                )
        verify = settings.get("connection_verify", True)
        if not isinstance(verify, bool | str):
            raise ProviderSetupError(f"{SCHEME} settings: connection_verify must be a path or bool")
        if isinstance(verify, str) and not Path(verify).is_file():
            raise ProviderSetupError(
                f"{SCHEME} settings: connection_verify {verify!r} is not a file"
            )
        check_resource = settings.get("verify_challenge_resource", True)
        if not isinstance(check_resource, bool):
            raise ProviderSetupError(f"{SCHEME} settings: verify_challenge_resource must be a bool")
        if credential is None:
            identity = require("azure.identity", EXTRA)
            credential = identity.DefaultAzureCredential()
        return cls(credential, connection_verify=verify, verify_challenge_resource=check_resource)

    async def wrap(self, key_uri: str, key: bytes, binding: Binding) -> bytes:
        client = self._client(key_uri)
        payload = _payload(key, binding)
        answered: list[str] = []

        def note_kid(pipeline_response: Any) -> None:
            # The SDK's WrapResult carries the client's key id, which has no version unless the
            # URI pinned one; the service's answer names the version it used, so read it there.
            response = pipeline_response.http_response
            if response.status_code == 200:
                with contextlib.suppress(ValueError, TypeError, AttributeError):
                    kid = json.loads(response.text()).get("kid")
                    if isinstance(kid, str):
                        answered.append(kid)

        result = await self._call(
            key_uri,
            lambda: client.wrap_key(self._algorithm, payload, raw_response_hook=note_kid),
        )
        # No answer when the SDK wrapped locally with the public key it was allowed to fetch;
        # then its key id is the fetched key's, versioned.
        kid = answered[-1] if answered else str(result.key_id or "")
        if not _same_key(kid, key_uri):
            # Key Vault always names the version it used; without it the wrap could be stranded.
            raise ProviderUnavailableError(f"{key_uri}: Key Vault's answer named no key version")
        return encode_wrapped(kid, result.encrypted_key)

    async def unwrap(self, key_uri: str, wrapped: bytes, binding: Binding) -> bytes:
        key_id_of(key_uri)  # a bad URI is named as such before the bytes are looked at
        try:
            kid, ciphertext = decode_wrapped(wrapped)
        except ValueError:
            raise KeyUnavailableError(f"{key_uri}: wrapped key is malformed") from None
        if kid is not None and not _same_key(kid, key_uri):
            raise KeyUnavailableError(f"{key_uri}: wrapped key names another vault or key")
        client = self._client(key_uri) if kid is None else self._client_for(kid)
        result = await self._call(key_uri, lambda: client.unwrap_key(self._algorithm, ciphertext))
        payload: bytes = result.key
        expected = _payload(b"", binding)
        # Compare the whole header in constant time so a mismatch reveals nothing of the digest.
        if len(payload) < len(expected) or not hmac.compare_digest(
            payload[: len(expected)], expected
        ):
            raise KeyUnavailableError(f"{key_uri}: wrapped key is bound to another context item")
        return payload[len(expected) :]

    def needs_rewrap(self, key_uri: str, wrapped: bytes) -> bool:
        """Version 1 bytes (no kid) should be re-wrapped: until they carry the version that
        wrapped them, rotating the key in Key Vault would strand them. `vaultd kek rewrap`
        does it; a wrapped key that is not ours at all is left for unwrap to refuse."""
        try:
            kid, _ = decode_wrapped(wrapped)
        except ValueError:
            return False
        return kid is None

    async def verify(self, key_uri: str) -> None:
        probe = os.urandom(32)
        binding = {"vaultd:verify": SCHEME}
        if await self.unwrap(key_uri, await self.wrap(key_uri, probe, binding), binding) != probe:
            raise KeyUnavailableError(f"{key_uri}: round trip returned a different key")

    def close(self) -> None:
        """Close the clients' connection pools."""
        for client in self._clients.values():
            client.close()
        self._clients.clear()

    def _client(self, key_uri: str) -> CryptographyClient:
        return self._client_for(key_id_of(key_uri))

    def _client_for(self, key_id: str) -> CryptographyClient:
        # One client per key identifier (vault, key, version): it keeps its token and learns
        # once that GET key is forbidden, so later calls go straight to wrap/unwrap; a new
        # client would ask again every time.
        client = self._clients.get(key_id)
        if client is None:
            client = self._client_class(key_id, self._credential, **self._client_options)
            self._clients[key_id] = client
        return client

    async def _call(self, key_uri: str, call: Callable[[], T]) -> T:
        async def attempt() -> T:
            from azure.core.exceptions import AzureError

            try:
                return await self._threads.run(call)
            except AzureError as err:
                # `from None`: SDK messages may quote response bodies; ours name only the URI.
                raise _provider_error(key_uri, err) from None

        return await with_retries(attempt, key_uri=key_uri, breakers=self._breakers)


def _provider_error(key_uri: str, err: Exception) -> ProviderError:
    """Map an azure.core error onto vaultd's two provider errors."""
    from azure.core.exceptions import (
        ClientAuthenticationError,
        HttpResponseError,
        ServiceRequestError,
        ServiceResponseError,
    )

    if isinstance(err, ClientAuthenticationError):
        return KeyUnavailableError(f"{key_uri}: access denied ({_describe(err)})", denied=True)
    if isinstance(err, ServiceRequestError | ServiceResponseError):
        return ProviderUnavailableError(f"{key_uri}: Key Vault unreachable ({type(err).__name__})")
    if isinstance(err, HttpResponseError):
        status = err.status_code
        if status is None or status in (408, 429) or status >= 500:
            return ProviderUnavailableError(f"{key_uri}: Key Vault unavailable ({_describe(err)})")
        # 403 (denied or disabled), 404 (no such key), 400 (a wrapped key the key cannot open):
        # retrying will not help, the key is unusable for this call. All but 400 refuse the
        # key itself (a revocation); 400 is this wrapped key only.
        return KeyUnavailableError(
            f"{key_uri}: Key Vault refused the key ({_describe(err)})",
            denied=status in (401, 403, 404),
        )
    return ProviderUnavailableError(f"{key_uri}: Key Vault call failed ({type(err).__name__})")


def _describe(err: Any) -> str:
    """HTTP status and Key Vault error code: enough to act on, never a value."""
    status = getattr(err, "status_code", None)
    code = getattr(getattr(err, "error", None), "code", None)
    parts = [f"HTTP {status}" if status else None, code]
    return " ".join(str(part) for part in parts if part) or type(err).__name__
