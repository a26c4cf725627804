"""`vaultd byok verify`: a wrap/unwrap round trip per rule's key, as a table; exit 1 on a failure.

Also: a third-party provider plugs in through the `vaultd.providers` entry points.
"""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
import yaml

import providers
from providers import ProviderSetupError, build_registry
from testkit.standins.hcvault import HcVaultStandIn

VAULTD = Path(sys.executable).parent / "vaultd"


def _verify(config: Path, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VAULTD_")}
    return subprocess.run(
        [str(VAULTD), "byok", "verify", "--config", str(config), "--data-dir", str(data_dir)],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip


def test_byok_verify_reports_each_rule(hcvault_standin: HcVaultStandIn, tmp_path: Path) -> None:
    good = hcvault_standin.create_key("verify-good")
    bad = hcvault_standin.create_key("verify-revoked")
    config = tmp_path / "vaultd.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "providers": {"hcvault": hcvault_standin.provider_settings},
                "byok": [
                    {"match": {"organization_id": "org_good"}, "key": good},
                    {"match": {"organization_id": "org_bad"}, "key": bad},
                ],
            }
        )
    )
    ok = _verify(config, tmp_path / "data")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    rows = [line for line in ok.stdout.splitlines() if "://" in line]
    assert len(rows) == 3  # the default key and both rules
    assert all(row.rstrip().endswith("ok") for row in rows), ok.stdout

    hcvault_standin.revoke(bad)
    try:
        failed = _verify(config, tmp_path / "data")
    finally:
        hcvault_standin.restore(bad)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    bad_row = next(line for line in failed.stdout.splitlines() if bad in line)
    good_row = next(line for line in failed.stdout.splitlines() if good in line)
    assert "error" in bad_row and "org_bad" in bad_row
    assert good_row.rstrip().endswith("ok")
    assert hcvault_standin.provider_settings.get("token", "\0") not in failed.stdout


class PluginProvider:
    """A third-party provider, as another package would ship it."""

    scheme = "plugin-kms"

    def __init__(self, region: str) -> None:
        self.region = region

    @classmethod
    def from_settings(cls, settings: dict[str, str]) -> PluginProvider:
        return cls(settings["region"])

    async def wrap(self, key_uri: str, key: bytes, binding: object) -> bytes:
        return key

    async def unwrap(self, key_uri: str, wrapped: bytes, binding: object) -> bytes:
        return wrapped

    async def verify(self, key_uri: str) -> None:
        return None


def test_third_party_provider_from_an_entry_point(monkeypatch: pytest.MonkeyPatch) -> None:
    plugin = EntryPoint(
        name="plugin-kms", value=f"{__name__}:PluginProvider", group=providers.ENTRY_POINT_GROUP
    )

    def fake_entry_points(group: str, name: str | None = None) -> list[EntryPoint]:
        assert group == providers.ENTRY_POINT_GROUP
        return [plugin] if name in (None, plugin.name) else []

    monkeypatch.setattr(providers, "entry_points", fake_entry_points)
    registry = build_registry({"plugin-kms": {"region": "eu-1"}})
    found = registry.for_uri("plugin-kms://keys/k1")
    assert isinstance(found, PluginProvider) and found.region == "eu-1"
    with pytest.raises(ProviderSetupError, match=r"unknown provider 'nope'.*plugin-kms"):
        build_registry({"nope": {}})
