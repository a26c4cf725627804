"""The Azure Key Vault provider, with the real CryptographyClient over HTTPS to the stand-in."""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from azure.core.pipeline.transport import RequestsTransport

from providers import KeyUnavailableError, ProviderSetupError, ProviderUnavailableError
from providers._retry import MAX_ATTEMPTS
from providers.azure_kv import AzureKvProvider
from tests.standins.azure import AzureKvStandIn, StaticTokenCredential

ORG_ABC = {"organization_id": "org_abc"}
ORG_XYZ = {"organization_id": "org_xyz"}


@pytest.fixture
def provider(azure_kv_standin: AzureKvStandIn) -> Iterator[AzureKvProvider]:
    built = AzureKvProvider.from_settings(
        azure_kv_standin.provider_settings, credential=azure_kv_standin.credential
    )
    yield built
    built.close()


@pytest.fixture
def key_uri(azure_kv_standin: AzureKvStandIn) -> str:
    return azure_kv_standin.create_key(f"tenant-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def http_sends(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every HTTP request the SDK really sends, to count attempts independently of the server."""
    sent: list[str] = []
    real_send = RequestsTransport.send

    def send(self: RequestsTransport, request: Any, **kwargs: Any) -> Any:
        sent.append(f"{request.method} {request.url}")
        return real_send(self, request, **kwargs)

    monkeypatch.setattr(RequestsTransport, "send", send)
    return sent


def assert_no_key_material(err: BaseException, key: bytes) -> None:
    text = str(err)
    assert key.hex() not in text and key.hex().upper() not in text
    assert repr(key)[2:-1] not in text


async def test_round_trip_wraps_and_unwraps_once_on_the_service(
    provider: AzureKvProvider, key_uri: str, azure_kv_standin: AzureKvStandIn
) -> None:
    kek = os.urandom(32)
    before = azure_kv_standin.calls.copy()

    wrapped = await provider.wrap(key_uri, kek, ORG_ABC)
    unwrapped = await provider.unwrap(key_uri, wrapped, ORG_ABC)

    assert unwrapped == kek
    assert len(wrapped) == 256  # an RSA-2048 ciphertext, made by the service's key
    assert kek not in wrapped
    seen = azure_kv_standin.calls - before
    assert seen == {"wrap": 1, "unwrap": 1}


async def test_unwrap_under_another_binding_never_returns_the_key(
    provider: AzureKvProvider, key_uri: str, azure_kv_standin: AzureKvStandIn
) -> None:
    kek = os.urandom(32)
    wrapped = await provider.wrap(key_uri, kek, ORG_ABC)
    unwraps = azure_kv_standin.calls["unwrap"]

    with pytest.raises(KeyUnavailableError, match="bound to another context item") as caught:
        await provider.unwrap(key_uri, wrapped, ORG_XYZ)

    # The service did unwrap: the provider's binding check is what refused it.
    assert azure_kv_standin.calls["unwrap"] == unwraps + 1
    assert key_uri in str(caught.value)
    assert_no_key_material(caught.value, kek)
    assert await provider.unwrap(key_uri, wrapped, ORG_ABC) == kek


async def test_disabled_key_is_unavailable_until_enabled_again(
    provider: AzureKvProvider, key_uri: str, azure_kv_standin: AzureKvStandIn
) -> None:
    kek = os.urandom(32)
    wrapped = await provider.wrap(key_uri, kek, ORG_ABC)
    azure_kv_standin.revoke(key_uri)
    try:
        unwraps = azure_kv_standin.calls["unwrap"]
        with pytest.raises(KeyUnavailableError) as caught:
            await provider.unwrap(key_uri, wrapped, ORG_ABC)
        assert azure_kv_standin.calls["unwrap"] == unwraps + 1  # refused once, not retried
        message = str(caught.value)
        assert key_uri in message and "HTTP 403 Forbidden" in message
        assert_no_key_material(caught.value, kek)
        with pytest.raises(KeyUnavailableError, match="Forbidden"):
            await provider.wrap(key_uri, kek, ORG_ABC)
    finally:
        azure_kv_standin.restore(key_uri)

    assert await provider.unwrap(key_uri, wrapped, ORG_ABC) == kek
    await provider.verify(key_uri)


async def test_unknown_key_and_bad_uri_are_unavailable(
    provider: AzureKvProvider, azure_kv_standin: AzureKvStandIn
) -> None:
    missing = f"azure-kv://{azure_kv_standin.host}/keys/no-such-key"
    with pytest.raises(KeyUnavailableError, match="KeyNotFound") as caught:
        await provider.verify(missing)
    assert missing in str(caught.value)

    with pytest.raises(KeyUnavailableError, match="not an azure-kv key URI"):
        await provider.wrap(f"azure-kv://{azure_kv_standin.host}/secrets/x", b"k" * 32, ORG_ABC)


async def test_a_token_the_vault_rejects_is_access_denied(
    key_uri: str, azure_kv_standin: AzureKvStandIn
) -> None:
    provider = AzureKvProvider.from_settings(
        azure_kv_standin.provider_settings, credential=StaticTokenCredential("not-the-token")
    )
    try:
        with pytest.raises(KeyUnavailableError, match="access denied") as caught:
            await provider.wrap(key_uri, os.urandom(32), ORG_ABC)
    finally:
        provider.close()
    assert key_uri in str(caught.value)
    assert "not-the-token" not in str(caught.value)


async def test_throttling_and_server_errors_are_retried(
    provider: AzureKvProvider,
    key_uri: str,
    azure_kv_standin: AzureKvStandIn,
    http_sends: list[str],
) -> None:
    kek = os.urandom(32)
    wrapped = await provider.wrap(key_uri, kek, ORG_ABC)
    http_sends.clear()

    azure_kv_standin.inject_faults(429, 503)
    assert await provider.unwrap(key_uri, wrapped, ORG_ABC) == kek
    assert len(http_sends) == 3 and all(s.startswith("POST ") for s in http_sends)

    # A 503 on every attempt: with_retries gives up after MAX_ATTEMPTS requests in all, so the
    # SDK retried none of them itself (it would for a POST answered 503 if retry_total were on).
    http_sends.clear()
    azure_kv_standin.inject_faults(*[503] * MAX_ATTEMPTS)
    with pytest.raises(ProviderUnavailableError, match="HTTP 503") as caught:
        await provider.unwrap(key_uri, wrapped, ORG_ABC)
    assert len(http_sends) == MAX_ATTEMPTS
    assert key_uri in str(caught.value)
    assert_no_key_material(caught.value, kek)


async def test_outage_is_unavailable_within_the_deadline_then_recovers(
    provider: AzureKvProvider,
    key_uri: str,
    azure_kv_standin: AzureKvStandIn,
    http_sends: list[str],
) -> None:
    kek = os.urandom(32)
    wrapped = await provider.wrap(key_uri, kek, ORG_ABC)
    http_sends.clear()

    azure_kv_standin.stop()
    try:
        started = time.monotonic()
        async with asyncio.timeout(5):
            with pytest.raises(ProviderUnavailableError, match="unreachable") as caught:
                await provider.unwrap(key_uri, wrapped, ORG_ABC)
        elapsed = time.monotonic() - started
    finally:
        azure_kv_standin.start()

    assert key_uri in str(caught.value)
    # with_retries' attempts, one HTTP request each: the SDK's own retries are off.
    assert len(http_sends) == MAX_ATTEMPTS
    assert elapsed < 3
    assert await provider.unwrap(key_uri, wrapped, ORG_ABC) == kek


def test_from_settings_rejects_unknown_keys(azure_kv_standin: AzureKvStandIn) -> None:
    settings = {**azure_kv_standin.provider_settings, "vault_url": "https://x.vault.azure.net"}
    with pytest.raises(ProviderSetupError, match="unknown key 'vault_url'"):
        AzureKvProvider.from_settings(settings, credential=StaticTokenCredential())


def test_from_settings_rejects_a_missing_ca_file(tmp_path: Any) -> None:
    with pytest.raises(ProviderSetupError, match="connection_verify"):
        AzureKvProvider.from_settings(
            {"connection_verify": str(tmp_path / "none.pem")}, credential=StaticTokenCredential()
        )


@pytest.mark.parametrize("module", ["azure.keyvault.keys.crypto", "azure.identity"])
def test_missing_sdk_names_the_extra(monkeypatch: pytest.MonkeyPatch, module: str) -> None:
    # A None entry in sys.modules makes `import module` raise ImportError, as if not installed.
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(ProviderSetupError, match=r"pip install 'vaultd\[azure\]'"):
        AzureKvProvider.from_settings({})
