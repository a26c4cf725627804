"""docs/CLIENTS.md, run as written: the Go, Ruby, Node.js and Python flows against the
session's vaultd on each store (embedded and Redis).

Each language's `<!-- tested: LANG-setup -->` block runs once per session, then its
`<!-- tested: LANG -->` block once per store, in bash from the repository root with VAULTD_ADDRESS,
VAULTD_API_KEY and VAULTD_SUFFIX set and tests/polyglot/node_modules/.bin (buf) on PATH. The
Go, Ruby and Python flows print `ok <step>` per step; each expected step must be there. A tool
that is missing skips locally and fails in CI, where .ci/run installs it.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import uuid
from pathlib import Path

import pytest

from testkit.docblocks import runnable_blocks
from testkit.running import Running

REPO = Path(__file__).resolve().parents[2]
PAGE = REPO / "docs" / "CLIENTS.md"
CI_RUN = REPO / ".ci" / "run"
NODE_BIN = REPO / "tests" / "polyglot" / "node_modules" / ".bin"
TIMEOUT_SECONDS = 300
FLOW_STEPS = ["read by name", "stale update", "list pages", "data key", "encrypt and decrypt"]
NEEDS = {
    "go": ["go", "protoc-gen-go", "protoc-gen-go-grpc", "buf"],
    "ruby": ["ruby", "protoc", "grpc_ruby_plugin", "buf"],
    "node": ["node", "npm"],
    "python": [],
}


def require_tools(tools: list[str]) -> None:
    path = f"{NODE_BIN}{os.pathsep}{os.environ.get('PATH', '')}"
    missing = [tool for tool in tools if shutil.which(tool, path=path) is None]
    if missing:
        message = f"missing {', '.join(missing)}: `bash .ci/run` installs them (docs/CLIENTS.md)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


async def run_block(script: str, env: dict[str, str]) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        "bash", "-euo", "pipefail", "-c", script,
        cwd=REPO, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        out, _ = await asyncio.wait_for(process.communicate(), TIMEOUT_SECONDS)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return process.returncode, out.decode(errors="replace")


_SET_UP: set[str] = set()  # languages whose set-up block ran in this session


def test_every_language_has_a_tested_block() -> None:
    assert set(runnable_blocks(PAGE)) == set(NEEDS) | {f"{lang}-setup" for lang in NEEDS}


def test_the_set_up_packages_are_the_ones_ci_installs() -> None:
    """Each `apt-get install` line of the page names only packages .ci/run installs."""
    documented = set()
    for line in re.findall(r"^apt-get install (.+)$", PAGE.read_text(), re.M):
        documented |= set(line.split())
    installed = set(re.search(r"DEBIAN_PACKAGES=\((.*?)\)", CI_RUN.read_text(), re.S)[1].split())
    assert documented and documented <= installed, sorted(documented - installed)


@pytest.mark.parametrize("language", sorted(NEEDS))
async def test_clients_doc_flow(running: Running, language: str) -> None:
    require_tools(NEEDS[language])
    env = {
        **os.environ,
        "PATH": f"{NODE_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "VAULTD_ADDRESS": f"127.0.0.1:{running.vaultd.port}",
        "VAULTD_API_KEY": running.api_key,
        "VAULTD_SUFFIX": f"{running.kind}-{uuid.uuid4().hex[:12]}",
    }
    blocks = runnable_blocks(PAGE)
    if language not in _SET_UP:
        code, output = await run_block(blocks[f"{language}-setup"], env)
        assert code == 0, f"docs/CLIENTS.md {language}-setup exited {code}:\n{output[-3000:]}"
        _SET_UP.add(language)
    code, output = await run_block(blocks[language], env)
    assert code == 0, f"docs/CLIENTS.md {language} block exited {code}:\n{output[-3000:]}"
    if language == "node":
        assert re.search(r"^# pass 1$", output, re.M), output[-2000:]
        assert re.search(r"^# fail 0$", output, re.M), output[-2000:]
        return
    for step in FLOW_STEPS:
        assert re.search(rf"^ok {step}$", output, re.M), f"{language}: no `ok {step}`:\n{output}"
    if language == "python":
        # The light distribution brought the client's dependencies, none of the server's.
        installed = (REPO / ".venv-client" / "lib").glob("python3*/site-packages/*.dist-info")
        names = {path.name.split("-")[0].lower() for path in installed}
        assert {"grpcio", "protobuf", "cryptography", "vaultd_client"} <= names, names
        assert not names & {"redis", "pydantic", "uvloop", "prometheus_client", "boto3"}, names
