"""An operator's first hour: `vaultd --version`, `serve --help` with defaults and the bootstrap
variable, the start banner, the rewrap countdown and rate, and `audit tail --since` errors."""

from __future__ import annotations

import asyncio
import re
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from providers.internal import InternalProvider
from testkit.serving import VAULTD, clean_env, free_port, wait_serving
from vaultd import startup
from vaultd.cli import kek as kek_cli
from vaultd.storage.records import RewrapJob, RewrapState


def vaultd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(VAULTD), *args], capture_output=True, text=True, env=clean_env(), timeout=60
    )


def test_version_prints_a_semantic_version() -> None:
    done = vaultd("--version")
    assert done.returncode == 0
    assert re.fullmatch(r"vaultd \d+\.\d+\.\d+\S*\n", done.stdout), done.stdout


def test_serve_help_shows_defaults_and_the_bootstrap_variable() -> None:
    done = vaultd("serve", "--help")
    assert done.returncode == 0
    text = " ".join(done.stdout.split())
    for expected in [
        "default 127.0.0.1:50051",
        "default ./vaultd-data",
        "default 1",
        "default json",
        "VAULTD_BOOTSTRAP_API_KEY",
        "first-admin-key",
        "exit 2 (configuration) or 1 (run time)",
    ]:
        assert expected in text, expected


async def test_the_start_banner(tmp_path: Path) -> None:
    InternalProvider.from_file(tmp_path / "root.key")
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        str(VAULTD), "serve", "--data-dir", str(tmp_path), "--listen", f"127.0.0.1:{port}",
        env=clean_env(), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        channel = await wait_serving(f"127.0.0.1:{port}")
        await channel.close()
    finally:
        process.terminate()
        out, _ = await process.communicate()
    assert process.returncode == 0
    [line] = [line for line in out.decode().splitlines() if "listening on" in line]
    for expected in [
        f"vaultd listening on 127.0.0.1:{port}",
        f"version {startup.version()}",
        "plaintext",
        f"store sqlite {tmp_path / 'vaultd.db'}",
        "providers ",
        "internal",
        "0 BYOK rule(s)",
        "metrics off",
    ]:
        assert expected in line, line


def test_the_banner_hides_a_redis_password() -> None:
    described = startup.store_description("redis://app:s3cret@10.0.0.5:6379/0", Path("x"))
    assert described == "redis redis://app:***@10.0.0.5:6379/0"


def job(done: int, total: int, state: RewrapState = RewrapState.RUNNING) -> RewrapJob:
    now = datetime.now(UTC)
    return RewrapJob(
        "rewrap_01ARZ3NDEKTSV4RRFFQ69G5FAV", "default", ("kek_a",), state, now, now,
        objects_total=total, objects_done=done,
    )  # fmt: skip


def test_rewrap_counts_down_then_shows_rate(capsys: pytest.CaptureFixture[str]) -> None:
    meter = kek_cli._Meter(datetime.now(UTC) + timedelta(seconds=42))
    kek_cli._progress(job(0, 10), meter)
    kek_cli._progress(job(0, 10), meter)  # not a terminal: the countdown is said once
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1
    assert re.search(r"waiting out the KEK cache TTL: (42|41)s left", err), err

    meter.settle_until = datetime.now(UTC) - timedelta(seconds=1)
    kek_cli._progress(job(0, 10), meter)  # starts the clock
    kek_cli._progress(job(10, 10, RewrapState.DONE), meter, end=True)
    err = capsys.readouterr().err
    assert re.search(r"10/10 objects, .* \(done\); [\d,.]+ objects/s$", err.strip()), err


def test_audit_tail_explains_a_bad_since(tmp_path: Path) -> None:
    done = vaultd("audit", "tail", "--since", "yesterday", "--data-dir", str(tmp_path))
    assert done.returncode == 2
    assert "'yesterday' is not an ISO 8601 time; use e.g. 2026-12-04T09:30:00Z" in done.stderr
    assert "Traceback" not in done.stderr
