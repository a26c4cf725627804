"""`vaultd byok add|list|verify ID|remove`, as an operator runs them, against an OpenBao stand-in
and the embedded store; a server started on the same store then uses the added key."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import yaml

from testkit.standins.hcvault import HcVaultStandIn

VAULTD = Path(sys.executable).parent / "vaultd"


def _vaultd(config: Path, data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VAULTD_")}
    return subprocess.run(
        [str(VAULTD), "byok", *args, "--config", str(config), "--data-dir", str(data_dir)],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip


def test_add_list_verify_remove(hcvault_standin: HcVaultStandIn, tmp_path: Path) -> None:
    key = hcvault_standin.create_key(f"cli-{uuid.uuid4().hex[:8]}")
    config = tmp_path / "vaultd.yaml"
    config.write_text(yaml.safe_dump({"providers": {"hcvault": hcvault_standin.provider_settings}}))
    data = tmp_path / "data"
    env = ["--environment", "environment_default"]

    added = _vaultd(config, data, "add", *env, "--match", "organization_id=org_cli*", "--key", key)
    assert added.returncode == 0, added.stdout + added.stderr
    byok_id = next(w for w in added.stdout.split() if w.startswith("byok_"))
    assert "org_cli*" in added.stdout and key in added.stdout

    again = _vaultd(config, data, "add", *env, "--match", "organization_id=org_cli*", "--key", key)
    assert again.returncode == 1 and again.stderr.count("\n") == 1, again.stderr
    assert byok_id in again.stderr, "names the key it clashes with"
    bad = _vaultd(config, data, "add", *env, "--match", "org_cli", "--key", key)
    assert bad.returncode == 2 and "key=value" in bad.stderr

    listed = _vaultd(config, data, "list", *env)
    assert listed.returncode == 0 and byok_id in listed.stdout, listed.stdout

    # `vaultd kek rotate` resolves the item through the registered key, as a server does.
    rotated = subprocess.run(
        [str(VAULTD), "kek", "rotate", "--item", "organization_id=org_cli1", *env,
         "--config", str(config), "--data-dir", str(data)],
        capture_output=True, text=True, timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("VAULTD_")},
    )  # fmt: skip
    assert rotated.returncode == 0, rotated.stdout + rotated.stderr
    assert key in rotated.stdout and "internal://" not in rotated.stdout, rotated.stdout

    hcvault_standin.revoke(key)
    try:
        failed = _vaultd(config, data, "verify", byok_id, *env)
    finally:
        hcvault_standin.restore(key)
    assert failed.returncode == 1 and "failed:" in failed.stdout, failed.stdout + failed.stderr
    assert hcvault_standin.provider_settings.get("token", "\0") not in failed.stdout
    ok = _vaultd(config, data, "verify", byok_id, *env)
    assert ok.returncode == 0 and " ok " in f"{ok.stdout} ", ok.stdout

    removed = _vaultd(config, data, "remove", *env, byok_id)
    assert removed.returncode == 0 and f"removed {byok_id}" in removed.stdout
    gone = _vaultd(config, data, "remove", *env, byok_id)
    assert gone.returncode == 1 and "no BYOK key" in gone.stderr

    tail = subprocess.run(
        [str(VAULTD), "audit", "tail", "--config", str(config), "--data-dir", str(data),
         "--environment", "environment_default"],
        capture_output=True, text=True, timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("VAULTD_")},
    )  # fmt: skip
    events = [json.loads(line) for line in tail.stdout.splitlines()]
    kinds = [(e["type"], e["outcome"]) for e in events if e["method"].startswith("vaultd byok")]
    assert kinds == [
        ("vault.byok_key.verification_completed", "success"),
        ("vault.byok_key.verification_completed", "failure"),
        ("vault.byok_key.verification_completed", "failure"),
        ("vault.byok_key.verification_completed", "success"),
        ("vault.byok_key.deleted", "success"),
    ], kinds
