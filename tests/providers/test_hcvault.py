"""The HashiCorp Vault provider: the real hvac client, over a real socket, against a real
OpenBao dev server (testkit/standins/hcvault.py)."""

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
from providers.hcvault import HcVaultProvider
from testkit.standins.hcvault import HcVaultStandIn

T = TypeVar("T")
BINDING = {"organization_id": "org_123", "vaultd:kek": "kek_1"}
TOKEN = "hvs.not-a-real-token"


@pytest.fixture
def standin(hcvault_standin: HcVaultStandIn) -> HcVaultStandIn:
    return hcvault_standin


@pytest.fixture(scope="module")
def provider(hcvault_standin: HcVaultStandIn) -> HcVaultProvider:
    """One provider for the module, configured the way vaultd's config file would configure it.

    Shared, as vaultd shares one per process: the tests also show it survives revocations and
    outages without being rebuilt.
    """
    return HcVaultProvider.from_settings(hcvault_standin.provider_settings)


def _new_key(standin: HcVaultStandIn) -> str:
    return standin.create_key(f"k-{os.urandom(4).hex()}")


def _assert_no_secret(error: ProviderError, secret: bytes, standin: HcVaultStandIn) -> None:
    text = str(error)
    assert secret.hex() not in text and repr(secret) not in text
    assert standin.provider_settings["token"] not in text


async def test_round_trip_sends_one_encrypt_and_one_decrypt(
    provider: HcVaultProvider, standin: HcVaultStandIn
) -> None:
    uri = _new_key(standin)
    key = os.urandom(32)
    before = standin.calls.copy()

    wrapped = await provider.wrap(uri, key, BINDING)
    assert wrapped.startswith(b"vault:v1:") and key not in wrapped
    assert await provider.unwrap(uri, wrapped, BINDING) == key

    assert standin.calls - before == {"wrap": 1, "unwrap": 1}


async def test_unwrap_under_another_binding_fails_without_the_key(
    provider: HcVaultProvider, standin: HcVaultStandIn
) -> None:
    uri = _new_key(standin)
    key = os.urandom(32)
    wrapped = await provider.wrap(uri, key, BINDING)
    before = standin.calls["unwrap"]

    with pytest.raises(KeyUnavailableError, match="InvalidRequest") as caught:
        await provider.unwrap(uri, wrapped, {**BINDING, "organization_id": "org_other"})

    assert uri in str(caught.value)
    _assert_no_secret(caught.value, key, standin)
    assert standin.calls["unwrap"] - before == 1, "a refusal is not worth retrying"


async def test_revoked_key_is_unavailable_and_restoring_needs_no_new_provider(
    provider: HcVaultProvider, standin: HcVaultStandIn
) -> None:
    uri = _new_key(standin)
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
        assert uri in str(error) and "Forbidden" in str(error)
        _assert_no_secret(error, key, standin)
    assert standin.calls - before == {"wrap": 2, "unwrap": 1}, "no retries on a denied key"

    standin.restore(uri)
    assert await provider.unwrap(uri, wrapped, BINDING) == key
    await provider.verify(uri)


async def test_a_key_that_does_not_exist_is_not_created(
    provider: HcVaultProvider, standin: HcVaultStandIn
) -> None:
    # The token may not create keys, so encrypt to a mistyped name fails instead of making one.
    uri = "hcvault://transit/keys/never-created"
    with pytest.raises(KeyUnavailableError, match="Forbidden") as caught:
        await provider.wrap(uri, os.urandom(32), BINDING)
    assert uri in str(caught.value)


