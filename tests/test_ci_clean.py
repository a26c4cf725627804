"""`bash .ci/run` leaves the work tree as it found it: after its installs (pip, npm, whose
lockfile is committed complete so npm does not rewrite it) and the tests before this one (which
write only to ignored paths: .venv, node_modules, gen/, .gopath/, .venv-client/), `git status`
is empty. Checked in CI, on a clean clone; a developer's tree has their own edits."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def test_git_status_is_empty_in_ci() -> None:
    if not os.environ.get("CI"):
        pytest.skip("checked in CI only (CI=true), where the tree starts as a clean clone")
    git = shutil.which("git")
    if git is None or not (REPO / ".git").exists():
        pytest.skip("not a git work tree")
    status = subprocess.run(
        [git, "status", "--porcelain"], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert status.stdout == "", f"the run changed the work tree:\n{status.stdout}"
