"""Cloud KMS keys where the customer keeps them: any project and location, and calls made as
the customer's service account through impersonation (IAM Credentials stand-in over HTTP, Cloud
KMS stand-in over gRPC; testkit/standins/gcp.py)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest

from providers import KeyUnavailableError, ProviderUnavailableError
from providers.gcp_kms import GcpKmsProvider, parse_key_uri
from testkit.standins.gcp import GcpKmsStandIn

BINDING = {"organization_id": "org_customer", "vaultd:kek": "kek_1"}


def _service_account() -> str:
    return f"vaultd-{os.urandom(3).hex()}@customer-proj.iam.gserviceaccount.com"


@pytest.fixture
async def provider(gcp_kms_standin: GcpKmsStandIn) -> AsyncIterator[GcpKmsProvider]:
    """Built as vaultd builds it, with vaultd's own identity as the source credentials."""
    settings = gcp_kms_standin.provider_settings
    built = GcpKmsProvider(
        endpoint=settings["endpoint"],
        insecure=True,
        credentials=gcp_kms_standin.source_credentials(),
        iam_endpoint=settings["iam_endpoint"],
    )
    yield built
    await built.close()


async def _round_trip(provider: GcpKmsProvider, uri: str) -> bytes:
    key = os.urandom(32)
    wrapped = await provider.wrap(uri, key, BINDING)
    assert await provider.unwrap(uri, wrapped, BINDING) == key
    return wrapped


def test_project_and_location_come_from_the_resource_name() -> None:
    name = "projects/customer-proj/locations/europe-west3/keyRings/r/cryptoKeys/k"
    sa = "kms@customer-proj.iam.gserviceaccount.com"
    key = parse_key_uri(f"gcp-kms://{name}?impersonate={sa}")
    assert (key.name, key.project, key.location, key.impersonate) == (
        name,
        "customer-proj",
        "europe-west3",
        sa,
    )


async def test_a_key_in_the_customers_project_through_their_service_account(
    provider: GcpKmsProvider, gcp_kms_standin: GcpKmsStandIn
) -> None:
    standin = gcp_kms_standin
    sa = _service_account()
    key_uri = standin.create_key_in(
        f"k-{os.urandom(3).hex()}", project="customer-proj", location="europe-west3"
    )
    standin.allow_only(key_uri, sa)
    standin.iam.grant_token_creator(sa)
    uri = f"{key_uri}?impersonate={sa}"
    before = standin.iam.calls["impersonate"]

    for _ in range(3):
        await _round_trip(provider, uri)
    # One token minted, then reused until it nears expiry.
    assert standin.iam.calls["impersonate"] - before == 1

    # vaultd's own identity is not on the key: without impersonation, denied.
    with pytest.raises(KeyUnavailableError, match="PERMISSION_DENIED") as caught:
        await provider.wrap(key_uri, os.urandom(32), BINDING)
    assert caught.value.denied


async def test_withdrawn_token_creator_is_a_denial(
    provider: GcpKmsProvider, gcp_kms_standin: GcpKmsStandIn
) -> None:
    standin = gcp_kms_standin
    sa = _service_account()
    key_uri = standin.create_key_in("k", project=f"p-{os.urandom(3).hex()}", location="us-east1")
    standin.allow_only(key_uri, sa)
    uri = f"{key_uri}?impersonate={sa}"
    before = standin.calls.copy()

    # Never granted: IAM refuses to mint, and Cloud KMS is never asked.
    with pytest.raises(KeyUnavailableError, match="impersonation") as caught:
        await provider.wrap(uri, os.urandom(32), BINDING)
    assert caught.value.denied
    assert standin.calls == before

    standin.iam.grant_token_creator(sa)
    wrapped = await _round_trip(provider, uri)

    # Withdrawn: the minted token stops working at the key, so the next call is a denial.
    standin.iam.revoke_token_creator(sa)
    with pytest.raises(KeyUnavailableError, match="PERMISSION_DENIED") as on_unwrap:
        await provider.unwrap(uri, wrapped, BINDING)
    assert on_unwrap.value.denied


async def test_impersonation_without_vaultds_own_credentials_is_refused(
    gcp_kms_standin: GcpKmsStandIn,
) -> None:
    provider = GcpKmsProvider.from_settings(gcp_kms_standin.provider_settings)
    uri = f"{gcp_kms_standin.create_key('plain')}?impersonate={_service_account()}"
    with pytest.raises(KeyUnavailableError, match="impersonation needs Google credentials"):
        await provider.wrap(uri, os.urandom(32), BINDING)
    await provider.close()


async def test_an_unreachable_token_service_is_an_outage_not_a_denial(
    gcp_kms_standin: GcpKmsStandIn,
) -> None:
    sa = _service_account()
    provider = GcpKmsProvider(
        endpoint=gcp_kms_standin.provider_settings["endpoint"],
        insecure=True,
        credentials=gcp_kms_standin.source_credentials(),
        iam_endpoint="http://127.0.0.1:9",  # discard port: nothing listens
    )
    uri = f"{gcp_kms_standin.create_key(f'k-{os.urandom(3).hex()}')}?impersonate={sa}"
    with pytest.raises(ProviderUnavailableError, match="token service"):
        await provider.wrap(uri, os.urandom(32), BINDING)
    await provider.close()


@pytest.mark.parametrize(
    ("suffix", "reason"),
    [
        ("?impersonate=someone@gmail.com", "not a service account email"),
        ("?as=x@p.iam.gserviceaccount.com", r"unknown parameter\(s\) as; known: impersonate"),
        ("?impersonate", "not name=value"),
    ],
)
async def test_bad_impersonation_parameters_fail_before_any_call(
    provider: GcpKmsProvider, gcp_kms_standin: GcpKmsStandIn, suffix: str, reason: str
) -> None:
    uri = gcp_kms_standin.create_key(f"k-{os.urandom(3).hex()}") + suffix
    before = gcp_kms_standin.calls.copy()
    with pytest.raises(KeyUnavailableError, match=reason):
        await provider.wrap(uri, os.urandom(32), BINDING)
    assert gcp_kms_standin.calls == before
