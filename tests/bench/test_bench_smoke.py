"""A short run of the benchmark harness, so it cannot rot: the CLI as an operator runs it, one
RPC, the embedded store, the asyncio generator, the two in-repo baselines.

It checks the shape of results.json and that something was measured; never a timing, which
on a shared 2-core machine would only measure the neighbours.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_a_short_run_writes_results_with_ratios(tmp_path: Path) -> None:
    out = tmp_path / "out"
    run = subprocess.run(
        [
            sys.executable, "-m", "bench",
            "--duration", "1", "--warmup", "0.2",
            "--concurrency", "4", "--workers", "1",
            "--rpcs", "Encrypt", "--stores", "embedded",
            "--generators", "asyncio", "--baselines", "transport,backend",
            "--kms-ops", "0", "--no-plot", "--out", str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "vaultd, embedded store, 1 worker(s)" in run.stdout  # the terminal table

    results = json.loads((out / "results.json").read_text())
    assert set(results) == {"meta", "points", "ratios", "kms"}
    meta = results["meta"]
    assert meta["machine"]["cores"] >= 1 and meta["machine"]["cpu_model"]
    assert meta["settings"]["rpcs"] == ["Encrypt"]

    by_target = {p["target"]: p for p in results["points"]}
    assert set(by_target) == {"vaultd", "transport_floor", "backend_floor"}
    for point in by_target.values():
        assert point["rpc"] == "Encrypt" and point["concurrency"] == 4
        assert point["ok"] is True and point["errors"] == 0, point["check"]
        assert point["requests"] > 0 and point["rps"] > 0
        assert point["p50_ms"] <= point["p90_ms"] <= point["p99_ms"]
    assert by_target["vaultd"]["store"] == "embedded" and by_target["vaultd"]["workers"] == 1

    (ratio,) = results["ratios"]
    assert ratio["rpc"] == "Encrypt"
    assert ratio["vs_transport_floor"] > 0 and ratio["vs_backend_floor"] > 0
    assert ratio["vs_openbao"] is None  # not asked for


def bench_json(module: str, *args: str, timeout: float = 120) -> Any:
    """What `python -m module *args` prints on stdout, as JSON, once it exited 0."""
    run = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return json.loads(run.stdout)


def test_a_short_local_encrypt_run_reports_a_rate_and_decrypts_its_last_blob() -> None:
    result = bench_json("bench.local_encrypt", "--seconds", "0.2", "--check", "--json")
    assert result["checked"] is True  # the server opened what the client sealed
    assert result["messages"] >= 1000 and result["messages_per_second"] > 0


@pytest.mark.skipif(shutil.which("h2load") is None, reason="h2load (nghttp2-client) not installed")
def test_a_short_cpu_per_call_run_checks_its_answers_and_reports_cpu() -> None:
    result = bench_json("bench.cpu_per_call", "--rpc", "Encrypt", "--calls", "200")
    assert result["problems"] == [] and result["calls"] == 200
    assert result["vaultd_cpu_us_per_call"] > 0 and result["redis_reads_per_call"] is None
    # Both floors ran the same calls: the empty servicer answered, the backend did its work.
    assert result["floor_cpu_us_per_call"] > 0 and result["floor_calls_per_second"] > 0
    assert result["backend_floor_cpu_us_per_call"] > 0


@pytest.mark.skipif(
    shutil.which("h2load") is None or shutil.which("valgrind") is None,
    reason="h2load (nghttp2-client) or valgrind not installed",
)
def test_a_short_instruction_count_checks_its_answers_and_counts_both_servers() -> None:
    result = bench_json(
        "bench.instructions", "--rpc", "Encrypt", "--calls", "20", "--warmup", "20", timeout=240
    )
    assert result["problems"] == [] and result["calls"] == 20
    # Counted only while the calls ran: far more than nothing, far less than a start-up (~1e9).
    for server in ("vaultd", "floor"):
        assert 10_000 < result[f"{server}_instructions_per_call"] < 50_000_000
