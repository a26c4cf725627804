"""README.md's grpcurl commands, each run with `buf curl` against live servers.

The commands are read from the README itself and translated flag by flag, so the README cannot
drift from what vaultd answers: listing services by reflection, health, creating and reading an
object with the bearer header and base64 values, and the same read over mutual TLS.
"""

from __future__ import annotations

import asyncio
import base64
import json
import shlex
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from testkit.buf import buf as find_buf
from testkit.docblocks import runnable_blocks
from testkit.running import settings_for
from testkit.tls import make_pki
from vaultd.core.apikeys import new_secret
from vaultd.server import Vaultd, start

REPO = Path(__file__).resolve().parents[2]
# The README's placeholders for the address and the PEM files, and what the test puts there.
PLAIN_ADDRESS = "127.0.0.1:50051"
TLS_ADDRESS = "vault.example.com:50051"
PEM_FILES = {"ca.pem": "ca", "client.pem": "client_cert", "client-key.pem": "client_key"}


def readme_grpcurl_commands() -> list[list[str]]:
    """Each grpcurl command of the README's `grpcurl` block, split as the shell would."""
    block = runnable_blocks(REPO / "README.md")["grpcurl"]
    joined = block.replace("\\\n", " ")
    return [
        shlex.split(line) for line in joined.splitlines() if line.strip().startswith("grpcurl ")
    ]


@dataclass
class Live:
    plain: Vaultd
    mtls: Vaultd
    key: str
    files: dict[str, Path]


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[Live]:
    # Two servers on one store: one in plaintext, one requiring client certificates.
    key = new_secret()
    files = make_pki().write(tmp_path / "pki")
    plain = await start(settings_for(tmp_path, None, bootstrap_api_key=key))
    mtls = await start(
        settings_for(
            tmp_path,
            None,
            bootstrap_api_key=key,
            tls_cert_file=files["server_cert"],
            tls_key_file=files["server_key"],
            tls_client_ca_file=files["ca"],
        )
    )
    yield Live(plain, mtls, key, files)
    await mtls.stop(None)
    await plain.stop(None)


def to_buf_curl(buf: str, argv: list[str], live: Live) -> list[str]:
    """The buf curl command doing what grpcurl `argv` does, aimed at the live servers."""
    assert argv[0] == "grpcurl"
    command = [buf, "curl", "--protocol", "grpc"]
    plaintext = False
    positional: list[str] = []
    args = iter(argv[1:])
    for arg in args:
        if arg == "-plaintext":
            plaintext = True
        elif arg == "-H":
            # Reflection needs no key: the header goes to the call (grpcurl sends it to both).
            command += [arg, next(args).replace("$KEY", live.key)]
        elif arg == "-d":
            command += [arg, next(args)]
        elif arg in ("-cacert", "-cert", "-key"):
            command += ["-" + arg, str(live.files[PEM_FILES[next(args)]])]
        elif arg.startswith("-"):
            raise AssertionError(f"README.md uses grpcurl {arg}, which this test cannot translate")
        else:
            positional.append(arg)
    address, method = positional
    if plaintext:
        assert address == PLAIN_ADDRESS
        base = f"http://127.0.0.1:{live.plain.port}"
        command.append("--http2-prior-knowledge")
    else:
        assert address == TLS_ADDRESS
        base = f"https://localhost:{live.mtls.port}"
    return (
        [*command, "--list-services", base] if method == "list" else [*command, f"{base}/{method}"]
    )


async def test_readme_grpcurl_commands_work_with_buf_curl(live: Live) -> None:
    buf = find_buf()
    commands = readme_grpcurl_commands()
    answered: dict[str, int] = {}
    for argv in commands:
        command = to_buf_curl(buf, argv, live)
        # In a thread: both servers run on this event loop and must keep answering.
        result = await asyncio.to_thread(
            subprocess.run, command, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, f"{shlex.join(argv)}\n{result.stdout}{result.stderr}"
        method = command[-1].rsplit("/", 1)[-1] if "--list-services" not in command else "list"
        answered[method] = answered.get(method, 0) + 1
        if method == "list":
            services = set(result.stdout.split())
            assert {"vaultd.v1.ObjectService", "grpc.health.v1.Health"} <= services
            continue
        reply = json.loads(result.stdout)
        if method == "Check":
            assert reply == {"status": "SERVING"}
        elif method == "CreateObject":
            assert reply["metadata"]["name"] == "db-password"
        elif method == "GetObjectByName":
            assert base64.b64decode(reply["object"]["value"]) == b"hunter2"
    assert answered == {"list": 1, "Check": 1, "CreateObject": 1, "GetObjectByName": 2}
    assert any("-plaintext" not in argv for argv in commands), "the README shows TLS too"
