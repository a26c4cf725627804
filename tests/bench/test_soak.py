"""A short soak (bench/soak.py) against a real `vaultd serve`, on SQLite and on Redis.

The soak is a separate client process, as an operator would run it, against a server process
started here; it must exit 0 with every RPC exercised and no violation. The checks it relies on
are also tested directly below, so a soak that cannot see a violation does not pass for clean.
"""

from __future__ import annotations

import json
import random
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bench import soak
from testkit.redis_dbs import RedisDb, redis_db_url
from testkit.redis_server import RedisServer
from testkit.serving import ServeProcess, clean_env

REPO = Path(__file__).resolve().parents[2]
DURATION_SECONDS = 4
CONCURRENCY = 16


@dataclass
class Served:
    kind: str
    target: str
    api_key: str
    at_rest: list[str]  # the soak's option that scans this server's storage
    log: Path


@pytest.fixture(params=["sqlite", "redis"])
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Served]:
    """`vaultd serve` as a separate process, with a bootstrap admin key for the soak to use."""
    api_key = "sk_" + secrets.token_urlsafe(32)
    data_dir = tmp_path / "data"
    env = clean_env() | {"VAULTD_DATA_DIR": str(data_dir), "VAULTD_BOOTSTRAP_API_KEY": api_key}
    if request.param == "redis":
        redis: RedisServer = request.getfixturevalue("redis_server")
        # A database of its own: its objects and its scan of every key stay out of the other
        # suites' way.
        url = redis_db_url(redis.url, RedisDb.SOAK)
        env["VAULTD_REDIS_URL"] = url
        at_rest = ["--check-store", url]
    else:
        at_rest = ["--check-data-dir", str(data_dir)]
    process = ServeProcess(tmp_path, env)
    target = process.start()
    try:
        yield Served(request.param, target, api_key, at_rest, process.log)
    finally:
        process.stop()


@pytest.fixture(scope="session")
def soak_report(pytestconfig: pytest.Config) -> list[str]:
    """Soak summaries, shown in pytest's terminal summary whatever the capture mode."""
    lines: list[str] = []

    class Reporter:
        @staticmethod
        def pytest_terminal_summary(terminalreporter: Any) -> None:
            terminalreporter.section("vaultd soak: short runs")
            for line in lines:
                terminalreporter.write_line(line)

    pytestconfig.pluginmanager.register(Reporter(), "vaultd-soak-report")
    return lines


def test_short_soak_keeps_every_promise(
    served: Served, tmp_path: Path, soak_report: list[str]
) -> None:
    summary_file = tmp_path / "soak.json"
    started = time.monotonic()
    # The soak waits (up to 10 s) for the server's health check to say SERVING.
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.soak",
            "--target",
            served.target,
            "--api-key",
            served.api_key,
            "--duration",
            str(DURATION_SECONDS),
            "--concurrency",
            str(CONCURRENCY),
            *served.at_rest,
            "--json-out",
            str(summary_file),
        ],
        cwd=REPO,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=180,
    )
    output = result.stdout + result.stderr
    soak_report.append(f"--- {served.kind} ({time.monotonic() - started:.1f}s) ---")
    soak_report.extend(result.stdout.splitlines())
    server_log = served.log.read_text(errors="replace")[-3000:]
    assert result.returncode == 0, f"{output}\n--- vaultd log ---\n{server_log}"

    summary = json.loads(summary_file.read_text())
    assert summary["violations"] == 0 and summary["fatal_statuses"] == 0, output
    idle = [rpc for rpc in soak.RPCS if summary["ops"][rpc]["ok"] == 0]
    assert not idle, f"RPCs the soak never completed: {idle}\n{output}"
    verified = summary["verified"]
    assert verified["writes_verified"] == verified["writes_to_check"] > 0, output
    assert verified["objects_deleted"] > 0 and verified["at_rest_bytes"] > 0, output
    assert "PASS" in result.stdout


FAILOVER_SOAK_SECONDS = 20
FAILOVER_EVERY_SECONDS = 5


