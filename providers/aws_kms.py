"""The AWS KMS provider: KEKs wrapped by a tenant's KMS key (BYOK).

A key URI is `aws-kms://<key ARN or alias ARN>`. wrap is KMS Encrypt with the binding as the
EncryptionContext; unwrap is Decrypt with the same EncryptionContext and the same KeyId, so a
wrapped key moved to another binding, or presented under another key, does not decrypt. The
wrapped key is KMS's CiphertextBlob, stored as is.

boto3 is blocking, so every call runs in a worker thread. The client is built once (boto3
clients are thread-safe; sessions are not). botocore's own retries are off: transient errors
are retried by `with_retries`, so one backoff policy, bounded by the caller's deadline, governs
every provider.
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from providers import (
    Binding,
    KeyUnavailableError,
    ProviderSetupError,
    ProviderUnavailableError,
    require,
)
from providers._retry import with_retries

SCHEME = "aws-kms"
_PREFIX = f"{SCHEME}://"
_SETTINGS = ("region", "endpoint_url", "access_key_id", "secret_access_key", "session_token")
MAX_WRAPPED_BYTES = 6144
"""KMS's documented CiphertextBlob maximum: a longer stored value is corrupt, not worth a call."""

# Retryable by AWS's own account of them. KeyUnavailableException is here, not with the key
# errors: KMS documents it as HTTP 500 "you can retry" (a custom key store briefly unreachable);
# a disabled or pending-deletion key has its own codes (DisabledException,
# KMSInvalidStateException). Any other 5xx is transient too; any other 4xx is a refusal.
_TRANSIENT_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "RequestLimitExceeded",
        "KMSInternalException",
        "DependencyTimeoutException",
        "KeyUnavailableException",
    }
)


@dataclass(frozen=True, slots=True)
class AwsCredentials:
    """Static credentials; without them boto3's default chain (env, profile, role) is used."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)


class AwsKmsProvider:
    """Wraps KEKs with KMS Encrypt / Decrypt under a customer-managed key."""

    scheme = SCHEME

    def __init__(
        self,
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
        credentials: AwsCredentials | None = None,
        connect_timeout: float = 2.0,
        read_timeout: float = 5.0,
    ) -> None:
        boto3 = require("boto3", "aws")
        botocore_config = require("botocore.config", "aws")
        errors = require("botocore.exceptions", "aws")
        self._client_error = errors.ClientError
        self._network_errors = (errors.ConnectionError, errors.HTTPClientError)
        self._no_credentials = errors.NoCredentialsError
        session = boto3.Session(
            region_name=region,
            aws_access_key_id=credentials.access_key_id if credentials else None,
            aws_secret_access_key=credentials.secret_access_key if credentials else None,
            aws_session_token=credentials.session_token if credentials else None,
        )
        config = botocore_config.Config(
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries={"total_max_attempts": 1},
        )
        try:
            self._client = session.client("kms", endpoint_url=endpoint_url, config=config)
        except errors.NoRegionError:
            raise ProviderSetupError(
                "providers.aws-kms: no region; set `region` or AWS_REGION"
            ) from None
        self._region: str = self._client.meta.region_name

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> AwsKmsProvider:
        """Build from the config section `providers: {aws-kms: ...}`; bad settings fail here."""
        values = _strings(settings)
        access, secret = values.get("access_key_id"), values.get("secret_access_key")
        if (access is None) != (secret is None):
            raise ProviderSetupError(
                "providers.aws-kms: access_key_id and secret_access_key must be given together"
            )
        if "session_token" in values and access is None:
            raise ProviderSetupError("providers.aws-kms: session_token needs access_key_id")
        credentials = (
            AwsCredentials(access, secret, values.get("session_token"))
            if access is not None and secret is not None
            else None
        )
        return cls(
            region=values.get("region"),
            endpoint_url=values.get("endpoint_url"),
            credentials=credentials,
        )

    async def wrap(self, key_uri: str, key: bytes, binding: Binding) -> bytes:
        response = await self._call(
            key_uri,
            self._client.encrypt,
            KeyId=self._key_id(key_uri),
            Plaintext=key,
            EncryptionContext=dict(binding),
        )
        blob: bytes = response["CiphertextBlob"]
        return blob

    async def unwrap(self, key_uri: str, wrapped: bytes, binding: Binding) -> bytes:
        key_id = self._key_id(key_uri)
        if len(wrapped) > MAX_WRAPPED_BYTES:
            raise KeyUnavailableError(f"{key_uri}: wrapped key is longer than KMS ever returns")
        response = await self._call(
            key_uri,
            self._client.decrypt,
            KeyId=key_id,
            CiphertextBlob=wrapped,
            EncryptionContext=dict(binding),
        )
        plain: bytes = response["Plaintext"]
        return plain

    async def verify(self, key_uri: str) -> None:
        probe = os.urandom(32)
        binding = {"vaultd:verify": SCHEME}
        if await self.unwrap(key_uri, await self.wrap(key_uri, probe, binding), binding) != probe:
            raise KeyUnavailableError(f"{key_uri}: round trip returned a different key")

    def _key_id(self, key_uri: str) -> str:
        """The ARN in the URI, checked before any call so a typo fails with a clear message."""
        arn = key_uri[len(_PREFIX) :] if key_uri.startswith(_PREFIX) else ""
        parts = arn.split(":", 5)
        if (
            len(parts) != 6
            or parts[0] != "arn"
            or parts[2] != "kms"
            or not parts[5].startswith(("key/", "alias/"))
        ):
            raise KeyUnavailableError(f"{key_uri}: not a KMS key ARN or alias ARN")
        # KMS keys are regional and the client is built for one region; KMS would answer a
        # foreign-region ARN with a NotFound that hides the real mistake.
        if parts[3] != self._region:
            raise KeyUnavailableError(
                f"{key_uri}: key is in {parts[3]}, the aws-kms provider uses {self._region}"
            )
        return arn

    async def _call(self, key_uri: str, method: Any, **params: Any) -> dict[str, Any]:
        async def attempt() -> dict[str, Any]:
            # `from None` throughout: SDK exceptions can carry request parameters, and nothing
            # of a request may reach a log or a client.
            try:
                response: dict[str, Any] = await asyncio.to_thread(
                    functools.partial(method, **params)
                )
                return response
            except self._client_error as exc:
                code = str(exc.response.get("Error", {}).get("Code", "unknown"))
                status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
                if code in _TRANSIENT_CODES or status >= 500:
                    raise ProviderUnavailableError(
                        f"{key_uri}: KMS is unavailable ({code})"
                    ) from None
                raise KeyUnavailableError(f"{key_uri}: KMS refused the key ({code})") from None
            except self._network_errors as exc:
                raise ProviderUnavailableError(
                    f"{key_uri}: KMS is unreachable ({type(exc).__name__})"
                ) from None
            except self._no_credentials:
                raise KeyUnavailableError(f"{key_uri}: no AWS credentials are configured") from None

        return await with_retries(attempt)


def _strings(settings: Mapping[str, Any]) -> dict[str, str]:
    """The settings, each a known name with a non-empty string value, or a setup error."""
    unknown = sorted(set(settings) - set(_SETTINGS))
    if unknown:
        raise ProviderSetupError(
            f"providers.aws-kms: unknown setting(s) {', '.join(unknown)}; "
            f"known: {', '.join(_SETTINGS)}"
        )
    for name, value in settings.items():
        if not isinstance(value, str) or not value:
            raise ProviderSetupError(f"providers.aws-kms: {name} must be a non-empty string")
    return dict(settings)
