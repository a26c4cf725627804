"""What the BYOK tests (tests/byok) share: the KMS stand-in fixtures by provider, how vaultd
reaches each stand-in, and a KEK cache clock the tests move instead of sleeping."""

from __future__ import annotations

from typing import Any

from providers import KeyProvider
from testkit.standins import StandIn

TTL = 60.0  # the BYOK servers' KEK cache TTL; tests move the Clock past it

# Key URI scheme -> the session fixture (testkit/standins/) that stands in for that provider.
STANDINS = {
    "aws-kms": "aws_kms_standin",
    "gcp-kms": "gcp_kms_standin",
    "azure-kv": "azure_kv_standin",
    "hcvault": "hcvault_standin",
}


class Clock:
    """The KEK cache's clock, moved by the tests: TTL checks that a loaded machine cannot skew."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def pass_ttl(self) -> None:
        self.now += TTL + 1


def providers_for(standin: StandIn) -> tuple[dict[str, dict[str, Any]], list[KeyProvider]]:
    """What vaultd needs to reach the stand-in: provider settings, or a provider to inject."""
    if standin.scheme != "azure-kv":
        return {standin.scheme: standin.provider_settings}, []
    # A bearer token is no config-file setting: the provider is built and injected.
    from providers.azure_kv import AzureKvProvider
    from testkit.standins.azure import StaticTokenCredential

    credential = StaticTokenCredential()
    return {}, [AzureKvProvider.from_settings(standin.provider_settings, credential=credential)]