def test_soak_across_sentinel_failovers_loses_no_acknowledged_write(
    tmp_path: Path, soak_report: list[str]
) -> None:
    """The soak's failover mode (issue 13), short: Sentinel fails the master over every few
    seconds under load; with wait_replicas=1 every acknowledged write reads back afterwards.
    The 5-minute run with a failover every 30 s is `bench/RESULTS.md`'s."""
    from testkit.redis_topologies import RedisSentinelSet

    api_key = "sk_" + secrets.token_urlsafe(32)
    with RedisSentinelSet(tmp_path / "sentinel") as topology:
        env = clean_env() | {
            "VAULTD_DATA_DIR": str(tmp_path / "data"),
            "VAULTD_BOOTSTRAP_API_KEY": api_key,
            "VAULTD_REDIS_URL": f"{topology.url}?wait_replicas=1",
        }
        process = ServeProcess(tmp_path, env)
        target = process.start()
        log = process.log
        try:
            result = subprocess.run(
                [sys.executable, "-m", "bench.soak", "--target", target,
                 "--api-key", api_key, "--duration", str(FAILOVER_SOAK_SECONDS),
                 "--concurrency", str(CONCURRENCY),
                 "--failover-sentinel", f"127.0.0.1:{topology.sentinel_port}",
                 "--failover-service", topology.service,
                 "--failover-every", str(FAILOVER_EVERY_SECONDS),
                 "--json-out", str(tmp_path / "soak.json")],
                cwd=REPO, env=clean_env(), capture_output=True, text=True, timeout=300,
            )  # fmt: skip
        finally:
            process.stop()
    output = result.stdout + result.stderr
    soak_report.append("--- sentinel failovers ---")
    soak_report.extend(result.stdout.splitlines())
    server_log = log.read_text(errors="replace")[-3000:]
    assert result.returncode == 0, f"{output}\n--- vaultd log ---\n{server_log}"
    summary = json.loads((tmp_path / "soak.json").read_text())
    assert summary["failovers"].get("done", 0) >= 2, output
    verified = summary["verified"]
    assert summary["violations"] == 0 and summary["fatal_statuses"] == 0, output
    assert verified["writes_verified"] == verified["writes_to_check"] > 0, output


# --- the soak's checks, able to fail ----------------------------------------------------------


def _verifier() -> soak.Verifier:
    # The order and presence checks read only the ledger: no client needed.
    return soak.Verifier(None, soak.Ledger("test", 64), soak.Violations())  # type: ignore[arg-type]


def _tracked(*writes: soak.Write) -> soak.Tracked:
    tracked = soak.Tracked("soak-name-test-1", shared=True, object_id="secret_X")
    for write in writes:
        tracked.add(write)
    return tracked


def test_history_that_contradicts_real_time_is_a_violation() -> None:
    # A was acknowledged at t=2, B sent at t=3: B after A, or B's write was lost and replayed.
    a = soak.Write(b"a", sent=1.0, acked=2.0, version_id="ver_A")
    b = soak.Write(b"b", sent=3.0, acked=4.0, version_id="ver_B")
    verifier = _verifier()
    verifier.check_order(_tracked(a, b), {"ver_A": 0, "ver_B": 1})
    assert not verifier.violations.items
    verifier.check_order(_tracked(a, b), {"ver_B": 0, "ver_A": 1})
    assert verifier.violations.by_kind() == {"history order contradicts real time": 1}


def test_concurrent_writes_may_land_in_either_order() -> None:
    a = soak.Write(b"a", sent=1.0, acked=3.0, version_id="ver_A")
    b = soak.Write(b"b", sent=2.0, acked=4.0, version_id="ver_B")
    verifier = _verifier()
    verifier.check_order(_tracked(a, b), {"ver_B": 0, "ver_A": 1})
    assert not verifier.violations.items


def test_lost_update_under_version_check_is_a_violation() -> None:
    # Two writes both checked against ver_A and both acknowledged: one of them was lost.
    base = soak.Write(b"0", sent=0.0, acked=0.5, version_id="ver_A")
    one = soak.Write(b"1", sent=1.0, acked=2.0, version_id="ver_B", base_version="ver_A")
    two = soak.Write(b"2", sent=1.0, acked=2.0, version_id="ver_C", base_version="ver_A")
    verifier = _verifier()
    verifier.check_order(_tracked(base, one, two), {"ver_A": 0, "ver_B": 1, "ver_C": 2})
    assert verifier.violations.by_kind() == {"version_check write does not follow its version": 1}


def test_acknowledged_write_missing_from_history_is_a_violation() -> None:
    a = soak.Write(b"a", sent=1.0, acked=2.0, version_id="ver_A")
    unknown = soak.Write(b"u", sent=1.5)  # outcome unknown: may be missing
    verifier = _verifier()
    verifier.check_acknowledged_present(_tracked(a, unknown), {})
    assert verifier.violations.by_kind() == {"acknowledged write missing from its history": 1}


async def test_plaintext_at_rest_is_found(tmp_path: Path) -> None:
    ledger = soak.Ledger("deadbeef", 64)
    ledger.data_keys.append(soak.DataKeyRecord("dk", b"K" * 32, b"wrapped"))
    (tmp_path / "clean.db").write_bytes(b"\x00" * 5000 + b"ciphertext only")
    args = ["--target", "x:1", "--duration", "1", "--concurrency", "1"]
    config = soak.parse_args([*args, "--check-data-dir", str(tmp_path)])
    violations = soak.Violations()
    assert await soak.check_at_rest(config, ledger, violations) > 0
    assert not violations.items

    # Across a chunk boundary, too: the scan reads 1 MiB at a time.
    leaked = b"\x00" * ((1 << 20) - 5) + ledger.new_value(random.Random(1))
    (tmp_path / "leaky.db-wal").write_bytes(leaked)
    (tmp_path / "key.bin").write_bytes(b"junk" + b"K" * 32)
    await soak.check_at_rest(config, ledger, violations)
    assert sorted(detail for _, detail in violations.items) == [
        f"file {tmp_path / 'key.bin'}",
        f"file {tmp_path / 'leaky.db-wal'}",
    ]
