"""Where the tests find buf: tests/polyglot's npm install, else the PATH."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

BUF = Path(__file__).resolve().parents[1] / "tests" / "polyglot" / "node_modules" / ".bin" / "buf"


def buf() -> str:
    """buf's path; skipped locally without it, a failure in CI (where .ci/run installs it)."""
    found = str(BUF) if BUF.exists() else shutil.which("buf")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("buf is not installed; .ci/run installs it (npm install in tests/polyglot)")
        pytest.skip("buf is not installed (cd tests/polyglot && npm install)")
    return found
