"""The HashiCorp Vault (or OpenBao) provider: KEKs wrapped by a tenant's Transit key (BYOK).

A key URI is `hcvault://<mount>/keys/<name>`, the Transit key's own path. wrap is Transit
encrypt with `associated_data` = base64 of the canonical binding; unwrap is Transit decrypt with
the same, so a wrapped key moved to another binding does not decrypt. That needs an AEAD key
type (aes256-gcm96): Vault refuses associated data for any other, so a wrong key type fails at
`verify`, not silently. The wrapped key is Vault's `vault:vN:...` ciphertext, stored as bytes.

vaultd's token needs only `update` on `<mount>/encrypt/<name>` and `<mount>/decrypt/<name>`.
Not `create`: with it, encrypt to a mistyped name would make a new key instead of failing.

The customer's own Vault. A key URI may name another Vault and how to log in to it:

    hcvault://<mount>/keys/<name>?address=https://vault.customer.example:8200
        &token_env=VAULTD_HCVAULT_<X>            a token in that environment variable, or
        &token_file=<file in credentials_dir>    a token in that file (re-read when it changes), or
        &role_id=<id>&secret_id_env=VAULTD_HCVAULT_<X>   AppRole, secret id from env or
        &role_id=<id>&secret_id_file=<file>              from a file; [&approle_mount=approle]
        [&namespace=<ns>]                        a Vault Enterprise / OpenBao namespace

Rules are data (an admin may add one at run time), so what a rule can make vaultd send is
confined: a rule that names an address must name its own credentials (the operator's token is
only ever sent to the operator's Vault), environment variables must be named `VAULTD_HCVAULT_*`,
and files must lie in the provider's `credentials_dir`. Otherwise a rule could send, say,
AWS_SECRET_ACCESS_KEY or /etc/shadow to an address of its choosing. Secrets never appear in a
URI. There is one client per (address, namespace, credentials), built on first use; AppRole
logs in on first use and again shortly before the token's TTL runs out.

hvac is blocking, so every call (login included) runs in a worker thread. Transient errors are
retried by `with_retries`, bounded by the caller's deadline.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from providers import (
    Binding,
    KeyUnavailableError,
    ProviderSetupError,
    ProviderUnavailableError,
    canonical_binding,
    require,
)
from providers._retry import Breakers, with_retries
from providers._threads import BlockingCalls
from providers._uri import uri_options

SCHEME = "hcvault"
_PREFIX = f"{SCHEME}://"
DEFAULT_MOUNT = "transit"
_SETTINGS = ("address", "token", "token_env", "mount", "verify", "credentials_dir")
ENV_PREFIX = "VAULTD_HCVAULT_"
"""Environment variables a rule may name for its credentials start with this."""
_URI_PARAMETERS = frozenset(
    {
        "address",
        "namespace",
        "token_env",
        "token_file",
        "role_id",
        "secret_id_env",
        "secret_id_file",
        "approle_mount",
    }
)
_ENV_NAME = re.compile(ENV_PREFIX + "[A-Z0-9_]+")
_RELOGIN_BEFORE_FRACTION = 0.2
"""AppRole logs in again once this fraction of the token's TTL is left."""
MAX_WRAPPED_BYTES = 4096
"""Far above a Transit ciphertext of a 32-byte key (~90 bytes): longer is corrupt, not a call."""


@dataclass(frozen=True, slots=True)
class VaultTarget:
    """Which Vault a key URI reaches, and as whom. Holds names of secrets, never secrets."""

    address: str | None = None
    """None: the operator's Vault from the provider settings."""
    namespace: str | None = None
    token_env: str | None = None
    token_file: str | None = None
    role_id: str | None = None
    secret_id_env: str | None = None
    secret_id_file: str | None = None
    approle_mount: str = "approle"

    @property
    def is_default(self) -> bool:
        return self == _DEFAULT_TARGET


_DEFAULT_TARGET = VaultTarget()


