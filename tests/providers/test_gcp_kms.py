"""The Google Cloud KMS provider: the real google-cloud-kms asyncio client, over a real socket,
against the in-process stand-in of testkit/standins/gcp.py."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from google.auth.credentials import AnonymousCredentials
from google.cloud import kms_v1

from providers import (
    KeyUnavailableError,
    ProviderError,
    ProviderSetupError,
    ProviderUnavailableError,
    canonical_binding,
)
from providers._retry import BREAKER_COOL_DOWN_SECONDS, MAX_ATTEMPTS
from providers.gcp_kms import GcpKmsProvider
from testkit.standins.gcp import GcpKmsStandIn

BINDING = {"organization_id": "org_123"}


@pytest.fixture
def standin(gcp_kms_standin: GcpKmsStandIn) -> GcpKmsStandIn:
    return gcp_kms_standin


@pytest_asyncio.fixture
async def provider(standin: GcpKmsStandIn) -> AsyncIterator[GcpKmsProvider]:
    """A provider configured the way vaultd's config file would configure it."""
    provider = GcpKmsProvider.from_settings(standin.provider_settings)
    yield provider
    await provider.close()


def _key_uri(standin: GcpKmsStandIn) -> str:
    return standin.create_key(f"k-{os.urandom(4).hex()}")


def _assert_no_secret(error: ProviderError, secret: bytes) -> None:
    text = str(error)
    assert secret.hex() not in text and repr(secret) not in text


async def test_round_trip_sends_one_encrypt_and_one_decrypt_with_the_binding(
    provider: GcpKmsProvider, standin: GcpKmsStandIn
) -> None:
    uri = _key_uri(standin)
    key = os.urandom(32)
    before = standin.calls.copy()

    wrapped = await provider.wrap(uri, key, BINDING)
    assert key not in wrapped and len(wrapped) > len(key)
    assert await provider.unwrap(uri, wrapped, BINDING) == key

    assert standin.calls["wrap"] - before["wrap"] == 1
    assert standin.calls["unwrap"] - before["unwrap"] == 1
    assert standin.aads[-2:] == [canonical_binding(BINDING)] * 2


async def test_unwrap_under_another_binding_fails_without_the_key(
    provider: GcpKmsProvider, standin: GcpKmsStandIn
) -> None:
    uri = _key_uri(standin)
    key = os.urandom(32)
    wrapped = await provider.wrap(uri, key, BINDING)
    before = standin.calls["unwrap"]

    with pytest.raises(KeyUnavailableError) as caught:
        await provider.unwrap(uri, wrapped, {"organization_id": "org_other"})

    assert uri in str(caught.value)
    _assert_no_secret(caught.value, key)
    assert standin.calls["unwrap"] - before == 1, "a bad ciphertext is not worth retrying"


async def test_disabled_key_is_unavailable_and_re_enabling_restores_it(
    provider: GcpKmsProvider, standin: GcpKmsStandIn
) -> None:
    uri = _key_uri(standin)
    key = os.urandom(32)
    wrapped = await provider.wrap(uri, key, BINDING)

    standin.revoke(uri)
    before = standin.calls.copy()
    with pytest.raises(KeyUnavailableError) as on_unwrap:
        await provider.unwrap(uri, wrapped, BINDING)
    with pytest.raises(KeyUnavailableError) as on_wrap:
        await provider.wrap(uri, key, BINDING)
    for error in (on_unwrap.value, on_wrap.value):
        assert uri in str(error) and "FAILED_PRECONDITION" in str(error)
        _assert_no_secret(error, key)
    assert standin.calls - before == {"wrap": 1, "unwrap": 1}, "no retries on a disabled key"

    standin.restore(uri)
    assert await provider.unwrap(uri, wrapped, BINDING) == key
    await provider.verify(uri)


async def test_unknown_key_and_malformed_uri_are_unavailable(
    provider: GcpKmsProvider, standin: GcpKmsStandIn
) -> None:
    unknown = "gcp-kms://projects/vaultd-test/locations/global/keyRings/vaultd/cryptoKeys/nope"
    with pytest.raises(KeyUnavailableError, match="NOT_FOUND") as caught:
        await provider.wrap(unknown, os.urandom(32), BINDING)
    assert unknown in str(caught.value)

    with pytest.raises(KeyUnavailableError, match="not a key URI"):
        await provider.wrap("gcp-kms://projects/p/cryptoKeys/k", os.urandom(32), BINDING)


async def test_a_corrupted_response_is_retried(
    provider: GcpKmsProvider, standin: GcpKmsStandIn
) -> None:
    uri = _key_uri(standin)
    key = os.urandom(32)
    before = standin.calls.copy()

    standin.corrupt_next(1)
    wrapped = await provider.wrap(uri, key, BINDING)
    standin.corrupt_next(1)
    assert await provider.unwrap(uri, wrapped, BINDING) == key

    assert standin.calls - before == {"wrap": 2, "unwrap": 2}


