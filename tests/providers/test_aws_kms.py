"""The AWS KMS provider: the real boto3 client, over a real socket, against moto's server
(testkit/standins/aws.py)."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from providers import (
    KeyUnavailableError,
    ProviderError,
    ProviderSetupError,
    ProviderUnavailableError,
)
from providers._retry import MAX_ATTEMPTS, with_retries
from providers.aws_kms import AwsCredentials, AwsKmsProvider
from testkit.standins.aws import CUSTOMER_ACCOUNT, OTHER_REGION, REGION, AwsKmsStandIn

T = TypeVar("T")
BINDING = {"organization_id": "org_123", "vaultd:kek": "kek_1"}


@pytest.fixture
def standin(aws_kms_standin: AwsKmsStandIn) -> AwsKmsStandIn:
    return aws_kms_standin


@pytest.fixture(scope="module")
def provider(aws_kms_standin: AwsKmsStandIn) -> AwsKmsProvider:
    """One provider for the module, configured the way vaultd's config file would configure it.

    Shared, as vaultd shares one per process: the tests also show it survives revocations and
    outages without being rebuilt.
    """
    return AwsKmsProvider.from_settings(aws_kms_standin.provider_settings)


def _new_key(standin: AwsKmsStandIn) -> tuple[str, str]:
    name = f"k-{os.urandom(4).hex()}"
    return name, standin.create_key(name)


def _assert_no_secret(error: ProviderError, secret: bytes) -> None:
    text = str(error)
    assert secret.hex() not in text and repr(secret) not in text


async def test_round_trip_sends_one_encrypt_and_one_decrypt(
    provider: AwsKmsProvider, standin: AwsKmsStandIn
) -> None:
    _, uri = _new_key(standin)
    key = os.urandom(32)
    before = standin.calls.copy()

    wrapped = await provider.wrap(uri, key, BINDING)
    assert key not in wrapped and len(wrapped) > len(key)
    assert await provider.unwrap(uri, wrapped, BINDING) == key

    assert standin.calls - before == {"wrap": 1, "unwrap": 1}


async def test_an_alias_arn_names_the_same_key(
    provider: AwsKmsProvider, standin: AwsKmsStandIn
) -> None:
    name, uri = _new_key(standin)
    key = os.urandom(32)

    wrapped = await provider.wrap(standin.alias_uri(name), key, BINDING)

    assert await provider.unwrap(standin.alias_uri(name), wrapped, BINDING) == key
    assert await provider.unwrap(uri, wrapped, BINDING) == key


async def test_unwrap_under_another_binding_or_key_fails_without_the_key(
    provider: AwsKmsProvider, standin: AwsKmsStandIn
) -> None:
    _, uri = _new_key(standin)
    _, other_uri = _new_key(standin)
    key = os.urandom(32)
    wrapped = await provider.wrap(uri, key, BINDING)
    before = standin.calls["unwrap"]

    with pytest.raises(KeyUnavailableError, match="InvalidCiphertextException") as caught:
        await provider.unwrap(uri, wrapped, {**BINDING, "organization_id": "org_other"})
    assert uri in str(caught.value)
    _assert_no_secret(caught.value, key)

    # Decrypt names the key it expects: a wrapped key presented under another key fails too.
    with pytest.raises(KeyUnavailableError) as caught:
        await provider.unwrap(other_uri, wrapped, BINDING)
    assert other_uri in str(caught.value)
    _assert_no_secret(caught.value, key)

    assert standin.calls["unwrap"] - before == 2, "a refusal is not worth retrying"


async def test_revoked_key_is_unavailable_and_restoring_needs_no_new_provider(
    provider: AwsKmsProvider, standin: AwsKmsStandIn
) -> None:
    _, uri = _new_key(standin)
    key = os.urandom(32)
    wrapped = await provider.wrap(uri, key, BINDING)

    standin.revoke(uri)
    before = standin.calls.copy()
    with pytest.raises(KeyUnavailableError) as on_unwrap:
        await provider.unwrap(uri, wrapped, BINDING)
    with pytest.raises(KeyUnavailableError) as on_wrap:
        await provider.wrap(uri, key, BINDING)
    with pytest.raises(KeyUnavailableError):
        await provider.verify(uri)
    for error in (on_unwrap.value, on_wrap.value):
        assert uri in str(error) and "AccessDeniedException" in str(error)
        _assert_no_secret(error, key)
    assert standin.calls - before == {"wrap": 2, "unwrap": 1}, "no retries on a denied key"

    standin.restore(uri)
    assert await provider.unwrap(uri, wrapped, BINDING) == key
    await provider.verify(uri)


@pytest.mark.parametrize(
    "error_type",
    [
        "AccessDeniedException",
        "DisabledException",
        "NotFoundException",
        "KMSInvalidStateException",
        "IncorrectKeyException",
        "InvalidCiphertextException",
    ],
)
async def test_key_errors_are_key_unavailable_at_once(
    provider: AwsKmsProvider, standin: AwsKmsStandIn, error_type: str
) -> None:
    _, uri = _new_key(standin)
    before = standin.calls["wrap"]

    standin.fail_next(error_type, 400)
    with pytest.raises(KeyUnavailableError, match=error_type) as caught:
        await provider.wrap(uri, os.urandom(32), BINDING)

    assert uri in str(caught.value)
    assert standin.calls["wrap"] - before == 1
    # A denial is about the key; a ciphertext the key cannot open is about that one blob.
    assert caught.value.denied == (
        error_type not in {"IncorrectKeyException", "InvalidCiphertextException"}
    )


@pytest.mark.parametrize(
    ("error_type", "status"),
    [
        ("ThrottlingException", 400),
        ("KMSInternalException", 500),
        ("DependencyTimeoutException", 503),
        ("KeyUnavailableException", 500),
        ("SomeFutureServerError", 503),  # not a code it knows: the 5xx status decides
    ],
)
async def test_transient_errors_are_retried_a_bounded_number_of_times(
    provider: AwsKmsProvider, standin: AwsKmsStandIn, error_type: str, status: int
) -> None:
    _, uri = _new_key(standin)
    key = os.urandom(32)
    before = standin.calls["wrap"]

    standin.fail_next(error_type, status)
    wrapped = await provider.wrap(uri, key, BINDING)
    assert standin.calls["wrap"] - before == 2

    standin.fail_next(error_type, status, times=MAX_ATTEMPTS)
    with pytest.raises(ProviderUnavailableError, match=error_type) as caught:
        await provider.wrap(uri, key, BINDING)
    assert uri in str(caught.value)
    assert standin.calls["wrap"] - before == 2 + MAX_ATTEMPTS
    assert await provider.unwrap(uri, wrapped, BINDING) == key


async def test_outage_is_unavailable_within_the_deadline_and_recovery_needs_no_restart(
    provider: AwsKmsProvider, standin: AwsKmsStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, uri = _new_key(standin)
    key = os.urandom(32)
    wrapped = await provider.wrap(uri, key, BINDING)

    # Count attempts on the client side, through the real retry loop: a stopped server sees none.
    attempts = 0

    def counting_retries(call: Callable[[], Awaitable[T]], **options: Any) -> Awaitable[T]:
        async def counted() -> T:
            nonlocal attempts
            attempts += 1
            return await call()

        return with_retries(counted, **options)

    monkeypatch.setattr("providers.aws_kms.with_retries", counting_retries)

    standin.stop()
    try:
        started = time.monotonic()
        async with asyncio.timeout(5):
            with pytest.raises(ProviderUnavailableError, match="unreachable") as caught:
                await provider.unwrap(uri, wrapped, BINDING)
        assert time.monotonic() - started < 5
        assert uri in str(caught.value)
        _assert_no_secret(caught.value, key)
        assert attempts == MAX_ATTEMPTS
    finally:
        standin.start()

    assert await provider.unwrap(uri, wrapped, BINDING) == key
    await provider.verify(uri)


async def test_uris_it_cannot_use_fail_before_any_call(
    provider: AwsKmsProvider, standin: AwsKmsStandIn
) -> None:
    before = standin.calls.copy()
    for uri, reason in [
        ("aws-kms://1234abcd-12ab-34cd-56ef-1234567890ab", "not a KMS key ARN"),
        ("aws-kms://arn:aws:s3:us-east-1:123456789012:key/x", "not a KMS key ARN"),
        ("aws-kms://arn:aws:kms::123456789012:key/x", "not a KMS key ARN"),
        (f"{_KEY}?role=x", "unknown parameter"),
        (f"{_KEY}?external_id=abc", "external_id needs role_arn"),
        (f"{_KEY}?role_arn=arn:aws:iam::123:role/r", "not an IAM role ARN"),
        (f"{_KEY}?role_arn={_ROLE}&role_arn={_ROLE}", "more than once"),
        (f"{_KEY}?role_arn={_ROLE}&external_id=a", "not a valid STS external id"),
        (f"{_KEY}?role_arn", "not name=value"),
    ]:
        with pytest.raises(KeyUnavailableError, match=reason) as caught:
            await provider.wrap(uri, os.urandom(32), BINDING)
        assert uri in str(caught.value)
    assert standin.calls == before


async def test_an_unknown_key_is_unavailable(
    provider: AwsKmsProvider, standin: AwsKmsStandIn
) -> None:
    uri = "aws-kms://arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000000"
    with pytest.raises(KeyUnavailableError, match="NotFoundException"):
        await provider.wrap(uri, os.urandom(32), BINDING)


_KEY = "aws-kms://arn:aws:kms:eu-west-1:222222222222:key/x"
_ROLE = "arn:aws:iam::222222222222:role/vaultd"


async def test_a_key_in_another_region_is_used_in_its_own_region(
    provider: AwsKmsProvider, standin: AwsKmsStandIn
) -> None:
    name = f"k-{os.urandom(4).hex()}"
    uri = standin.create_key(name, region=OTHER_REGION)
    assert f":{OTHER_REGION}:" in uri
    key = os.urandom(32)

    wrapped = await provider.wrap(uri, key, BINDING)

    assert await provider.unwrap(uri, wrapped, BINDING) == key
    assert (
        await provider.unwrap(standin.alias_uri(name, region=OTHER_REGION), wrapped, BINDING) == key
    )
    # moto keeps one backend per region: the same ARN in the default region does not exist, so
    # the round trip above shows the call went to the key's own region.
    wrong_region = uri.replace(f":{OTHER_REGION}:", f":{REGION}:")
    with pytest.raises(KeyUnavailableError, match="NotFoundException") as caught:
        await provider.unwrap(wrong_region, wrapped, BINDING)
    assert caught.value.denied


async def test_a_customer_account_key_through_an_assumed_role_with_external_id(
    standin: AwsKmsStandIn,
) -> None:
    provider = AwsKmsProvider.from_settings(standin.provider_settings)
    external_id = f"ext-{os.urandom(6).hex()}"
    role_arn = standin.add_role(
        f"vaultd-{os.urandom(3).hex()}", account=CUSTOMER_ACCOUNT, external_id=external_id
    )
    key_arn_uri = standin.create_key(
        f"k-{os.urandom(4).hex()}", region=OTHER_REGION, account=CUSTOMER_ACCOUNT
    )
    uri = f"{key_arn_uri}?role_arn={role_arn}&external_id={external_id}"
    key = os.urandom(32)
    before = standin.calls.copy()

    wrapped = [await provider.wrap(uri, key, BINDING) for _ in range(3)]
    assert [await provider.unwrap(uri, w, BINDING) for w in wrapped] == [key] * 3

    # Credentials are assumed once and kept by the one cached client for (region, role).
    assert standin.calls - before == {"assume_role": 1, "wrap": 3, "unwrap": 3}
    assert list(provider._clients) == [(OTHER_REGION, role_arn, external_id)]

    # vaultd's own identity cannot see the customer's account: without the role, not found.
    with pytest.raises(KeyUnavailableError, match="NotFoundException"):
        await provider.unwrap(key_arn_uri, wrapped[0], BINDING)

    # The customer revokes through the key policy: refused at once, flagged as a denial.
    standin.revoke(key_arn_uri)
    with pytest.raises(KeyUnavailableError, match="AccessDeniedException") as caught:
        await provider.unwrap(uri, wrapped[0], BINDING)
    assert caught.value.denied
    standin.restore(key_arn_uri)
    assert await provider.unwrap(uri, wrapped[0], BINDING) == key


async def test_assume_role_refused_is_a_denial_and_calls_no_kms(
    standin: AwsKmsStandIn,
) -> None:
    provider = AwsKmsProvider.from_settings(standin.provider_settings)
    role_arn = standin.add_role(
        f"vaultd-{os.urandom(3).hex()}", account=CUSTOMER_ACCOUNT, external_id="right-id"
    )
    key_uri = standin.create_key(f"k-{os.urandom(4).hex()}", account=CUSTOMER_ACCOUNT)
    before = standin.calls.copy()

    for query in (f"role_arn={role_arn}&external_id=wrong-id", f"role_arn={role_arn}"):
        with pytest.raises(KeyUnavailableError, match=r"STS refused .*AccessDenied") as caught:
            await provider.wrap(f"{key_uri}?{query}", os.urandom(32), BINDING)
        assert caught.value.denied
        assert "right-id" not in str(caught.value)

    assert standin.calls - before == {"assume_role": 2}


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"region": "us-east-1", "profile": "prod"}, "profile"),
        ({"region": "us-east-1", "endpoint": "http://x", "kms_url": "y"}, "endpoint, kms_url"),
        ({"region": 1}, "region must be a non-empty string"),
        ({"region": "us-east-1", "access_key_id": "AKIA"}, "must be given together"),
    ],
)
def test_from_settings_rejects_bad_settings(settings: dict[str, Any], named: str) -> None:
    with pytest.raises(ProviderSetupError, match=named) as caught:
        AwsKmsProvider.from_settings(settings)
    assert "providers.aws-kms" in str(caught.value)


def test_secrets_stay_out_of_setup_errors_and_reprs() -> None:
    secret = "wJalrXUtnFEMI-not-a-real-secret"
    with pytest.raises(ProviderSetupError) as caught:
        AwsKmsProvider.from_settings({"secret_access_key": secret, "region": "us-east-1"})
    assert secret not in str(caught.value)
    assert secret not in repr(AwsCredentials("AKIAEXAMPLE", secret, "session-" + secret))


def test_missing_sdk_is_a_setup_error_naming_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    # None in sys.modules makes the import fail as if the package were not installed.
    monkeypatch.setitem(sys.modules, "boto3", None)
    with pytest.raises(ProviderSetupError, match=r"pip install 'vaultd\[aws\]'"):
        AwsKmsProvider.from_settings({"region": "us-east-1"})