def parse_key_uri(key_uri: str) -> tuple[str, str, VaultTarget]:
    """(mount, key name, target) of a key URI, checked before any call."""
    rest = key_uri[len(_PREFIX) :] if key_uri.startswith(_PREFIX) else ""
    path, _, query = rest.partition("?")
    mount, sep, name = path.rpartition("/keys/")
    if not sep or not mount.strip("/") or not name or "/" in name:
        raise KeyUnavailableError(f"{key_uri}: not of the form hcvault://<mount>/keys/<name>")
    one = uri_options(key_uri, query, _URI_PARAMETERS)
    target = VaultTarget(**one)
    _check_target(key_uri, target)
    return mount.strip("/"), name, target


def _check_target(key_uri: str, t: VaultTarget) -> None:
    if t.address is not None and not t.address.startswith(("http://", "https://")):
        raise KeyUnavailableError(f"{key_uri}: address must be an http(s):// URL")
    ways = [w for w in (t.token_env, t.token_file, t.role_id) if w is not None]
    if len(ways) > 1:
        raise KeyUnavailableError(f"{key_uri}: give one of token_env, token_file, role_id")
    if t.address is not None and not ways:
        # Never send the operator's token to an address a rule names.
        raise KeyUnavailableError(
            f"{key_uri}: a rule naming an address must name its credentials too "
            "(token_env, token_file or role_id)"
        )
    if t.role_id is not None and (t.secret_id_env is None) == (t.secret_id_file is None):
        raise KeyUnavailableError(f"{key_uri}: role_id needs one of secret_id_env, secret_id_file")
    if t.role_id is None and (t.secret_id_env or t.secret_id_file):
        raise KeyUnavailableError(f"{key_uri}: secret_id_env / secret_id_file need role_id")
    for env in (t.token_env, t.secret_id_env):
        if env is not None and not _ENV_NAME.fullmatch(env):
            raise KeyUnavailableError(
                f"{key_uri}: environment variable {env} is not one rules may use "
                f"(names start with {ENV_PREFIX})"
            )


