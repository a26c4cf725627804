"""Rules that reach a customer's own Vault: a second OpenBao (testkit/standins/hcvault.py), named
by address in the key URI, with credentials from an environment variable, a file or AppRole."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from providers import KeyUnavailableError
from providers.hcvault import HcVaultProvider
from testkit.standins.hcvault import HcVaultStandIn

BINDING = {"organization_id": "org_customer", "vaultd:kek": "kek_1"}
ENV = "VAULTD_HCVAULT_CUSTOMER"


@pytest.fixture
def credentials_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "hcvault-credentials"
    directory.mkdir()
    return directory


@pytest.fixture
def provider(hcvault_standin: HcVaultStandIn, credentials_dir: Path) -> Iterator[HcVaultProvider]:
    """The operator's provider: its default Vault is the first OpenBao."""
    yield HcVaultProvider.from_settings(
        {**hcvault_standin.provider_settings, "credentials_dir": str(credentials_dir)}
    )


def _key(customer: HcVaultStandIn) -> str:
    return customer.create_key(f"c-{os.urandom(4).hex()}")


async def _round_trip(provider: HcVaultProvider, uri: str) -> None:
    key = os.urandom(32)
    assert await provider.unwrap(uri, await provider.wrap(uri, key, BINDING), BINDING) == key


async def test_token_from_a_named_environment_variable_reaches_the_customers_vault(
    provider: HcVaultProvider,
    hcvault_standin: HcVaultStandIn,
    customer_hcvault_standin: HcVaultStandIn,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    customer = customer_hcvault_standin
    monkeypatch.setenv(ENV, customer.new_token())
    uri = f"{_key(customer)}?address={customer.address}&token_env={ENV}"
    operators_before, customers_before = hcvault_standin.calls.copy(), customer.calls.copy()

    await _round_trip(provider, uri)
    # The operator's own keys keep working beside it, in the operator's Vault.
    await _round_trip(provider, hcvault_standin.create_key(f"o-{os.urandom(4).hex()}"))

    assert customer.calls - customers_before == {"wrap": 1, "unwrap": 1}
    assert hcvault_standin.calls - operators_before == {"wrap": 1, "unwrap": 1}

    # The customer revokes vaultd's access in their own Vault: a denial, at once.
    customer.revoke(uri)
    with pytest.raises(KeyUnavailableError, match="Forbidden") as caught:
        await provider.wrap(uri, os.urandom(32), BINDING)
    assert caught.value.denied
    customer.restore(uri)
    await _round_trip(provider, uri)


async def test_token_file_is_reread_when_the_customer_rotates_it(
    provider: HcVaultProvider, customer_hcvault_standin: HcVaultStandIn, credentials_dir: Path
) -> None:
    customer = customer_hcvault_standin
    token_file = credentials_dir / "customer.token"
    first = customer.new_token()
    token_file.write_text(first + "\n")
    uri = f"{_key(customer)}?address={customer.address}&token_file={token_file}"
    await _round_trip(provider, uri)

    second = customer.new_token()
    token_file.write_text(second + "\n\n")  # another size, so the change shows at once
    customer.revoke_token(first)

    await _round_trip(provider, uri)


async def test_approle_logs_in_once_and_a_withdrawn_secret_id_is_a_denial(
    provider: HcVaultProvider, customer_hcvault_standin: HcVaultStandIn, credentials_dir: Path
) -> None:
    customer = customer_hcvault_standin
    role = f"vaultd-{os.urandom(3).hex()}"
    role_id, secret_id = customer.approle(role)
    secret_file = credentials_dir / "customer.secret-id"
    secret_file.write_text(secret_id)
    query = f"address={customer.address}&role_id={role_id}&secret_id_file={secret_file}"
    uri = f"{_key(customer)}?{query}"
    before = customer.calls.copy()

    for _ in range(3):
        await _round_trip(provider, uri)
    assert customer.calls - before == {"login": 1, "wrap": 3, "unwrap": 3}

    # A provider that has not logged in yet cannot once the secret id is withdrawn.
    customer.destroy_secret_ids(role)
    fresh = HcVaultProvider.from_settings({"credentials_dir": str(credentials_dir)})
    with pytest.raises(KeyUnavailableError, match="AppRole login") as caught:
        await fresh.wrap(uri, os.urandom(32), BINDING)
    assert caught.value.denied
    assert secret_id not in str(caught.value) and role_id in uri


async def test_without_a_default_vault_only_rules_naming_their_vault_work(
    customer_hcvault_standin: HcVaultStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    customer = customer_hcvault_standin
    monkeypatch.setenv(ENV, customer.new_token())
    provider = HcVaultProvider.from_settings({})
    key_uri = _key(customer)

    await _round_trip(provider, f"{key_uri}?address={customer.address}&token_env={ENV}")
    with pytest.raises(KeyUnavailableError, match="no default Vault"):
        await provider.wrap(key_uri, os.urandom(32), BINDING)


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        # The operator's token never goes to an address a rule names.
        ("address=http://127.0.0.1:1", "must name its credentials too"),
        ("address=http://127.0.0.1:1&token_env=AWS_SECRET_ACCESS_KEY", "not one rules may use"),
        ("address=http://127.0.0.1:1&token_env=VAULTD_HCVAULT_x", "not one rules may use"),
        ("address=http://127.0.0.1:1&token_file=/etc/passwd", "not in credentials_dir"),
        ("address=http://127.0.0.1:1&token_file={dir}/../x", "not in credentials_dir"),
        ("address=ftp://x&token_env=VAULTD_HCVAULT_X", "http"),
        ("address=http://x&token_env=VAULTD_HCVAULT_X&role_id=r", "give one of"),
        ("address=http://x&role_id=r", "needs one of secret_id_env"),
        (
            "address=http://x&token_env=VAULTD_HCVAULT_X&secret_id_env=VAULTD_HCVAULT_Y",
            "need role_id",
        ),
        ("token=hvs.secret", "unknown parameter"),
        ("address=http://x&address=http://y", "given more than once"),
        ("token_env=", "token_env have no value"),
    ],
)
async def test_rules_that_could_leak_a_secret_fail_before_any_call(
    provider: HcVaultProvider,
    customer_hcvault_standin: HcVaultStandIn,
    credentials_dir: Path,
    query: str,
    reason: str,
) -> None:
    customer = customer_hcvault_standin
    uri = f"hcvault://transit/keys/k?{query.format(dir=credentials_dir)}"
    before = customer.calls.copy()
    with pytest.raises(KeyUnavailableError, match=reason) as caught:
        await provider.wrap(uri, os.urandom(32), BINDING)
    assert "hvs.secret" in uri or "hvs." not in str(caught.value)
    assert customer.calls == before


async def test_credential_files_need_a_credentials_dir(
    hcvault_standin: HcVaultStandIn, credentials_dir: Path
) -> None:
    provider = HcVaultProvider.from_settings(hcvault_standin.provider_settings)
    uri = f"hcvault://transit/keys/k?address=http://x&token_file={credentials_dir}/t"
    with pytest.raises(KeyUnavailableError, match=r"need providers\.hcvault\.credentials_dir"):
        await provider.wrap(uri, os.urandom(32), BINDING)
