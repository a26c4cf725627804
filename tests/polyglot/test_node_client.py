"""The Node.js client test (client.test.mjs) against the session's vaultd, on both stores.

node runs as a child process while this test awaits it, so the event loop that serves vaultd
keeps serving. The Python client seals a blob first and hands it over in a file, so the Node
side proves it opens what Python writes (and client.test.mjs proves the reverse through the
server's Decrypt, which is the same code as the Python client's local decrypt).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import shutil
import uuid
from pathlib import Path

import pytest

from testkit.running import Running
from tests.vectors.generate import load_vectors
from vaultd.client import AsyncVaultClient

# The session's vaultd per store (sqlite, redis), shared with tests/server.

HERE = Path(__file__).resolve().parent
# Tests in client.test.mjs besides one per vector: the vector-count check and the live ones.
OTHER_NODE_TESTS = 8
NODE_TIMEOUT_SECONDS = 120


def node_or_skip() -> str:
    """The node binary; skips locally without npm ci's node_modules, fails in CI."""
    node = shutil.which("node")
    missing = [
        what
        for what, ok in (
            ("node", node is not None),
            ("@grpc/grpc-js", (HERE / "node_modules/@grpc/grpc-js").is_dir()),
            ("@grpc/proto-loader", (HERE / "node_modules/@grpc/proto-loader").is_dir()),
        )
        if not ok
    ]
    if missing:
        message = f"missing {', '.join(missing)}: run `npm install` in tests/polyglot"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    assert node is not None
    return node


def tap_summary(output: str) -> dict[str, int]:
    """The `# tests N`, `# pass N`, ... lines node's TAP reporter ends with."""
    return {k: int(v) for k, v in re.findall(r"^# (\w+) (\d+)$", output, flags=re.MULTILINE)}


def failed_tests(output: str) -> list[str]:
    """Each `not ok` line with the YAML block (error, stack) that follows it."""
    lines = output.splitlines()
    failed = []
    for i, line in enumerate(lines):
        if line.startswith("not ok"):
            block = [line]
            for following in lines[i + 1 :]:
                block.append(following)
                if following.strip() == "...":
                    break
            failed.append("\n".join(block))
    return failed


def test_tap_summary_reads_node_output() -> None:
    sample = "ok 1 - a\n1..2\n# tests 2\n# suites 0\n# pass 1\n# fail 1\n# duration_ms 3.5\n"
    assert tap_summary(sample) == {"tests": 2, "suites": 0, "pass": 1, "fail": 1}
    failing = "ok 1 - a\nnot ok 2 - b\n  ---\n  error: 'boom'\n  ...\nok 3 - c\n"
    assert failed_tests(failing) == ["not ok 2 - b\n  ---\n  error: 'boom'\n  ..."]


async def test_node_client_against_vaultd(running: Running, tmp_path: Path) -> None:
    node = node_or_skip()
    target = f"127.0.0.1:{running.vaultd.port}"
    plaintext, aad = f"python to node {uuid.uuid4()}".encode(), b"sealed by vaultd.client"
    api_key = running.api_key
    async with AsyncVaultClient(target, api_key) as vault:
        blob = await vault.encrypt(plaintext, {"organization_id": f"org_{uuid.uuid4().hex}"}, aad)
    handoff = tmp_path / "python-blob.json"
    handoff.write_text(
        json.dumps(
            {k: base64.b64encode(v).decode() for k, v in
             {"blob": blob, "associated_data": aad, "plaintext": plaintext}.items()}
        )
    )  # fmt: skip

    process = await asyncio.create_subprocess_exec(
        node, "--test", "--test-reporter=tap", "client.test.mjs",
        cwd=HERE,
        env={
            **os.environ,
            "VAULTD_ADDRESS": target,
            "VAULTD_API_KEY": api_key,
            "VAULTD_PYTHON_BLOB": str(handoff),
        },
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        out, _ = await asyncio.wait_for(process.communicate(), NODE_TIMEOUT_SECONDS)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    output = out.decode(errors="replace")
    failures = "\n".join(failed_tests(output))
    assert process.returncode == 0, (
        f"node exited {process.returncode}:\n{failures}\n...\n{output[-2000:]}"
    )

    summary = tap_summary(output)
    vectors = len(load_vectors())
    assert summary.get("fail") == 0 and summary.get("cancelled") == 0, summary
    assert summary.get("skipped") == 0 and summary.get("todo") == 0, summary
    assert summary["tests"] == summary["pass"] == vectors + OTHER_NODE_TESTS, summary
    python_blob = re.search(r"^ok \d+ - opens a blob the Python client sealed$", output, re.M)
    assert python_blob is not None, output[-2000:]
