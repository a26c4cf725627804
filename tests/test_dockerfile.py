"""The Dockerfile's shape, since no Docker engine runs where the tests do.

Multi-stage, a slim base, a non-root user, extras chosen by a build argument, a HEALTHCHECK
through the gRPC health service (the `vaultd health` command, tested against a live server in
tests/server), and a .dockerignore that keeps the work tree's clutter out of the context.
"""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per line, with continuation lines joined and comments dropped."""
    text = (REPO / "Dockerfile").read_text()
    joined = re.sub(r"\\\n\s*", " ", text)
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in (raw.strip() for raw in joined.splitlines())
        if line and not line.startswith("#")
    ]


def _runtime_stage() -> list[tuple[str, str]]:
    instructions = _instructions()
    last_from = max(i for i, (op, _) in enumerate(instructions) if op == "FROM")
    return instructions[last_from:]


def test_multi_stage_on_a_slim_base() -> None:
    froms = [args for op, args in _instructions() if op == "FROM"]
    assert len(froms) >= 2, "a build stage and a runtime stage"
    assert all("-slim" in args for args in froms)
    assert any(op == "COPY" and "--from=build" in args for op, args in _runtime_stage())


def test_runs_as_a_non_root_user() -> None:
    users = [args for op, args in _runtime_stage() if op == "USER"]
    assert users, "the runtime stage must name a USER"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}


def test_extras_come_from_a_build_argument() -> None:
    instructions = _instructions()
    assert any(op == "ARG" and args.startswith("EXTRAS") for op, args in instructions)
    install = next(args for op, args in instructions if op == "RUN" and "pip install" in args)
    target = install.split("pip install", 1)[1].strip()
    # The same shell expression the build runs, for no extras and for two.
    for extras, expected in [("", "."), ("aws,gcp", ".[aws,gcp]")]:
        echoed = subprocess.run(
            ["sh", "-c", f"echo {target}"], env={"EXTRAS": extras}, capture_output=True, text=True
        )
        assert echoed.stdout.strip() == expected
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert {"aws", "gcp", "azure", "hashicorp", "all"} <= set(declared["optional-dependencies"])


def test_healthcheck_asks_the_grpc_health_service() -> None:
    checks = [args for op, args in _runtime_stage() if op == "HEALTHCHECK"]
    assert len(checks) == 1
    assert re.search(r'CMD \["vaultd", "health"', checks[0])


def test_dockerignore_keeps_the_context_small() -> None:
    ignored = set((REPO / ".dockerignore").read_text().split())
    assert {".git", ".venv", "tests", "**/node_modules", "vaultd-data"} <= ignored
    copied = [args for op, args in _instructions() if op == "COPY" and "--from" not in args]
    for args in copied:
        for source in args.split()[:-1]:
            assert (REPO / source).exists(), f"COPY {source}: not in the repository"
            assert source not in ignored, f"COPY {source}: excluded by .dockerignore"
