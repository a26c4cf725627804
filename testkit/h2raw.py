"""A few HTTP/2 frames by hand, to act as a hostile gRPC client would at the transport level:
read the server's SETTINGS, hold a connection idle, or send half a message and stop.

Only what the security tests need (RFC 9113): frame headers, SETTINGS, HEADERS with literal
HPACK fields (no Huffman, no indexing), DATA, WINDOW_UPDATE, PING and GOAWAY.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Sequence
from dataclasses import dataclass

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE = 0x0, 0x1, 0x3, 0x4, 0x6, 0x7, 0x8
ACK = END_STREAM = 0x1
END_HEADERS = 0x4
MAX_CONCURRENT_STREAMS, INITIAL_WINDOW_SIZE = 0x3, 0x4


@dataclass(frozen=True)
class Frame:
    type: int
    flags: int
    stream: int
    payload: bytes


def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return (
        struct.pack(">I", len(payload))[1:]
        + bytes([kind, flags])
        + struct.pack(">I", stream)
        + payload
    )


def _hpack_int(value: int, prefix_bits: int, first: int = 0) -> bytes:
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first | value])
    out = [first | limit]
    value -= limit
    while value >= 128:
        out.append(value % 128 + 128)
        value //= 128
    out.append(value)
    return bytes(out)


def hpack_literal(headers: list[tuple[str, str]]) -> bytes:
    """Each header as "literal without indexing, new name" (RFC 7541 6.2.2)."""
    out = b""
    for name, value in headers:
        out += b"\x00" + _hpack_int(len(name), 7) + name.encode()
        out += _hpack_int(len(value), 7) + value.encode()
    return out


class RawConnection:
    """One TCP connection speaking HTTP/2 by hand."""

    def __init__(self, host: str, port: int, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self._buffer = b""
        self.settings: dict[int, int] = {}

    def handshake(self) -> dict[int, int]:
        """Send the preface and empty SETTINGS; read the server's SETTINGS and ack them."""
        self.sock.sendall(PREFACE + frame(SETTINGS, 0, 0))
        while True:
            got = self.read_frame()
            if got.type == SETTINGS and not got.flags & ACK:
                for i in range(0, len(got.payload), 6):
                    key, value = struct.unpack(">HI", got.payload[i : i + 6])
                    self.settings[key] = value
                self.sock.sendall(frame(SETTINGS, ACK, 0))
                return self.settings

    def read_frame(self) -> Frame:
        while len(self._buffer) < 9:
            self._fill()
        length = int.from_bytes(self._buffer[:3], "big")
        while len(self._buffer) < 9 + length:
            self._fill()
        head, self._buffer = self._buffer[: 9 + length], self._buffer[9 + length :]
        stream = struct.unpack(">I", head[5:9])[0] & 0x7FFFFFFF
        got = Frame(head[3], head[4], stream, head[9:])
        if got.type == PING and not got.flags & ACK:
            self.sock.sendall(frame(PING, ACK, 0, got.payload))
        return got

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        self._buffer += chunk

    def start_call(
        self, stream: int, path: str, authority: str, extra: Sequence[tuple[str, str]] = ()
    ) -> None:
        headers = [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", path),
            (":authority", authority),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
            *extra,
        ]
        self.sock.sendall(frame(HEADERS, END_HEADERS, stream, hpack_literal(headers)))

    def send_data(self, stream: int, data: bytes, end: bool = False) -> None:
        for i in range(0, len(data), 16384):
            last = i + 16384 >= len(data)
            self.sock.sendall(
                frame(DATA, END_STREAM if end and last else 0, stream, data[i : i + 16384])
            )

    def close(self) -> None:
        self.sock.close()
