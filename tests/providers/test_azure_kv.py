"""The Azure Key Vault provider, with the real CryptographyClient over HTTPS to the stand-in."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.core.pipeline.transport import RequestsTransport
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from providers import (
    KeyUnavailableError,
    ProviderSetupError,
    ProviderUnavailableError,
    needs_rewrap,
)
from providers._retry import MAX_ATTEMPTS
from providers.azure_kv import WRAPPED_MARKER, AzureKvProvider, decode_wrapped, encode_wrapped
from testkit.standins.azure import AzureKvStandIn, StaticTokenCredential

VECTOR = json.loads(
    (Path(__file__).parents[1] / "vectors" / "providers" / "azure_kv.json").read_text()
)

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
    # Version 2: the versioned kid the service used, then an RSA-2048 ciphertext.
    kid, ciphertext = decode_wrapped(wrapped)
    name = key_uri.rsplit("/", 1)[1]
    assert (
        kid == f"https://{azure_kv_standin.host}/keys/{name}/{azure_kv_standin.keys[name].version}"
    )
    assert wrapped.startswith(WRAPPED_MARKER) and len(ciphertext) == 256
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
    # The first unwrap under a key version makes that version's client, which asks once for the
    # key (GET, forbidden) before it unwraps on the service; counted from here on, only POSTs.
    assert await provider.unwrap(key_uri, wrapped, ORG_ABC) == kek
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
    # The first unwrap under a key version makes that version's client, which asks once for the
    # key (GET, forbidden) before it unwraps on the service; counted from here on, only POSTs.
    assert await provider.unwrap(key_uri, wrapped, ORG_ABC) == kek
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


async def test_rotating_the_key_in_key_vault_strands_nothing(
    provider: AzureKvProvider, key_uri: str, azure_kv_standin: AzureKvStandIn
) -> None:
    kek = os.urandom(32)
    before_rotation = await provider.wrap(key_uri, kek, ORG_ABC)
    old_kid, old_ciphertext = decode_wrapped(before_rotation)

    new_version = azure_kv_standin.rotate(key_uri)
    after_rotation = await provider.wrap(key_uri, kek, ORG_ABC)

    assert decode_wrapped(after_rotation)[0] == f"{old_kid.rsplit('/', 1)[0]}/{new_version}"
    assert await provider.unwrap(key_uri, before_rotation, ORG_ABC) == kek
    assert await provider.unwrap(key_uri, after_rotation, ORG_ABC) == kek
    # What version 1 would have stored (the bare ciphertext) is what rotation used to strand:
    # Key Vault opens it with the newest version, which is not the one that made it.
    with pytest.raises(KeyUnavailableError):
        await provider.unwrap(key_uri, old_ciphertext, ORG_ABC)


async def test_a_stored_kid_never_sends_a_request_elsewhere(
    provider: AzureKvProvider, key_uri: str, azure_kv_standin: AzureKvStandIn
) -> None:
    kek = os.urandom(32)
    kid, ciphertext = decode_wrapped(await provider.wrap(key_uri, kek, ORG_ABC))
    other = azure_kv_standin.create_key(f"other-{uuid.uuid4().hex[:8]}")
    before = azure_kv_standin.calls.copy()

    for forged in (
        kid.replace(azure_kv_standin.host, "attacker.example:443"),
        kid.replace(key_uri.rsplit("/", 1)[1], other.rsplit("/", 1)[1]),
    ):
        with pytest.raises(KeyUnavailableError, match="another vault or key"):
            await provider.unwrap(key_uri, encode_wrapped(forged, ciphertext), ORG_ABC)
    # A URI pinned to another version does not take a kid of this one either.
    with pytest.raises(KeyUnavailableError, match="another vault or key"):
        await provider.unwrap(f"{key_uri}/0000", encode_wrapped(kid, ciphertext), ORG_ABC)
    for malformed in (b"", WRAPPED_MARKER + b"\x00\x05abc" + ciphertext, ciphertext[:-1]):
        with pytest.raises(KeyUnavailableError, match="malformed"):
            await provider.unwrap(key_uri, malformed, ORG_ABC)

    assert azure_kv_standin.calls == before


async def test_keys_in_two_vaults_through_one_provider(
    provider: AzureKvProvider,
    key_uri: str,
    azure_kv_standin: AzureKvStandIn,
) -> None:
    # The customer's own vault: another server, same trust anchor (the session certificate).
    second = AzureKvStandIn(*azure_kv_standin.tls_files)
    second.start()
    try:
        theirs = second.create_key("customer-key")
        kek = os.urandom(32)
        ours_wrapped = await provider.wrap(key_uri, kek, ORG_ABC)
        theirs_wrapped = await provider.wrap(theirs, kek, ORG_ABC)

        assert decode_wrapped(theirs_wrapped)[0].startswith(f"https://{second.host}/")
        assert await provider.unwrap(theirs, theirs_wrapped, ORG_ABC) == kek
        assert await provider.unwrap(key_uri, ours_wrapped, ORG_ABC) == kek
        assert second.calls == {"wrap": 1, "unwrap": 1}
    finally:
        second.stop()


async def test_the_format_vector_unwraps_in_both_versions(
    provider: AzureKvProvider, azure_kv_standin: AzureKvStandIn
) -> None:
    private = serialization.load_pem_private_key(VECTOR["rsa_private_key_pem"].encode(), None)
    assert isinstance(private, rsa.RSAPrivateKey)
    key, binding = base64.b64decode(VECTOR["key"]), VECTOR["binding"]
    v1, v2 = base64.b64decode(VECTOR["wrapped_v1"]), base64.b64decode(VECTOR["wrapped_v2"])

    # The layout, read by hand as docs/FORMAT.md describes it.
    assert v2[:8] == b"vdazkv\x00\x02"
    size = int.from_bytes(v2[8:10], "big")
    assert v2[10 : 10 + size].decode() == VECTOR["kid"]
    assert decode_wrapped(v2) == (VECTOR["kid"], v2[10 + size :])
    assert decode_wrapped(v1) == (None, v1)
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    digest = hashes.Hash(hashes.SHA256())
    digest.update(VECTOR["canonical_binding"].encode())
    payload = b"vaultd-azkv-v1" + digest.finalize() + key
    assert private.decrypt(v1, oaep) == payload == private.decrypt(v2[10 + size :], oaep)

    # And through the provider, against the same key material served by the stand-in.
    version = VECTOR["kid"].rsplit("/", 1)[1]
    uri = azure_kv_standin.import_key(f"vector-{uuid.uuid4().hex[:8]}", private, version)
    assert await provider.unwrap(uri, v1, binding) == key
    # A rewrap job upgrades version 1 to version 2; version 2 stays as it is.
    assert needs_rewrap(provider, uri, v1) and not needs_rewrap(provider, uri, v2)
    kid = VECTOR["kid"].replace(
        VECTOR["key_uri"].removeprefix("azure-kv://"), uri.removeprefix("azure-kv://")
    )
    assert await provider.unwrap(uri, encode_wrapped(kid, decode_wrapped(v2)[1]), binding) == key


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
