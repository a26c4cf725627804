"""Slow clients cannot hold connections: headers and bodies must arrive in time.

The timeouts are shortened for these tests (monkeypatched module constants, read per use).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from testkit.http_server import http_vaultd
from vaultd.api.http import app, listener

KEY_HEADER = "Authorization: Bearer sk_" + "z" * 43 + "\r\n"


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> bytes:
    """Everything the server sent until it closed the connection (fails if it does not)."""
    return await asyncio.wait_for(reader.read(), seconds)


async def test_headers_and_bodies_must_arrive_in_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(listener, "HEADER_TIMEOUT_SECONDS", 0.5)
    monkeypatch.setattr(app, "BODY_TIMEOUT_SECONDS", 0.5)
    async with http_vaultd("sqlite", tmp_path) as server:
        port = server.http_port

        # Half a request line, then nothing: closed, unanswered.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /vault/v1/kv HTTP/1.1\r\nHost: x\r\n")
        await writer.drain()
        assert await closed_within(reader, 5) == b""
        writer.close()

        # One full request on a keep-alive connection, then half of the next: answered once,
        # then closed.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\nGET /vault/v1/kv HTTP/1.1\r\n")
        await writer.drain()
        sent = await closed_within(reader, 5)
        assert sent.startswith(b"HTTP/1.1 200") and sent.count(b"HTTP/1.1") == 1
        writer.close()

        # Headers in time, the body not: 408, which the Node SDK retries.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            (
                "POST /vault/v1/kv HTTP/1.1\r\nHost: x\r\n"
                + KEY_HEADER
                + 'Content-Length: 100\r\n\r\n{"name"'
            ).encode()
        )
        await writer.drain()
        answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert answer.startswith(b"HTTP/1.1 408"), answer
        writer.close()

        # A prompt client is served as usual.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /openapi.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        await writer.drain()
        assert (await closed_within(reader, 5)).startswith(b"HTTP/1.1 200")
        writer.close()
