"""The Google Cloud KMS provider: KEKs wrapped by a symmetric CryptoKey with Encrypt / Decrypt.

Key URIs are `gcp-kms://projects/<p>/locations/<l>/keyRings/<r>/cryptoKeys/<k>`; the part after
the scheme is the CryptoKey's resource name, and Cloud KMS picks the version (the primary to
encrypt, the one recorded in the ciphertext to decrypt). The binding is sent as
`additional_authenticated_data`, so a wrapped key only decrypts for the item it was made for.

Keys where the customer keeps them. The resource name carries the project and location, so
one provider uses keys in any project and location the identity may use (Cloud KMS routes by
name). A key URI may add `?impersonate=<service account email>`: vaultd then calls Cloud KMS as
that service account, minting short-lived tokens through the IAM Credentials API
(generateAccessToken) with its own identity, which needs roles/iam.serviceAccountTokenCreator
on it. The customer grants roles/cloudkms.cryptoKeyEncrypterDecrypter on the key to their own
service account and the token-creator role on it to vaultd's, and revokes either to cut vaultd
off. There is one set of impersonated credentials per service account, refreshed as they expire.

Every call sends and checks CRC32C checksums as Google's data-integrity guide recommends; a
mismatch is corruption in transit, so it is a transient error and retried. The SDK's own
retries are off: `with_retries` retries inside the caller's deadline, one policy for every
provider.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
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

SCHEME = "gcp-kms"
EXTRA = "gcp"
SETTINGS_KEYS = frozenset({"endpoint", "insecure", "iam_endpoint"})
CALL_TIMEOUT_SECONDS = 10.0
CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
_KEY_NAME = re.compile(
    r"projects/(?P<project>[^/?]+)/locations/(?P<location>[^/?]+)"
    r"/keyRings/[^/?]+/cryptoKeys/[^/?]+"
)
_SERVICE_ACCOUNT = re.compile(r"[a-z0-9][a-z0-9.-]{0,61}@[a-z0-9.-]+\.iam\.gserviceaccount\.com")


def crc32c(data: bytes) -> int:
    """CRC32C (Castagnoli), the checksum Cloud KMS uses, from Google's own google-crc32c."""
    value: int = require("google_crc32c", EXTRA).value(data)
    return value


@dataclass(frozen=True, slots=True)
class GcpKey:
    """What a key URI names: the CryptoKey, where it lives, and whom vaultd acts as."""

    name: str
    project: str
    location: str
    impersonate: str | None = None


def parse_key_uri(key_uri: str) -> GcpKey:
    """The key a `gcp-kms://` URI names, checked before any call."""
    prefix = f"{SCHEME}://"
    rest = key_uri[len(prefix) :] if key_uri.startswith(prefix) else ""
    name, _, query = rest.partition("?")
    match = _KEY_NAME.fullmatch(name)
    if match is None:
        raise KeyUnavailableError(
            f"{key_uri}: not a key URI of the form "
            f"{prefix}projects/P/locations/L/keyRings/R/cryptoKeys/K[?impersonate=SA]"
        )
    params = uri_options(key_uri, query, frozenset({"impersonate"}))
    impersonate = params.get("impersonate")
    if impersonate is not None and not _SERVICE_ACCOUNT.fullmatch(impersonate):
        raise KeyUnavailableError(f"{key_uri}: impersonate is not a service account email")
    return GcpKey(name, match["project"], match["location"], impersonate)


def key_name(key_uri: str) -> str:
    """The CryptoKey resource name a `gcp-kms://` URI names."""
    return parse_key_uri(key_uri).name


