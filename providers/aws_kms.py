"""The AWS KMS provider: KEKs wrapped by a tenant's KMS key (BYOK).

A key URI is `aws-kms://<key ARN or alias ARN>[?role_arn=<IAM role ARN>[&external_id=<id>]]`.
wrap is KMS Encrypt with the binding as the EncryptionContext; unwrap is Decrypt with the same
EncryptionContext and the same KeyId, so a wrapped key moved to another binding, or presented
under another key, does not decrypt. The wrapped key is KMS's CiphertextBlob, stored as is.

Keys live where the customer keeps them. The region is the ARN's, per key, so one vaultd serves
keys in any region. A key in another AWS account is used either directly (its key policy grants
vaultd's own principal kms:Encrypt/kms:Decrypt) or through a role the rule names: vaultd assumes
`role_arn` with STS, passing `external_id` (the customer's guard against a confused deputy), and
the temporary credentials refresh themselves before they expire.

boto3 is blocking, so every call runs in a worker thread. There is one client per (region, role,
external id), built on first use and cached: boto3 clients are thread-safe and keep their
connection pool and credentials; sessions are not, so they are only used here, on the event loop
thread. botocore's own retries are off: transient errors are retried by `with_retries`, so one
backoff policy, bounded by the caller's deadline, governs every provider.
"""

from __future__ import annotations

import functools
import os
import re
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
from providers._retry import Breakers, with_retries
from providers._threads import BlockingCalls
from providers._uri import uri_options

SCHEME = "aws-kms"
_PREFIX = f"{SCHEME}://"
_SETTINGS = (
    "region",
    "endpoint_url",
    "sts_endpoint_url",
    "access_key_id",
    "secret_access_key",
    "session_token",
)
_URI_PARAMETERS = frozenset({"role_arn", "external_id"})
_ROLE_ARN = re.compile(r"arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}")
_EXTERNAL_ID = re.compile(r"[\w+=,.@:/-]{2,1224}")  # STS's own constraint on ExternalId
ROLE_SESSION_NAME = "vaultd"
"""How vaultd shows in the customer's CloudTrail when it assumes their role."""
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


# The key itself refused for vaultd (a revocation, in the customer's terms): access denied by
# key policy, IAM or the role's trust policy; key disabled, pending deletion or gone; vaultd's
# credentials not recognised. InvalidCiphertextException / IncorrectKeyException are about one
# wrapped key, not the key, so they are refusals without the flag.
_DENIAL_CODES = frozenset(
    {
        "AccessDeniedException",
        "AccessDenied",
        "DisabledException",
        "KMSInvalidStateException",
        "NotFoundException",
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "ExpiredTokenException",
        "ExpiredToken",
    }
)


