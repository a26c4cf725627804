"""README.md works as written: each `sh` block is run by a test, exactly as written except for
the address (a free port instead of 50051, so a developer's own vaultd does not get in the way).

- `quickstart` runs in the repository root (its .venv; `pip install -e .` is quick once
  installed) with VAULTD_LISTEN and VAULTD_DATA_DIR pointing at a free port and a temporary
  directory; the first admin key is taken from the 0600 file the README names.
- `buf-curl` runs against that server with KEY set, and each answer is checked.
- `grpcurl` runs as written where grpcurl is installed; tests/server/test_operator_readme.py
  also translates it into buf curl, flag by flag, everywhere.
- `bash .ci/run` is CI's own entry point, so CI running at all runs it.
Nothing in README.md or docs/ points outside the repository.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from testkit.buf import buf as find_buf
from testkit.docblocks import runnable_blocks
from testkit.serving import VAULTD, clean_env, free_port

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
ADDRESS = "127.0.0.1:50051"
START_SECONDS = 180  # the quickstart's pip install runs first


def test_every_sh_block_is_run_by_a_test() -> None:
    text = README.read_text()
    blocks = re.findall(r"^(.*)\n```sh\n", text, re.M)
    unmarked = [line for line in blocks if not line.startswith("<!-- tested: ")]
    assert unmarked == ["<!-- run by CI: .ci/run is the CI entry point -->"], unmarked
    assert "```sh\nbash .ci/run\n```" in text
    assert set(runnable_blocks(README)) == {"quickstart", "buf-curl", "grpcurl", "docker"}


# The team's design notes live beside the repository, not in it: nothing a user or maintainer
# reads may send them there (docs/ARCHITECTURE.md has the same section numbers). Spelled in
# parts so that this test is not itself such a pointer.
_OUTSIDE = "/".join(("..", "shared"))
_DESIGN_NOTES = re.compile(r"(?<![\w/])" + re.escape("DESIGN" + ".md"))


def test_nothing_points_outside_the_repository() -> None:
    pages = [README, *(REPO / "docs").glob("*.md")]
    sources = [
        path
        for folder in ("vaultd", "providers", "tests", "testkit", "bench", "clients")
        for path in (REPO / folder).rglob("*")
        if path.suffix in {".py", ".md", ".mjs", ".rb", ".go"} and "node_modules" not in path.parts
    ]
    for page in [*pages, *sources]:
        text = page.read_text(errors="replace")
        assert _OUTSIDE not in text, page
        assert not _DESIGN_NOTES.search(text), f"{page} cites the team's design notes"


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """The README's quickstart, running: (address, first admin key)."""
    data_dir = tmp_path_factory.mktemp("readme") / "vaultd-data"
    address = f"127.0.0.1:{free_port()}"
    env = clean_env() | {"VAULTD_LISTEN": address, "VAULTD_DATA_DIR": str(data_dir)}
    log = data_dir.parent / "quickstart.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            ["bash", "-euo", "pipefail", "-c", runnable_blocks(README)["quickstart"]],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        key_file = data_dir / "first-admin-key"
        deadline = time.monotonic() + START_SECONDS
        while not (key_file.exists() and "vaultd listening on" in log.read_text()):
            assert process.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        key = key_file.read_text().strip()
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        assert f"hash: {key} (also in {key_file}" in log.read_text()  # printed once, too
        yield address, key
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        assert process.wait(timeout=60) == 0, log.read_text()[-3000:]


def run_block(name: str, address: str, key: str, path: str) -> str:
    script = runnable_blocks(README)[name].replace(ADDRESS, address)
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=REPO,
        env=clean_env() | {"KEY": key, "PATH": path},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"{name}:\n{result.stdout}{result.stderr}"
    return result.stdout


def test_quickstart_then_buf_curl(quickstart: tuple[str, str]) -> None:
    address, key = quickstart
    buf_dir = str(Path(find_buf()).parent)
    out = run_block("buf-curl", address, key, f"{buf_dir}{os.pathsep}{os.environ['PATH']}")
    # Four answers: the service list (names), then three JSON documents.
    services, _, rest = out.partition("{")
    assert {"vaultd.v1.ObjectService", "grpc.health.v1.Health"} <= set(services.split())
    decoder, documents, at = json.JSONDecoder(), [], 0
    rest = "{" + rest
    while at < len(rest.rstrip()):
        document, at = decoder.raw_decode(rest, at)
        documents.append(document)
        while at < len(rest) and rest[at].isspace():
            at += 1
    health, created, read = documents
    assert health == {"status": "SERVING"}
    assert created["metadata"]["name"] == "db-password"
    assert base64.b64decode(read["object"]["value"]) == b"hunter2"


def test_grpcurl_as_written(quickstart: tuple[str, str]) -> None:
    grpcurl = shutil.which("grpcurl")
    if grpcurl is None:
        pytest.skip("grpcurl is not installed; test_operator_readme.py runs it as buf curl")
    address, key = quickstart
    # The TLS line needs the placeholder host's certificates; the plaintext lines run here.
    lines = runnable_blocks(README)["grpcurl"].split("# TLS:")[0]
    script = lines.replace(ADDRESS, address)
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script.replace("grpcurl ", f"{grpcurl} ")],
        env=clean_env() | {"KEY": key},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "vaultd.v1.ObjectService" in result.stdout


def test_docker_block(tmp_path: Path) -> None:
    """Where a Docker daemon runs: the README's build, the image serving, and a host directory
    uid 10001 cannot write refused in one line that names the fix."""
    docker = shutil.which("docker")
    daemon = docker and subprocess.run([docker, "info"], capture_output=True).returncode == 0
    if not docker or not daemon:
        pytest.skip("no Docker daemon here; the Dockerfile's shape is tested in test_dockerfile.py")
    build = runnable_blocks(README)["docker"].splitlines()[0].split("#")[0]
    built = subprocess.run(["bash", "-c", build], cwd=REPO, capture_output=True, text=True)
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]

    port = free_port()
    started = subprocess.run(
        [docker, "run", "-d", "--rm", "-p", f"127.0.0.1:{port}:50051", "vaultd"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    container = started.stdout.strip()
    try:
        deadline = time.monotonic() + 60
        health = [str(VAULTD), "health", "--address", f"127.0.0.1:{port}"]
        while subprocess.run(health, capture_output=True, env=clean_env()).returncode != 0:
            assert time.monotonic() < deadline, "the container never said SERVING"
            time.sleep(0.5)
    finally:
        subprocess.run([docker, "stop", container], capture_output=True)

    host_dir = tmp_path / "not-10001s"
    host_dir.mkdir(mode=0o755)  # owned by whoever runs the tests, not uid 10001
    refused = subprocess.run(
        [docker, "run", "--rm", "-v", f"{host_dir}:/var/lib/vaultd", "vaultd"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    if os.getuid() == 10001:
        pytest.skip("the tests run as uid 10001, who may write the directory")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    [line] = refused.stderr.splitlines()
    assert "cannot write /var/lib/vaultd" in line and "uid 10001" in line and "chown" in line
