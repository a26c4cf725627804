"""Metrics, request ids and JSON log lines, seen from outside: a scrape, trailers, log output."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest

from testkit.auth import BOOTSTRAP_API_KEY, channel
from testkit.grpc_errors import details_of
from testkit.running import settings_for
from testkit.serving import Samples, scrape
from vaultd.api.observe import request_id_from
from vaultd.logs import REQUEST_ID, JsonFormatter, TextFormatter
from vaultd.server import Vaultd, start
from vaultd.storage import AuditQuery
from vaultd.v1 import object_service_pb2 as pb
from vaultd.v1 import object_service_pb2_grpc as pb_grpc

MISSING_ID = "secret_01HZZZZZZZZZZZZZZZZZZZZZZZ"
CREATE = "vaultd.v1.ObjectService/CreateObject"
GET = "vaultd.v1.ObjectService/GetObject"


@pytest.fixture
async def observed(tmp_path: Path) -> AsyncIterator[tuple[Vaultd, pb_grpc.ObjectServiceStub]]:
    vaultd = await start(settings_for(tmp_path, None, metrics_listen="127.0.0.1:0"))
    authed = channel(f"127.0.0.1:{vaultd.port}")  # sends BOOTSTRAP_API_KEY on every call
    yield vaultd, pb_grpc.ObjectServiceStub(authed)
    await authed.close()
    await vaultd.stop(None)


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """vaultd's log lines during the test, as JsonFormatter writes them."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("vaultd")
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield out
    logger.removeHandler(handler)
    logger.setLevel(previous)


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def test_metrics_scrape_counts_calls_providers_cache_and_storage(
    observed: tuple[Vaultd, pb_grpc.ObjectServiceStub],
) -> None:
    vaultd, stub = observed
    created = await stub.CreateObject(
        pb.CreateObjectRequest(name="metered", value=b"v", key_context={"org": "org_metrics"})
    )
    await stub.GetObject(pb.GetObjectRequest(id=created.metadata.id))
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await stub.GetObject(pb.GetObjectRequest(id=MISSING_ID))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND

    assert vaultd.metrics_server is not None
    samples = await asyncio.to_thread(scrape, vaultd.metrics_server.port)
    assert _value(samples, "vaultd_rpc_handled_total", method=CREATE, code="OK") == 1
    assert _value(samples, "vaultd_rpc_handled_total", method=GET, code="OK") == 1
    # An error is counted under its real code, not as OK or UNKNOWN.
    assert _value(samples, "vaultd_rpc_handled_total", method=GET, code="NOT_FOUND") == 1
    assert _value(samples, "vaultd_rpc_duration_seconds_count", method=GET, code="NOT_FOUND") == 1
    assert _value(samples, "vaultd_rpc_duration_seconds_sum", method=CREATE, code="OK") > 0
    assert _value(samples, "vaultd_rpc_in_flight") == 0
    # A new context item made a KEK: one wrap by the internal provider.
    provider = {"scheme": "internal", "operation": "wrap"}
    assert _value(samples, "vaultd_provider_calls_total", outcome="ok", **provider) == 1
    assert _value(samples, "vaultd_provider_call_duration_seconds_count", **provider) == 1
    assert _value(samples, "vaultd_kek_cache_misses_total") >= 1
    assert _value(samples, "vaultd_kek_cache_hits_total") >= 1  # the read found the new KEK
    assert _value(samples, "vaultd_kek_cache_entries") >= 1
    for operation in ("create_object", "get_object"):
        assert _value(samples, "vaultd_storage_duration_seconds_count", operation=operation) >= 1
    assert _value(samples, "process_cpu_seconds_total") > 0


async def test_request_id_is_echoed_or_made_and_comes_back_on_errors(
    observed: tuple[Vaultd, pb_grpc.ObjectServiceStub],
) -> None:
    _, stub = observed
    request = pb.GetObjectRequest(id=MISSING_ID)
    with pytest.raises(grpc.aio.AioRpcError) as chosen:
        await stub.GetObject(request, metadata=[("x-request-id", "req-42.a")])
    trailers = dict(chosen.value.trailing_metadata() or ())
    assert trailers["x-request-id"] == "req-42.a"
    # The status details survive next to the request id.
    assert details_of(chosen.value).reason == "OBJECT_NOT_FOUND"

    call = stub.CreateObject(
        pb.CreateObjectRequest(name="with-id", value=b"v", key_context={"org": "org_rid"}),
        metadata=[("x-request-id", "spaces are not plausible")],
    )
    await call
    made = dict(await call.trailing_metadata())["x-request-id"]
    assert made != "spaces are not plausible" and len(made) == 32


