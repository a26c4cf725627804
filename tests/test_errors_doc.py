"""docs/ERRORS.md lists exactly the reasons the code raises, each with its status code and the
metadata keys the code attaches."""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Iterator
from pathlib import Path

import vaultd
from vaultd.core.errors import VaultError

REPO = Path(__file__).resolve().parent.parent
PAGE = REPO / "docs" / "ERRORS.md"
# Where errors are raised: everything but the generated stubs and the client (which reads them).
SOURCES = [p for p in (REPO / "vaultd").rglob("*.py") if not {"v1", "client"} & set(p.parts)]
_ROW = re.compile(r"^\| `([A-Z_]+)` \| ([A-Z_]+) \| (.*?) \|\s*(.*?)\s*\|$", re.M)


def documented() -> dict[str, tuple[str, str]]:
    """Reason -> (status, metadata column) from the page's table."""
    rows = {}
    for reason, status, _, metadata in _ROW.findall(PAGE.read_text()):
        assert reason not in rows, f"{reason} is listed twice"
        rows[reason] = (status, metadata)
    return rows


def _subclasses(cls: type[VaultError]) -> Iterator[type[VaultError]]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def raised() -> dict[str, str]:
    """Reason -> status code, from every VaultError class and every `reason="..."` override."""
    for module in pkgutil.walk_packages(vaultd.__path__, "vaultd."):
        if not module.name.startswith(("vaultd.v1", "vaultd.client")):
            importlib.import_module(module.name)
    reasons = {cls.reason: cls.code for cls in [VaultError, *_subclasses(VaultError)]}
    for path in SOURCES:
        for reason in re.findall(r'reason\s*=\s*"([A-Z_]+)"', path.read_text()):
            reasons.setdefault(reason, "INVALID_ARGUMENT")  # InvalidArgument(..., reason=...)
    return reasons


def metadata_keys() -> set[str]:
    keys = set()
    for path in SOURCES:
        for literal in re.findall(r"metadata\s*=\s*\{([^}]*)\}", path.read_text(), re.S):
            keys |= set(re.findall(r'"(\w+)"\s*:', literal))
    return keys


def test_every_reason_is_documented_with_its_status() -> None:
    rows = documented()
    code = raised()
    assert sorted(set(code) - set(rows)) == [], "add these reasons to docs/ERRORS.md"
    assert sorted(set(rows) - set(code)) == [], "docs/ERRORS.md lists reasons nothing raises"
    wrong = {r: (rows[r][0], code[r]) for r in code if rows[r][0] != code[r]}
    assert wrong == {}, "documented status != raised status"


def test_every_metadata_key_is_documented() -> None:
    documented_keys = set()
    for _, metadata in documented().values():
        documented_keys |= set(re.findall(r"`(\w+)`", metadata))
    assert sorted(metadata_keys() - documented_keys) == []


def test_the_finder_sees_overrides_and_metadata() -> None:
    """The scan itself works: it finds a reason only given as an argument, and known keys."""
    assert raised()["INVALID_PERMISSION"] == "INVALID_ARGUMENT"
    assert {"current_version_id", "object_id", "key_uri"} <= metadata_keys()
