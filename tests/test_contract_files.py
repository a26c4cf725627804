"""The public contract: stubs match protos/, protos/ pass buf lint and buf breaking vs main."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.buf import buf

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "protos"))
from generate import generate  # noqa: E402


def test_generated_stubs_match_protos(tmp_path: Path) -> None:
    fresh = generate(tmp_path)
    assert fresh, "protoc generated nothing"
    committed = REPO / "vaultd" / "v1"
    for path in fresh:
        mine = committed / path.name
        assert mine.exists(), f"{path.name} is not committed; run python protos/generate.py"
        assert mine.read_text() == path.read_text(), (
            f"vaultd/v1/{path.name} drifted from protos/; run python protos/generate.py"
        )
    stale = {p.name for p in committed.glob("*_pb2*.py*")} - {p.name for p in fresh}
    assert not stale, f"stubs without a proto: {sorted(stale)}"


def test_buf_lint() -> None:
    result = subprocess.run([buf(), "lint"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_buf_breaking_against_main() -> None:
    has_main = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", "main:protos"], cwd=REPO, capture_output=True
    )
    if has_main.returncode != 0:
        pytest.skip("main has no protos/ yet; nothing to break")
    result = subprocess.run(
        [buf(), "breaking", "--against", ".git#branch=main"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
