"""Class 5, transport: what a hostile client can make the server hold at the HTTP/2 level.

Spoken frame by frame over a real port (testkit/h2raw.py), as an attacker's client would:
the server advertises a bounded number of streams per connection and a bounded stream window;
an unauthenticated call that sends half of a 4 MiB message is refused at its headers, so the
server never takes more than one stream window of it (before: the whole message, 160 MiB for
40 such connections, bench/transport_memory.py); an idle connection is closed.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from testkit.auth import channel
from testkit.h2raw import (
    GOAWAY,
    HEADERS,
    INITIAL_WINDOW_SIZE,
    MAX_CONCURRENT_STREAMS,
    RST_STREAM,
    WINDOW_UPDATE,
    RawConnection,
)
from testkit.running import settings_for
from vaultd.server import Vaultd, start
from vaultd.storage.records import AuditQuery
from vaultd.v1 import object_service_pb2 as opb
from vaultd.v1 import object_service_pb2_grpc as opb_grpc

MESSAGE = 4 * 1024 * 1024


async def serving(tmp_path: Path, **transport: Any) -> Vaultd:
    return await start(settings_for(tmp_path / "data", None, transport=transport))


@pytest.fixture
async def default_vaultd(tmp_path: Path) -> AsyncIterator[Vaultd]:
    vaultd = await serving(tmp_path)
    yield vaultd
    await vaultd.stop(None)


async def test_the_server_advertises_bounded_streams_and_window(default_vaultd: Vaultd) -> None:
    conn = RawConnection("127.0.0.1", default_vaultd.port)
    try:
        settings = await asyncio.to_thread(conn.handshake)
    finally:
        conn.close()
    assert settings.get(MAX_CONCURRENT_STREAMS) == 1000
    assert settings.get(INITIAL_WINDOW_SIZE) == 64 * 1024


async def test_configured_limits_are_advertised(tmp_path: Path) -> None:
    vaultd = await serving(tmp_path, max_concurrent_streams=7, stream_window_bytes=32 * 1024)
    conn = RawConnection("127.0.0.1", vaultd.port)
    try:
        settings = await asyncio.to_thread(conn.handshake)
    finally:
        conn.close()
        await vaultd.stop(None)
    assert settings.get(MAX_CONCURRENT_STREAMS) == 7
    assert settings.get(INITIAL_WINDOW_SIZE) == 32 * 1024


def _half_send(port: int) -> tuple[int, int, bytes]:
    """Start an unauthenticated CreateObject declaring 4 MiB, send what flow control allows;
    return (bytes sent, window credit granted for the stream, the trailers' bytes)."""
    conn = RawConnection("127.0.0.1", port)
    try:
        settings = conn.handshake()
        conn.start_call(1, "/vaultd.v1.ObjectService/CreateObject", f"127.0.0.1:{port}")
        conn.send_data(1, b"\x00" + struct.pack(">I", MESSAGE))
        sent, granted, trailers = 5, 0, b""
        window = {0: 65535 - 5, 1: settings.get(INITIAL_WINDOW_SIZE, 65535) - 5}
        closed = False
        while not closed:
            n = min(window[0], window[1], 16384, MESSAGE + 5 - sent)
            if n > 0 and not trailers:
                conn.send_data(1, b"a" * n)
                sent += n
                window[0] -= n
                window[1] -= n
                continue
            got = conn.read_frame()  # the socket's timeout ends a server that says nothing
            if got.type == WINDOW_UPDATE:
                credit = struct.unpack(">I", got.payload)[0] & 0x7FFFFFFF
                window[0 if got.stream == 0 else 1] += credit
                granted += credit if got.stream == 1 else 0
            elif got.type == HEADERS and got.stream == 1:
                trailers += got.payload
            elif got.type in (RST_STREAM, GOAWAY) or sent >= MESSAGE + 5:
                closed = got.type in (RST_STREAM, GOAWAY) or bool(trailers)
            if trailers and got.type == RST_STREAM:
                closed = True
        return sent, granted, trailers
    finally:
        conn.close()


async def test_an_unauthenticated_half_sent_message_is_refused_at_its_headers(
    default_vaultd: Vaultd,
) -> None:
    port = default_vaultd.port
    sent, granted, trailers = await asyncio.to_thread(_half_send, port)
    assert b"grpc-status" in trailers and b"\x0216" in trailers, trailers  # UNAUTHENTICATED
    assert sent <= 64 * 1024 + 5, f"the server took {sent} bytes of an unauthenticated message"
    assert granted == 0
    # Nothing else changed: no object, and the refusal is audited as a missing key.
    assert default_vaultd.audit_log is not None
    await default_vaultd.audit_log.flush()
    events = (await default_vaultd.store.read_audit_events("", AuditQuery(limit=100))).events
    assert [(e.type, e.outcome) for e in events] == [("vault.data.created", "API_KEY_MISSING")]
    async with channel(f"127.0.0.1:{port}") as admin:
        listed = await opb_grpc.ObjectServiceStub(admin).ListObjects(opb.ListObjectsRequest())
    assert list(listed.objects) == []


async def test_an_idle_connection_is_closed(tmp_path: Path) -> None:
    vaultd = await serving(tmp_path, max_connection_idle_seconds=0.2)
    conn = RawConnection("127.0.0.1", vaultd.port, timeout=30)
    try:

        def until_goaway() -> int:
            conn.handshake()
            while (got := conn.read_frame()).type != GOAWAY:
                pass
            return got.type

        assert await asyncio.to_thread(until_goaway) == GOAWAY
    finally:
        conn.close()
        await vaultd.stop(None)