def test_request_ids_from_metadata() -> None:
    assert request_id_from([("x-request-id", "abc-123")]) == "abc-123"
    assert request_id_from([("x-request-id", "x" * 129)]) != "x" * 129
    assert request_id_from([("x-request-id", b"bytes")]) != "bytes"
    assert request_id_from(None) != request_id_from(None)


async def test_json_log_lines_carry_the_request_id_and_no_secret(
    observed: tuple[Vaultd, pb_grpc.ObjectServiceStub], log_lines: io.StringIO
) -> None:
    _, stub = observed
    secret = b"log-scan-marker-value"
    created = await stub.CreateObject(
        pb.CreateObjectRequest(name="logged", value=secret, key_context={"org": "org_logs"}),
        metadata=[("x-request-id", "create-1")],
    )
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.GetObject(
            pb.GetObjectRequest(id=MISSING_ID), metadata=[("x-request-id", "missing-1")]
        )
    await stub.GetObject(pb.GetObjectRequest(id=created.metadata.id))

    text = log_lines.getvalue()
    lines = [json.loads(line) for line in text.splitlines()]
    access = {line.get("request_id"): line for line in lines if line["logger"] == "vaultd.access"}
    assert access["create-1"]["method"] == CREATE and access["create-1"]["code"] == "OK"
    assert access["missing-1"]["code"] == "NOT_FOUND" and access["missing-1"]["level"] == "info"
    assert len(access) == 3, "one access line per call, each with its own request id"
    for line in lines:
        assert {"time", "level", "logger", "msg", "pid"} <= line.keys()
    for forbidden in (secret.decode(), BOOTSTRAP_API_KEY, "authorization", "Bearer"):
        assert forbidden not in text


def test_json_formatter_extras_and_exceptions() -> None:
    record = logging.LogRecord("vaultd.x", logging.ERROR, __file__, 1, "failed %s", ("op",), None)
    record.method = "m"
    try:
        raise ValueError("boom")
    except ValueError:
        record.exc_info = sys.exc_info()
    token = REQUEST_ID.set("rid-1")
    try:
        line = json.loads(JsonFormatter().format(record))
    finally:
        REQUEST_ID.reset(token)
    assert line["msg"] == "failed op" and line["level"] == "error" and line["method"] == "m"
    assert line["request_id"] == "rid-1" and "ValueError: boom" in line["exc"]


def test_text_formatter_shows_the_request_id_or_a_dash() -> None:
    record = logging.LogRecord("vaultd.x", logging.INFO, __file__, 1, "hello", (), None)
    assert f"[{record.process} -] hello" in TextFormatter().format(record)
    token = REQUEST_ID.set("rid-2")
    try:
        assert "rid-2] hello" in TextFormatter().format(record)
    finally:
        REQUEST_ID.reset(token)


async def test_without_the_access_log_calls_keep_their_request_ids_and_audit_events(
    tmp_path: Path, log_lines: io.StringIO
) -> None:
    vaultd = await start(settings_for(tmp_path, None, access_log=False))
    try:
        async with channel(f"127.0.0.1:{vaultd.port}") as authed:
            stub = pb_grpc.ObjectServiceStub(authed)
            call = stub.GetObject(
                pb.GetObjectRequest(id=MISSING_ID), metadata=[("x-request-id", "quiet-1")]
            )
            with pytest.raises(grpc.aio.AioRpcError) as failed:
                await call
        assert dict(failed.value.trailing_metadata() or ())["x-request-id"] == "quiet-1"
        lines = [json.loads(line) for line in log_lines.getvalue().splitlines()]
        assert [line for line in lines if line["logger"] == "vaultd.access"] == []
        events = await vaultd.store.read_audit_events("default", AuditQuery(limit=1000))
        assert "quiet-1" in [event.request_id for event in events.events]
    finally:
        await vaultd.stop(None)