class HcVaultProvider:
    """Wraps KEKs with Transit encrypt / decrypt, in the operator's Vault or the rule's own."""

    scheme = SCHEME

    def __init__(
        self,
        *,
        address: str | None = None,
        token: str | None = None,
        mount: str = DEFAULT_MOUNT,
        verify: bool | str = True,
        credentials_dir: str | None = None,
        connect_timeout: float = 2.0,
        read_timeout: float = 5.0,
    ) -> None:
        """`address` + `token`: the operator's Vault, for URIs that name no address (optional
        when every rule names its own). `credentials_dir`: where rules' token / secret id files
        may be."""
        self._hvac = require("hvac", "hashicorp")
        http = require("requests", "hashicorp").exceptions
        vault = self._hvac.exceptions
        self._refused = vault.VaultError
        # The key itself refused: no access (a revoked policy), bad credentials, no such key.
        # Other refusals (400: does not authenticate under this binding) are about one blob.
        self._denials = (vault.Forbidden, vault.Unauthorized, vault.InvalidPath)
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
        self._verify = verify
        self._timeout = (connect_timeout, read_timeout)
        self._credentials_dir = Path(credentials_dir).resolve() if credentials_dir else None
        self._sessions: dict[VaultTarget, _Session] = {}
        self._breakers = Breakers()
        self._threads = BlockingCalls("hcvault")
        if address is not None and token is not None:
            self._sessions[_DEFAULT_TARGET] = _Session(self._client(address, None), token=token)

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
        token, token_env = _string(settings, "token"), _string(settings, "token_env")
        if address is not None and not address.startswith(("http://", "https://")):
            raise ProviderSetupError("providers.hcvault: address must be an http(s):// URL")
        if token is not None and token_env is not None:
            raise ProviderSetupError("providers.hcvault: give one of token, token_env, not both")
        if token_env is not None:
            token = os.environ.get(token_env)
            if not token:
                raise ProviderSetupError(
                    f"providers.hcvault: token_env names {token_env}, which is not set"
                )
        if address is not None and token is None:
            raise ProviderSetupError("providers.hcvault: give token_env (or token)")
        if address is None and token is not None:
            raise ProviderSetupError("providers.hcvault: a token needs the address of its Vault")
        verify = settings.get("verify", True)
        if not isinstance(verify, bool | str) or verify == "":
            raise ProviderSetupError("providers.hcvault: verify must be true, false or a CA path")
        credentials_dir = _string(settings, "credentials_dir")
        if credentials_dir is not None and not Path(credentials_dir).is_dir():
            raise ProviderSetupError(
                f"providers.hcvault: credentials_dir {credentials_dir} is not a directory"
            )
        return cls(
            address=address,
            token=token,
            mount=_string(settings, "mount") or DEFAULT_MOUNT,
            verify=verify,
            credentials_dir=credentials_dir,
        )

    async def wrap(self, key_uri: str, key: bytes, binding: Binding) -> bytes:
        mount, name, session = self._resolve(key_uri)
        response = await self._call(
            key_uri,
            session,
            lambda transit: transit.encrypt_data(
                name,
                plaintext=_b64(key),
                associated_data=_b64(canonical_binding(binding)),
                mount_point=mount,
            ),
        )
        ciphertext: str = response["data"]["ciphertext"]
        return ciphertext.encode("ascii")

    async def unwrap(self, key_uri: str, wrapped: bytes, binding: Binding) -> bytes:
        mount, name, session = self._resolve(key_uri)
        if len(wrapped) > MAX_WRAPPED_BYTES or not wrapped.startswith(b"vault:v"):
            raise KeyUnavailableError(f"{key_uri}: wrapped key is not a Transit ciphertext")
        response = await self._call(
            key_uri,
            session,
            lambda transit: transit.decrypt_data(
                name,
                ciphertext=wrapped.decode("ascii", errors="replace"),
                associated_data=_b64(canonical_binding(binding)),
                mount_point=mount,
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

    def _resolve(self, key_uri: str) -> tuple[str, str, _Session]:
        """Mount, key name and the session for the URI's Vault, before any call."""
        mount, name, target = parse_key_uri(key_uri)
        if target.is_default:
            # The operator's token and its policy are for one mount; a URI elsewhere is a
            # configuration mistake best named as such, rather than as a permission denied.
            if mount != self._mount:
                raise KeyUnavailableError(
                    f"{key_uri}: mount {mount} is not the configured mount {self._mount}"
                )
            if _DEFAULT_TARGET not in self._sessions:
                raise KeyUnavailableError(
                    f"{key_uri}: names no address, and providers.hcvault has no default Vault"
                )
        return mount, name, self._session(key_uri, target)

    def _session(self, key_uri: str, target: VaultTarget) -> _Session:
        session = self._sessions.get(target)
        if session is not None:
            return session
        for path in (target.token_file, target.secret_id_file):
            if path is not None:
                self._check_file(key_uri, path)
        address = target.address
        if address is None:
            address = self._sessions[_DEFAULT_TARGET].client.url
        session = _Session(self._client(address, target.namespace), target=target)
        self._sessions[target] = session
        return session

    def _check_file(self, key_uri: str, path: str) -> None:
        if self._credentials_dir is None:
            raise KeyUnavailableError(
                f"{key_uri}: credential files need providers.hcvault.credentials_dir"
            )
        if not Path(path).resolve().is_relative_to(self._credentials_dir):
            raise KeyUnavailableError(
                f"{key_uri}: {path} is not in credentials_dir {self._credentials_dir}"
            )

    def _client(self, address: str, namespace: str | None) -> Any:
        # `verify` and `token` always passed explicitly: hvac would otherwise fall back to
        # VAULT_CACERT, and to VAULT_TOKEN / ~/.vault-token, which must never go to an address
        # a rule names. "" sends no token header.
        return self._hvac.Client(
            url=address, token="", verify=self._verify, timeout=self._timeout, namespace=namespace
        )

    async def _call(
        self, key_uri: str, session: _Session, request: Callable[[Any], Any]
    ) -> dict[str, Any]:
        async def attempt() -> dict[str, Any]:
            # `from None` throughout: SDK exceptions can carry request parameters, and nothing
            # of a request may reach a log or a client.
            try:
                response: dict[str, Any] = await self._threads.run(
                    lambda: request(session.transit(key_uri))
                )
                return response
            except self._transient as exc:
                raise ProviderUnavailableError(
                    f"{key_uri}: Vault is unavailable ({type(exc).__name__})"
                ) from None
            except self._refused as exc:
                raise KeyUnavailableError(
                    f"{key_uri}: Vault refused the key ({type(exc).__name__})",
                    denied=isinstance(exc, self._denials),
                ) from None

        return await with_retries(attempt, key_uri=key_uri, breakers=self._breakers)


class _Session:
    """One hvac client and how it gets its token; used from worker threads, so locked."""

    def __init__(
        self, client: Any, *, token: str | None = None, target: VaultTarget = _DEFAULT_TARGET
    ) -> None:
        self.client = client
        self._hvac_errors = require("hvac", "hashicorp").exceptions
        self._target = target
        self._lock = threading.Lock()
        self._file_stamp: tuple[float, int] | None = None
        self._renew_at = float("-inf")  # AppRole: log in on first use
        if token is not None:
            client.token = token

    def transit(self, key_uri: str) -> Any:
        """The Transit API with a current token: (re)read or logged in as needed."""
        t = self._target
        with self._lock:
            if t.token_env is not None:
                self.client.token = _env(key_uri, t.token_env)
            elif t.token_file is not None:
                self._read_token_file(key_uri, t.token_file)
            elif t.role_id is not None and time.monotonic() >= self._renew_at:
                self._login(key_uri, t)
        return self.client.secrets.transit

    def _read_token_file(self, key_uri: str, path: str) -> None:
        # Re-read only when the file changed: an agent rotating the token rewrites it.
        try:
            info = os.stat(path)
            stamp = (info.st_mtime, info.st_size)
            if stamp != self._file_stamp:
                self.client.token = Path(path).read_text(encoding="utf-8").strip()
                self._file_stamp = stamp
        except OSError:
            raise KeyUnavailableError(
                f"{key_uri}: cannot read the token file {path}", denied=True
            ) from None

    def _login(self, key_uri: str, t: VaultTarget) -> None:
        if t.secret_id_env is not None:
            secret_id = _env(key_uri, t.secret_id_env)
        else:
            assert t.secret_id_file is not None
            try:
                secret_id = Path(t.secret_id_file).read_text(encoding="utf-8").strip()
            except OSError:
                raise KeyUnavailableError(
                    f"{key_uri}: cannot read the secret id file {t.secret_id_file}", denied=True
                ) from None
        # use_token=True: hvac sets the client's token from the answer.
        try:
            answer = self.client.auth.approle.login(
                role_id=t.role_id, secret_id=secret_id, mount_point=t.approle_mount, use_token=True
            )
        except (self._hvac_errors.InvalidRequest, self._hvac_errors.Forbidden) as exc:
            # A wrong or revoked role / secret id: the customer withdrew vaultd's access.
            raise KeyUnavailableError(
                f"{key_uri}: Vault refused the AppRole login ({type(exc).__name__})", denied=True
            ) from None
        ttl = float(answer.get("auth", {}).get("lease_duration") or 0)
        self._renew_at = (
            time.monotonic() + ttl * (1 - _RELOGIN_BEFORE_FRACTION) if ttl > 0 else float("inf")
        )


def _env(key_uri: str, name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise KeyUnavailableError(f"{key_uri}: environment variable {name} is not set", denied=True)
    return value


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _string(settings: Mapping[str, Any], name: str) -> str | None:
    value = settings.get(name)
    if value is not None and (not isinstance(value, str) or not value):
        raise ProviderSetupError(f"providers.hcvault: {name} must be a non-empty string")
    return value