class GcpKmsProvider:
    """Wraps KEKs with Cloud KMS Encrypt / Decrypt through the SDK's asyncio client."""

    scheme = SCHEME

    def __init__(
        self,
        *,
        endpoint: str | None = None,
        insecure: bool = False,
        credentials: Any = None,
        call_timeout: float = CALL_TIMEOUT_SECONDS,
        iam_endpoint: str | None = None,
    ) -> None:
        """`endpoint` + `insecure` reach a plaintext local server (tests); neither means Google.

        `credentials` (google.auth) default to Application Default Credentials; with
        `insecure` they are used only to impersonate (none: impersonation is refused).
        `iam_endpoint` (`http(s)://host:port`) replaces the IAM Credentials API (tests).
        """
        if insecure and not endpoint:
            raise ProviderSetupError(f"providers.{SCHEME}: insecure needs an endpoint")
        # Imported here so a missing SDK fails at start-up, naming the extra to install.
        self._kms = require("google.cloud.kms_v1", EXTRA)
        self._exceptions = require("google.api_core.exceptions", EXTRA)
        self._auth_exceptions = require("google.auth.exceptions", EXTRA)
        self._grpc = require("grpc", EXTRA)
        if credentials is None and not insecure:
            # Found now rather than by the client on first use, so missing credentials fail
            # at start-up, not at some tenant's first request.
            try:
                credentials, _ = require("google.auth", EXTRA).default()
            except self._auth_exceptions.DefaultCredentialsError as exc:
                raise ProviderSetupError(
                    f"{SCHEME}: no Google credentials found (set GOOGLE_APPLICATION_CREDENTIALS "
                    "or run on Google Cloud)"
                ) from exc
        self._credentials = credentials
        self._endpoint = endpoint
        self._insecure = insecure
        self._call_timeout = call_timeout
        self._iam_endpoint = iam_endpoint.rstrip("/") if iam_endpoint else None
        self._client: Any = None
        self._breakers = Breakers()
        self._threads = BlockingCalls("gcp-kms")
        self._impersonated: dict[str, Any] = {}
        """Service account -> its impersonated credentials."""
        self._impersonating_clients: dict[str, Any] = {}
        """Service account -> a client calling as it (not used with `insecure`)."""

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> GcpKmsProvider:
        """Build from the config's `providers: {gcp-kms: {...}}` section."""
        unknown = sorted(set(settings) - SETTINGS_KEYS)
        if unknown:
            raise ProviderSetupError(
                f"providers.{SCHEME}: unknown setting {unknown[0]!r} "
                f"(known: {', '.join(sorted(SETTINGS_KEYS))})"
            )
        endpoint = settings.get("endpoint")
        if endpoint is not None and (not isinstance(endpoint, str) or ":" not in endpoint):
            raise ProviderSetupError(f"providers.{SCHEME}.endpoint must be 'host:port'")
        insecure = settings.get("insecure", False)
        if not isinstance(insecure, bool):
            raise ProviderSetupError(f"providers.{SCHEME}.insecure must be true or false")
        iam_endpoint = settings.get("iam_endpoint")
        if iam_endpoint is not None and (
            not isinstance(iam_endpoint, str)
            or not iam_endpoint.startswith(("http://", "https://"))
        ):
            raise ProviderSetupError(f"providers.{SCHEME}.iam_endpoint must be an http(s) URL")
        return cls(endpoint=endpoint, insecure=insecure, iam_endpoint=iam_endpoint)

    def _get_client(self) -> Any:
        # Built on first use, inside the running loop: a grpc.aio channel belongs to the loop
        # it was made on.
        if self._client is not None:
            return self._client
        kms = self._kms
        if self._insecure:
            # An explicit plaintext channel: `client_options(api_endpoint=...)` would build a TLS
            # channel, which a local server never answers. Reconnect backoff capped at 1 s so
            # a server that comes back is used within a second, not after gRPC's default
            # backoff of up to 120 s.
            channel = self._grpc.aio.insecure_channel(
                self._endpoint,
                options=[
                    ("grpc.initial_reconnect_backoff_ms", 100),
                    ("grpc.min_reconnect_backoff_ms", 100),
                    ("grpc.max_reconnect_backoff_ms", 1000),
                ],
            )
            # Anonymous: the SDK ignores credentials once it has a channel, but says so plainly.
            anonymous = require("google.auth.credentials", EXTRA).AnonymousCredentials()
            transports = kms.services.key_management_service.transports
            transport = transports.KeyManagementServiceGrpcAsyncIOTransport(
                channel=channel, credentials=anonymous
            )
            self._client = kms.KeyManagementServiceAsyncClient(transport=transport)
        else:
            options = {"api_endpoint": self._endpoint} if self._endpoint else None
            self._client = kms.KeyManagementServiceAsyncClient(
                credentials=self._credentials, client_options=options
            )
        return self._client

    def _impersonation(self, key_uri: str, service_account: str) -> Any:
        """The impersonated credentials for a service account, made once."""
        found = self._impersonated.get(service_account)
        if found is None:
            if self._credentials is None:
                raise KeyUnavailableError(
                    f"{key_uri}: impersonation needs Google credentials for vaultd itself"
                )
            impersonated = require("google.auth.impersonated_credentials", EXTRA)
            override = (
                f"{self._iam_endpoint}/v1/projects/-/serviceAccounts/"
                f"{service_account}:generateAccessToken"
                if self._iam_endpoint
                else None
            )
            found = impersonated.Credentials(
                source_credentials=self._credentials,
                target_principal=service_account,
                target_scopes=[CLOUD_PLATFORM_SCOPE],
                iam_endpoint_override=override,
            )
            self._impersonated[service_account] = found
        return found

    async def _client_and_metadata(self, key: GcpKey, key_uri: str) -> tuple[Any, list[Any]]:
        """The client to call for this key, and metadata to send with the call."""
        if key.impersonate is None:
            return self._get_client(), []
        credentials = self._impersonation(key_uri, key.impersonate)
        if not self._insecure:
            client = self._impersonating_clients.get(key.impersonate)
            if client is None:
                options = {"api_endpoint": self._endpoint} if self._endpoint else None
                client = self._kms.KeyManagementServiceAsyncClient(
                    credentials=credentials, client_options=options
                )
                self._impersonating_clients[key.impersonate] = client
            return client, []
        # A plaintext channel carries no call credentials, so the token goes as metadata,
        # minted (blocking HTTP) in a worker thread when it is missing or about to expire.
        if not credentials.valid:
            request = require("google.auth.transport.requests", EXTRA).Request()
            await self._threads.run(lambda: credentials.refresh(request))
        return self._get_client(), [("authorization", f"Bearer {credentials.token}")]

    async def close(self) -> None:
        if self._client is not None:
            await self._client.transport.close()
            self._client = None
        for client in self._impersonating_clients.values():
            await client.transport.close()
        self._impersonating_clients.clear()

    async def wrap(self, key_uri: str, key: bytes, binding: Binding) -> bytes:
        gcp_key = parse_key_uri(key_uri)
        name = gcp_key.name
        aad = canonical_binding(binding)
        request = self._kms.EncryptRequest(
            name=name,
            plaintext=key,
            additional_authenticated_data=aad,
            plaintext_crc32c=crc32c(key),
            additional_authenticated_data_crc32c=crc32c(aad),
        )

        async def attempt() -> bytes:
            response = await self._call("encrypt", key_uri, gcp_key, request)
            # A false flag means our checksum never reached the service; a wrong checksum or
            # name means the response was damaged, or came from some other key.
            if not (
                response.verified_plaintext_crc32c
                and response.verified_additional_authenticated_data_crc32c
                and response.ciphertext_crc32c == crc32c(response.ciphertext)
                and _is_version_of(response.name, name)
            ):
                raise ProviderUnavailableError(
                    f"{key_uri}: Encrypt response failed its integrity check"
                )
            return bytes(response.ciphertext)

        return await with_retries(attempt, key_uri=key_uri, breakers=self._breakers)

    async def unwrap(self, key_uri: str, wrapped: bytes, binding: Binding) -> bytes:
        gcp_key = parse_key_uri(key_uri)
        name = gcp_key.name
        aad = canonical_binding(binding)
        request = self._kms.DecryptRequest(
            name=name,
            ciphertext=wrapped,
            additional_authenticated_data=aad,
            ciphertext_crc32c=crc32c(wrapped),
            additional_authenticated_data_crc32c=crc32c(aad),
        )

        async def attempt() -> bytes:
            response = await self._call("decrypt", key_uri, gcp_key, request)
            if response.plaintext_crc32c != crc32c(response.plaintext):
                raise ProviderUnavailableError(
                    f"{key_uri}: Decrypt response failed its integrity check"
                )
            return bytes(response.plaintext)

        return await with_retries(attempt, key_uri=key_uri, breakers=self._breakers)

    async def verify(self, key_uri: str) -> None:
        probe = os.urandom(32)
        binding = {"vaultd:verify": SCHEME}
        if await self.unwrap(key_uri, await self.wrap(key_uri, probe, binding), binding) != probe:
            raise KeyUnavailableError(f"{key_uri}: round trip returned a different key")

    async def _call(self, method: str, key_uri: str, key: GcpKey, request: Any) -> Any:
        """One attempt, with the SDK's error mapped onto vaultd's two provider errors."""
        exc = self._exceptions
        try:
            client, metadata = await self._client_and_metadata(key, key_uri)
            call = getattr(client, method)
            # retry=None: the SDK would otherwise retry UNAVAILABLE for up to a minute on its own.
            return await call(
                request=request, retry=None, timeout=self._call_timeout, metadata=metadata
            )
        except self._grpc.RpcError as error:
            # Raised unwrapped on some paths (e.g. while the channel connects).
            raise self._mapped(key_uri, exc.from_grpc_error(error)) from error
        except exc.GoogleAPICallError as error:
            raise self._mapped(key_uri, error) from error
        except self._auth_exceptions.TransportError as error:
            raise ProviderUnavailableError(
                f"{key_uri}: cannot reach Google's token service"
            ) from error
        except self._auth_exceptions.RefreshError as error:
            # Includes IAM refusing to let vaultd impersonate the rule's service account.
            if _is_transient_refresh(error):
                raise ProviderUnavailableError(
                    f"{key_uri}: Google's token service is unavailable"
                ) from None
            raise KeyUnavailableError(
                f"{key_uri}: Google refused vaultd's credentials or impersonation", denied=True
            ) from None

    def _mapped(self, key_uri: str, error: Any) -> KeyUnavailableError | ProviderUnavailableError:
        exc = self._exceptions
        code = getattr(error.grpc_status_code, "name", None) or str(error.code)
        if isinstance(error, exc.InvalidArgument) and "crc32c" in str(error.message).lower():
            # The service saw our checksum not match the data: damaged on the way there.
            return ProviderUnavailableError(f"{key_uri}: request damaged in transit ({code})")
        if isinstance(
            error,
            exc.PermissionDenied
            | exc.Unauthenticated
            | exc.NotFound
            | exc.FailedPrecondition
            | exc.InvalidArgument,
        ):
            # Denied, unknown, disabled or destroyed key, or a ciphertext / AAD that does not
            # authenticate under it: retrying cannot help. Only the last is about one blob.
            return KeyUnavailableError(
                f"{key_uri}: Cloud KMS refused the key ({code})",
                denied=not isinstance(error, exc.InvalidArgument),
            )
        # ServiceUnavailable, DeadlineExceeded, InternalServerError, ResourceExhausted and
        # anything else the server did: transient as far as we can tell, so retried.
        return ProviderUnavailableError(f"{key_uri}: Cloud KMS unavailable ({code})")


def _is_version_of(version_name: str, key: str) -> bool:
    """Encrypt answers with the CryptoKeyVersion it used: `<key>/cryptoKeyVersions/<n>`."""
    prefix, sep, version = version_name.rpartition("/cryptoKeyVersions/")
    return bool(sep) and prefix == key and version.isdigit()


def _is_transient_refresh(error: Exception) -> bool:
    """Whether a failed token refresh was the token service failing, not a refusal.

    google-auth marks some refreshes retryable; an impersonation refused or failed carries the
    IAM Credentials API's error body (`{"error": {"code": 403, ...}}`) as its second argument.
    """
    if getattr(error, "retryable", False):
        return True
    body = error.args[1] if len(error.args) > 1 else None
    try:
        code = int(json.loads(body)["error"]["code"]) if isinstance(body, str | bytes) else 0
    except (ValueError, KeyError, TypeError):
        code = 0
    return code == 429 or code >= 500
