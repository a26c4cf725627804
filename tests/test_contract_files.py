"""The public contract: stubs match protos/, protos/ pass buf lint and buf breaking vs main."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from testkit.buf import buf

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


def test_the_protos_pass_buf_lint() -> None:
    result = subprocess.run([buf(), "lint"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# buf's FILE rules flag any change of a language option, setting one the first time included.
# A file that never had the option has no generated code that depends on it yet, so setting it
# once is allowed; changing an option main already sets is not (it renames every stub).
_FILE_OPTION_RULE = re.compile(r'File option "(\w+)" changed from "(?:|false)" to ')


def first_time_options(
    violations: list[dict[str, object]], main_text: dict[str, str]
) -> list[dict[str, object]]:
    """The violations left once options set for the first time (absent on main) are allowed."""
    left = []
    for v in violations:
        match = _FILE_OPTION_RULE.match(str(v.get("message", "")))
        on_main = main_text.get(str(v.get("path")), "")
        if match and not re.search(rf"^option {match[1]}\s*=", on_main, re.MULTILINE):
            continue
        left.append(v)
    return left


def test_first_time_options_allows_only_unset_options() -> None:
    set_go = {"message": 'File option "go_package" changed from "" to "x;y"', "path": "a.proto"}
    renamed = {"message": 'File option "go_package" changed from "x;y" to "z"', "path": "a.proto"}
    field = {"message": 'Field "1" with name "a" on message "M" changed type.', "path": "a.proto"}
    assert first_time_options([set_go, field], {"a.proto": "syntax = 1;"}) == [field]
    assert first_time_options([renamed], {"a.proto": 'option go_package = "x;y";'}) == [renamed]
    again = {"a.proto": 'option go_package = "";'}
    assert first_time_options([set_go], again) == [set_go]


def test_buf_breaking_against_main() -> None:
    has_main = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", "main:protos"], cwd=REPO, capture_output=True
    )
    if has_main.returncode != 0:
        pytest.skip("main has no protos/ yet; nothing to break")
    result = subprocess.run(
        [buf(), "breaking", "--against", ".git#branch=main", "--error-format", "json"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    if result.returncode == 0:
        return
    assert result.stdout.strip(), result.stderr  # buf itself failed: no violations to read
    violations = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    main_text = {}
    for path in {str(v["path"]) for v in violations}:
        shown = subprocess.run(
            ["git", "show", f"main:{path}"], cwd=REPO, capture_output=True, text=True
        )
        main_text[path] = shown.stdout
    left = first_time_options(violations, main_text)
    assert not left, "\n".join(json.dumps(v) for v in left)