async def test_a_response_that_stays_corrupted_is_provider_unavailable(
    provider: GcpKmsProvider, standin: GcpKmsStandIn
) -> None:
    uri = _key_uri(standin)
    key = os.urandom(32)
    wrapped = await provider.wrap(uri, key, BINDING)
    before = standin.calls.copy()

    standin.corrupt_next(MAX_ATTEMPTS)
    with pytest.raises(ProviderUnavailableError, match="integrity") as caught:
        await provider.unwrap(uri, wrapped, BINDING)

    _assert_no_secret(caught.value, key)
    assert standin.calls - before == {"unwrap": MAX_ATTEMPTS}


async def test_a_request_checksum_the_service_rejects_is_retried_then_unavailable(
    provider: GcpKmsProvider, standin: GcpKmsStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As if the plaintext were damaged on the way out: the service's check must catch it.
    uri = _key_uri(standin)
    monkeypatch.setattr("providers.gcp_kms.crc32c", lambda data: 0)
    before = standin.calls["wrap"]

    with pytest.raises(ProviderUnavailableError, match="damaged in transit"):
        await provider.wrap(uri, os.urandom(32), BINDING)

    assert standin.calls["wrap"] - before == MAX_ATTEMPTS


async def test_unavailable_is_retried_a_bounded_number_of_times(
    provider: GcpKmsProvider, standin: GcpKmsStandIn
) -> None:
    uri = _key_uri(standin)
    key = os.urandom(32)
    before = standin.calls["wrap"]

    standin.fail_next(1)
    wrapped = await provider.wrap(uri, key, BINDING)
    assert standin.calls["wrap"] - before == 2

    standin.fail_next(MAX_ATTEMPTS)
    with pytest.raises(ProviderUnavailableError, match="UNAVAILABLE") as caught:
        await provider.wrap(uri, key, BINDING)
    assert uri in str(caught.value)
    assert standin.calls["wrap"] - before == 2 + MAX_ATTEMPTS
    assert await provider.unwrap(uri, wrapped, BINDING) == key


async def test_outage_is_unavailable_within_the_deadline_and_recovery_needs_no_restart(
    provider: GcpKmsProvider, standin: GcpKmsStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = _key_uri(standin)
    key = os.urandom(32)
    wrapped = await provider.wrap(uri, key, BINDING)

    # Count attempts on the client side: a stopped server sees none of them.
    attempts = 0
    real_encrypt = kms_v1.KeyManagementServiceAsyncClient.encrypt

    async def counting_encrypt(self: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal attempts
        attempts += 1
        return await real_encrypt(self, *args, **kwargs)

    monkeypatch.setattr(kms_v1.KeyManagementServiceAsyncClient, "encrypt", counting_encrypt)

    standin.stop()
    try:
        started = time.monotonic()
        async with asyncio.timeout(5):
            with pytest.raises(ProviderUnavailableError, match="UNAVAILABLE") as caught:
                await provider.wrap(uri, key, BINDING)
        assert uri in str(caught.value)
        assert attempts == MAX_ATTEMPTS
        assert time.monotonic() - started < 5
    finally:
        standin.start()

    # gRPC reconnects on its own backoff (capped at 1 s by the provider), so a call made the
    # instant the server is back may still fail fast, and enough failures open the key's
    # circuit breaker for its cool-down; the same provider must recover within both.
    async with asyncio.timeout(3 + BREAKER_COOL_DOWN_SECONDS):
        while True:
            try:
                assert await provider.unwrap(uri, wrapped, BINDING) == key
                break
            except ProviderUnavailableError:
                await asyncio.sleep(0.05)
    await provider.verify(uri)


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"endpoint": "127.0.0.1:9010", "insecure": True, "region": "x"}, "'region'"),
        ({"credentials_file": "/tmp/x.json"}, "'credentials_file'"),
        ({"endpoint": 9010}, "endpoint"),
        ({"endpoint": "127.0.0.1:9010", "insecure": "yes"}, "insecure"),
        ({"insecure": True}, "insecure needs an endpoint"),
    ],
)
def test_from_settings_rejects_bad_settings(settings: dict[str, Any], named: str) -> None:
    with pytest.raises(ProviderSetupError, match=named) as caught:
        GcpKmsProvider.from_settings(settings)
    assert "gcp-kms" in str(caught.value)


def test_missing_google_credentials_fail_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", "/nonexistent/vaultd-test.json")
    with pytest.raises(ProviderSetupError, match="no Google credentials"):
        GcpKmsProvider.from_settings({})


async def test_endpoint_without_insecure_speaks_tls_with_the_injected_credentials(
    standin: GcpKmsStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Injected credentials mean no lookup (which would fail here); no `insecure` means TLS,
    # which the plaintext stand-in cannot answer, so the call fails fast as unavailable.
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", "/nonexistent/vaultd-test.json")
    provider = GcpKmsProvider(
        endpoint=standin.provider_settings["endpoint"],
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
    )
    uri = _key_uri(standin)
    try:
        async with asyncio.timeout(5):
            with pytest.raises(ProviderUnavailableError, match="UNAVAILABLE"):
                await provider.wrap(uri, os.urandom(32), BINDING)
    finally:
        await provider.close()


def test_missing_sdk_is_a_setup_error_naming_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    # None in sys.modules makes the import fail as if the package were not installed.
    monkeypatch.setitem(sys.modules, "google.cloud.kms_v1", None)
    with pytest.raises(ProviderSetupError, match=r"pip install 'vaultd\[gcp\]'"):
        GcpKmsProvider.from_settings({})