@pytest.mark.parametrize(("status", "error"), [(500, "InternalServerError"), (503, "VaultDown")])
async def test_server_errors_are_retried_a_bounded_number_of_times(
    provider: HcVaultProvider, standin: HcVaultStandIn, status: int, error: str
) -> None:
    uri = _new_key(standin)
    key = os.urandom(32)
    before = standin.calls["wrap"]

    standin.fail_next(status)
    wrapped = await provider.wrap(uri, key, BINDING)
    assert standin.calls["wrap"] - before == 2

    standin.fail_next(status, times=MAX_ATTEMPTS)
    with pytest.raises(ProviderUnavailableError, match=error) as caught:
        await provider.wrap(uri, key, BINDING)
    assert uri in str(caught.value)
    assert standin.calls["wrap"] - before == 2 + MAX_ATTEMPTS
    assert await provider.unwrap(uri, wrapped, BINDING) == key


async def test_outage_is_unavailable_within_the_deadline_and_recovery_needs_no_restart(
    provider: HcVaultProvider, standin: HcVaultStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = _new_key(standin)
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

    monkeypatch.setattr("providers.hcvault.with_retries", counting_retries)

    standin.stop()
    try:
        started = time.monotonic()
        async with asyncio.timeout(5):
            with pytest.raises(ProviderUnavailableError, match="ConnectionError") as caught:
                await provider.unwrap(uri, wrapped, BINDING)
        assert time.monotonic() - started < 5
        assert uri in str(caught.value)
        _assert_no_secret(caught.value, key, standin)
        assert attempts == MAX_ATTEMPTS
    finally:
        standin.start()

    assert await provider.unwrap(uri, wrapped, BINDING) == key
    await provider.verify(uri)


async def test_uris_it_cannot_use_fail_before_any_call(
    provider: HcVaultProvider, standin: HcVaultStandIn
) -> None:
    before = standin.calls.copy()
    for uri, reason in [
        ("hcvault://transit/k", "not of the form"),
        ("hcvault://transit/keys/", "not of the form"),
        ("hcvault://transit/keys/a/b", "not of the form"),
        ("hcvault://other/keys/k", "mount other is not the configured mount transit"),
    ]:
        with pytest.raises(KeyUnavailableError, match=reason) as caught:
            await provider.wrap(uri, os.urandom(32), BINDING)
        assert uri in str(caught.value)
    with pytest.raises(KeyUnavailableError, match="not a Transit ciphertext"):
        await provider.unwrap("hcvault://transit/keys/k", b"\x00" * 40, BINDING)
    assert standin.calls == before


async def test_token_from_the_environment(
    standin: HcVaultStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VAULTD_TEST_VAULT_TOKEN", standin.provider_settings["token"])
    settings = {**standin.provider_settings, "token_env": "VAULTD_TEST_VAULT_TOKEN"}
    del settings["token"]

    await HcVaultProvider.from_settings(settings).verify(_new_key(standin))


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"address": "http://v", "token": TOKEN, "namespace": "n"}, "namespace"),
        ({"address": "http://v", "token": TOKEN, "role": 1, "url": "u"}, "role, url"),
        ({"address": "v:8200", "token": TOKEN}, "address must be an http"),
        ({"address": "http://v"}, "give token_env"),
        ({"address": "http://v", "token": TOKEN, "token_env": "X"}, "not both"),
        ({"address": "http://v", "token_env": "VAULTD_TEST_UNSET"}, "VAULTD_TEST_UNSET"),
        ({"address": "http://v", "token": TOKEN, "verify": 3}, "verify must be"),
        ({"address": "http://v", "token": TOKEN, "mount": ""}, "mount must be"),
    ],
)
def test_from_settings_rejects_bad_settings(
    settings: dict[str, Any], named: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VAULTD_TEST_UNSET", raising=False)
    with pytest.raises(ProviderSetupError, match=named) as caught:
        HcVaultProvider.from_settings(settings)
    assert "providers.hcvault" in str(caught.value)
    assert TOKEN not in str(caught.value)


def test_missing_sdk_is_a_setup_error_naming_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    # None in sys.modules makes the import fail as if the package were not installed.
    monkeypatch.setitem(sys.modules, "hvac", None)
    with pytest.raises(ProviderSetupError, match=r"pip install 'vaultd\[hashicorp\]'"):
        HcVaultProvider.from_settings({"address": "http://127.0.0.1:8200", "token": TOKEN})
