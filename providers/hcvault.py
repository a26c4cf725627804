"""The HashiCorp Vault (or OpenBao) provider: KEKs wrapped by a tenant's Transit key (BYOK).

A key URI is `hcvault://<mount>/keys/<name>`, the Transit key's own path. wrap is Transit
encrypt with `associated_data` = base64 of the canonical binding; unwrap is Transit decrypt with
the same, so a wrapped key moved to another binding does not decrypt. That needs an AEAD key
type (aes256-gcm96): Vault refuses associated data for any other, so a wrong key type fails at
`verify`, not silently. The wrapped key is Vault's `vault:vN:...` ciphertext, stored as bytes.

vaultd's token needs only `update` on `<mount>/encrypt/<name>` and `<mount>/decrypt/<name>`.
Not `create`: with it, encrypt to a mistyped name would make a new key instead of failing.

hvac is blocking, so every call runs in a worker thread. The client is built once. Transient
errors are retried by `with_retries`, bounded by the caller's deadline.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import os
from collections.abc import Callable, Mapping
from typing import Any

from providers import (
    Binding,
    KeyUnavailableError,
    ProviderSetupError,
    ProviderUnavailableError,
    canonical_binding,
    require,
)
from providers._retry import with_retries

SCHEME = "hcvault"
_PREFIX = f"{SCHEME}://"
DEFAULT_MOUNT = "transit"
_SETTINGS = ("address", "token", "token_env", "mount", "verify")
MAX_WRAPPED_BYTES = 4096
"""Far above a Transit ciphertext of a 32-byte key (~90 bytes): longer is corrupt, not a call."""


class HcVaultProvider:
    """Wraps KEKs with Transit encrypt / decrypt under one Transit mount."""

    scheme = SCHEME

    def __init__(
        self,
        *,
        address: str,
        token: str,
        mount: str = DEFAULT_MOUNT,
        verify: bool | str = True,
        connect_timeout: float = 2.0,
        read_timeout: float = 5.0,
    ) -> None:
        hvac = require("hvac", "hashicorp")
        http = require("requests", "hashicorp").exceptions
        vault = hvac.exceptions
        self._refused = vault.VaultError
        # Every other VaultError (403, 404, 400: no such key, no access, does not authenticate)
        # is a refusal about the key; these are the server or the network failing.
        self._transient = (
            vault.InternalServerError,
            vault.BadGateway,
            vault.VaultDown,
            vault.VaultNotInitialized,
            vault.RateLimitExceeded,
            vault.PreconditionFailed,
            vault.UnexpectedError,
            http.ConnectionError,
            http.Timeout,
            http.ChunkedEncodingError,
        )
        self._mount = mount.strip("/")
        # `verify` always passed explicitly: hvac would otherwise fall back to VAULT_CACERT.
        client = hvac.Client(
            url=address, token=token, verify=verify, timeout=(connect_timeout, read_timeout)
        )
        self._transit = client.secrets.transit

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> HcVaultProvider:
        """Build from the config section `providers: {hcvault: ...}`; bad settings fail here."""
        unknown = sorted(set(settings) - set(_SETTINGS))
        if unknown:
            raise ProviderSetupError(
                f"providers.hcvault: unknown setting(s) {', '.join(unknown)}; "
                f"known: {', '.join(_SETTINGS)}"
            )
        address = _string(settings, "address")
        if address is None or not address.startswith(("http://", "https://")):
            raise ProviderSetupError("providers.hcvault: address must be an http(s):// URL")
        token, token_env = _string(settings, "token"), _string(settings, "token_env")
        if token is not None and token_env is not None:
            raise ProviderSetupError("providers.hcvault: give one of token, token_env, not both")
        if token_env is not None:
            token = os.environ.get(token_env)
            if not token:
                raise ProviderSetupError(
                    f"providers.hcvault: token_env names {token_env}, which is not set"
                )
        if token is None:
            raise ProviderSetupError("providers.hcvault: give token_env (or token)")
        verify = settings.get("verify", True)
        if not isinstance(verify, bool | str) or verify == "":
            raise ProviderSetupError("providers.hcvault: verify must be true, false or a CA path")
        return cls(
            address=address,
            token=token,
            mount=_string(settings, "mount") or DEFAULT_MOUNT,
            verify=verify,
        )

    async def wrap(self, key_uri: str, key: bytes, binding: Binding) -> bytes:
        name = self._key_name(key_uri)
        response = await self._call(
            key_uri,
            lambda: self._transit.encrypt_data(
                name,
                plaintext=_b64(key),
                associated_data=_b64(canonical_binding(binding)),
                mount_point=self._mount,
            ),
        )
        ciphertext: str = response["data"]["ciphertext"]
        return ciphertext.encode("ascii")

    async def unwrap(self, key_uri: str, wrapped: bytes, binding: Binding) -> bytes:
        name = self._key_name(key_uri)
        if len(wrapped) > MAX_WRAPPED_BYTES or not wrapped.startswith(b"vault:v"):
            raise KeyUnavailableError(f"{key_uri}: wrapped key is not a Transit ciphertext")
        response = await self._call(
            key_uri,
            lambda: self._transit.decrypt_data(
                name,
                ciphertext=wrapped.decode("ascii", errors="replace"),
                associated_data=_b64(canonical_binding(binding)),
                mount_point=self._mount,
            ),
        )
        try:
            return base64.b64decode(response["data"]["plaintext"], validate=True)
        except (binascii.Error, KeyError, TypeError):
            raise KeyUnavailableError(f"{key_uri}: Vault returned no plaintext") from None

    async def verify(self, key_uri: str) -> None:
        probe = os.urandom(32)
        binding = {"vaultd:verify": SCHEME}
        if await self.unwrap(key_uri, await self.wrap(key_uri, probe, binding), binding) != probe:
            raise KeyUnavailableError(f"{key_uri}: round trip returned a different key")

    def _key_name(self, key_uri: str) -> str:
        """The key name in the URI, checked before any call so a typo fails with a clear message."""
        path = key_uri[len(_PREFIX) :] if key_uri.startswith(_PREFIX) else ""
        mount, sep, name = path.rpartition("/keys/")
        if not sep or not mount or not name or "/" in name:
            raise KeyUnavailableError(f"{key_uri}: not of the form hcvault://<mount>/keys/<name>")
        # The token and its policy are for one mount; a URI elsewhere is a configuration
        # mistake best named as such, rather than as a permission denied from Vault.
        if mount.strip("/") != self._mount:
            raise KeyUnavailableError(
                f"{key_uri}: mount {mount} is not the configured mount {self._mount}"
            )
        return name

    async def _call(self, key_uri: str, request: Callable[[], Any]) -> dict[str, Any]:
        async def attempt() -> dict[str, Any]:
            # `from None` throughout: SDK exceptions can carry request parameters, and nothing
            # of a request may reach a log or a client.
            try:
                response: dict[str, Any] = await asyncio.to_thread(request)
                return response
            except self._transient as exc:
                raise ProviderUnavailableError(
                    f"{key_uri}: Vault is unavailable ({type(exc).__name__})"
                ) from None
            except self._refused as exc:
                raise KeyUnavailableError(
                    f"{key_uri}: Vault refused the key ({type(exc).__name__})"
                ) from None

        return await with_retries(attempt)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _string(settings: Mapping[str, Any], name: str) -> str | None:
    value = settings.get(name)
    if value is not None and (not isinstance(value, str) or not value):
        raise ProviderSetupError(f"providers.hcvault: {name} must be a non-empty string")
    return value
