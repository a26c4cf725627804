"""bench/http_twins.py runs end to end (briefly), so the HTTP-beside-gRPC row cannot rot."""

from __future__ import annotations

import pytest

from bench import http_twins


def test_http_twins_runs_and_prints_every_row(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("aiohttp", reason="the bench extra (aiohttp) is not installed")
    assert http_twins.main(["--duration", "0.5", "--warmup", "0", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    for row in (
        "| GetObject | gRPC |",
        "| GetObject | HTTP |",
        "| Encrypt | gRPC |",
        "| Encrypt | HTTP |",
    ):
        assert row in out