@dataclass(frozen=True, slots=True)
class AwsCredentials:
    """Static credentials; without them boto3's default chain (env, profile, role) is used."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class AwsKey:
    """What a key URI names: the key (ARN), where it lives, and how vaultd reaches it."""

    arn: str
    region: str
    account: str
    role_arn: str | None = None
    external_id: str | None = None


def parse_key_uri(key_uri: str) -> AwsKey:
    """The key a URI names, checked before any call so a typo fails with a clear message."""
    rest = key_uri[len(_PREFIX) :] if key_uri.startswith(_PREFIX) else ""
    arn, _, query = rest.partition("?")
    parts = arn.split(":", 5)
    if (
        len(parts) != 6
        or parts[0] != "arn"
        or parts[2] != "kms"
        or not parts[3]
        or not parts[4].isdigit()
        or not parts[5].startswith(("key/", "alias/"))
    ):
        raise KeyUnavailableError(f"{key_uri}: not a KMS key ARN or alias ARN")
    params = uri_options(key_uri, query, _URI_PARAMETERS)
    role_arn = params.get("role_arn")
    external_id = params.get("external_id")
    if role_arn is not None and not _ROLE_ARN.fullmatch(role_arn):
        raise KeyUnavailableError(f"{key_uri}: role_arn is not an IAM role ARN")
    if external_id is not None and role_arn is None:
        raise KeyUnavailableError(f"{key_uri}: external_id needs role_arn")
    if external_id is not None and not _EXTERNAL_ID.fullmatch(external_id):
        raise KeyUnavailableError(f"{key_uri}: external_id is not a valid STS external id")
    return AwsKey(arn, parts[3], parts[4], role_arn, external_id)


class AwsKmsProvider:
    """Wraps KEKs with KMS Encrypt / Decrypt under a customer-managed key."""

    scheme = SCHEME

    def __init__(
        self,
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
        sts_endpoint_url: str | None = None,
        credentials: AwsCredentials | None = None,
        connect_timeout: float = 2.0,
        read_timeout: float = 5.0,
    ) -> None:
        """Every key is used in its own ARN's region; `region`, once the one region of all keys,
        is still accepted so older configs load, and is otherwise unused.

        `endpoint_url` / `sts_endpoint_url` reach a local stand-in (tests); neither means AWS.
        """
        self._boto3 = require("boto3", "aws")
        self._botocore_session = require("botocore.session", "aws")
        self._refreshable = require("botocore.credentials", "aws").DeferredRefreshableCredentials
        botocore_config = require("botocore.config", "aws")
        errors = require("botocore.exceptions", "aws")
        self._client_error = errors.ClientError
        self._network_errors = (errors.ConnectionError, errors.HTTPClientError)
        self._no_credentials = errors.NoCredentialsError
        del region
        self._endpoint_url = endpoint_url
        self._sts_endpoint_url = sts_endpoint_url
        self._credentials = credentials
        self._config = botocore_config.Config(
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries={"total_max_attempts": 1},
        )
        self._clients: dict[tuple[str, str | None, str | None], Any] = {}
        self._breakers = Breakers()
        self._threads = BlockingCalls("aws-kms")

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
            sts_endpoint_url=values.get("sts_endpoint_url"),
            credentials=credentials,
        )

    async def wrap(self, key_uri: str, key: bytes, binding: Binding) -> bytes:
        aws_key = parse_key_uri(key_uri)
        response = await self._call(
            key_uri,
            self._client(aws_key).encrypt,
            KeyId=aws_key.arn,
            Plaintext=key,
            EncryptionContext=dict(binding),
        )
        blob: bytes = response["CiphertextBlob"]
        return blob

    async def unwrap(self, key_uri: str, wrapped: bytes, binding: Binding) -> bytes:
        aws_key = parse_key_uri(key_uri)
        if len(wrapped) > MAX_WRAPPED_BYTES:
            raise KeyUnavailableError(f"{key_uri}: wrapped key is longer than KMS ever returns")
        response = await self._call(
            key_uri,
            self._client(aws_key).decrypt,
            KeyId=aws_key.arn,
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

    def _client(self, key: AwsKey) -> Any:
        """The cached KMS client for the key's region and role; built on the event loop thread."""
        cache_key = (key.region, key.role_arn, key.external_id)
        client = self._clients.get(cache_key)
        if client is None:
            session = self._base_session(key.region)
            if key.role_arn is not None:
                session = self._role_session(session, key)
            client = session.client("kms", endpoint_url=self._endpoint_url, config=self._config)
            self._clients[cache_key] = client
        return client

    def _base_session(self, region: str) -> Any:
        """vaultd's own identity: the static credentials, else boto3's default chain."""
        credentials = self._credentials
        return self._boto3.Session(
            region_name=region,
            aws_access_key_id=credentials.access_key_id if credentials else None,
            aws_secret_access_key=credentials.secret_access_key if credentials else None,
            aws_session_token=credentials.session_token if credentials else None,
        )

    def _role_session(self, base: Any, key: AwsKey) -> Any:
        """A session whose credentials come from STS AssumeRole, fetched on first use (inside a
        worker thread, not here) and refreshed by botocore before they expire."""
        sts = base.client(
            "sts",
            region_name=key.region,  # a regional STS endpoint, as AWS recommends
            endpoint_url=self._sts_endpoint_url,
            config=self._config,
        )
        assume: dict[str, Any] = {"RoleArn": key.role_arn, "RoleSessionName": ROLE_SESSION_NAME}
        if key.external_id is not None:
            assume["ExternalId"] = key.external_id

        def fetch() -> dict[str, str]:
            found = sts.assume_role(**assume)["Credentials"]
            return {
                "access_key": found["AccessKeyId"],
                "secret_key": found["SecretAccessKey"],
                "token": found["SessionToken"],
                "expiry_time": found["Expiration"].isoformat(),
            }

        botocore_session = self._botocore_session.Session()
        # The documented-by-use way to give a session refreshing credentials: boto3 has no
        # public constructor argument for a credentials object.
        botocore_session._credentials = self._refreshable(
            refresh_using=fetch, method="sts-assume-role"
        )
        return self._boto3.Session(botocore_session=botocore_session, region_name=key.region)

    async def _call(self, key_uri: str, method: Any, **params: Any) -> dict[str, Any]:
        async def attempt() -> dict[str, Any]:
            # `from None` throughout: SDK exceptions can carry request parameters, and nothing
            # of a request may reach a log or a client.
            try:
                response: dict[str, Any] = await self._threads.run(
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
                refuser = (
                    "STS refused to assume the role"
                    if getattr(exc, "operation_name", "") == "AssumeRole"
                    else "KMS refused the key"
                )
                raise KeyUnavailableError(
                    f"{key_uri}: {refuser} ({code})", denied=code in _DENIAL_CODES
                ) from None
            except self._network_errors as exc:
                raise ProviderUnavailableError(
                    f"{key_uri}: KMS is unreachable ({type(exc).__name__})"
                ) from None
            except self._no_credentials:
                raise KeyUnavailableError(
                    f"{key_uri}: no AWS credentials are configured", denied=True
                ) from None

        return await with_retries(attempt, key_uri=key_uri, breakers=self._breakers)


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
