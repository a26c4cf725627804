"""The HTTP listener: uvicorn serving HttpApp on vaultd's own event loop, beside gRPC.

Why uvicorn: it is a small, widely used HTTP/1.1 server whose parser (h11) has been hardened
by years of exposure; a hand-written parser in vaultd would be
new attack surface for no gain. Why not uvicorn.run: that owns the event loop and the signal
handlers. Here vaultd's start() binds the socket, and uvicorn's Server.startup/shutdown serve
it on the running loop, so one process and one loop serve both protocols, and vaultd's own
SIGTERM handling drains both. No lifespan, no uvicorn access log (Observe writes vaultd's),
no Server or Date header.

TLS follows the gRPC listener's settings: the same certificate and key, and with a client CA,
client certificates are required (mutual TLS).
"""

from __future__ import annotations

import asyncio
import logging
import math
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import grpc
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from vaultd.api.http.app import HttpApp
from vaultd.api.http.calls import Calls
from vaultd.api.http.idempotency import IdempotencyKeys
from vaultd.settings import Settings

log = logging.getLogger(__name__)

# Room for a value of max_value_bytes written as JSON text (escapes can take 6 bytes a
# character: \\u0001), plus the fields around it.
_JSON_EXPANSION = 6
_BODY_OVERHEAD = 64 * 1024


def split_host_port(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"http_listen {address!r} is not HOST:PORT")
    return host.strip("[]") or "0.0.0.0", int(port)


def bind(address: str, reuse_port: bool) -> socket.socket:
    host, port = split_host_port(address)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:  # --workers: every worker listens on the one port, as gRPC does
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        # A ValueError: `vaultd serve` reports it in one line, as it does bad configuration.
        raise ValueError(f"cannot listen for HTTP on {address}: {exc.strerror}") from None
    sock.listen(1024)
    sock.setblocking(False)
    return sock


# A client must send each request's headers within this long of connecting or of its previous
# answer, or its connection is closed. uvicorn times out only silent keep-alive connections: a
# client trickling a byte at a time would otherwise hold a connection, and a file descriptor,
# for ever.
HEADER_TIMEOUT_SECONDS = 10.0


class _TimedH11(H11Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        self._expect_headers()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._expect_headers()

    def _expect_headers(self) -> None:
        answered = self.cycle  # None on a new connection; else the request just answered

        def expire() -> None:
            # Still no new request (a pipelined one already running has a cycle of its own).
            idle = answered is None or answered.response_complete
            if self.cycle is answered and idle and not self.transport.is_closing():
                self.transport.close()

        self.loop.call_later(HEADER_TIMEOUT_SECONDS, expire)


@dataclass
class HttpListener:
    server: uvicorn.Server
    sock: socket.socket
    port: int
    tls: bool

    async def stop(self) -> None:
        await self.server.shutdown()
        self.sock.close()


def uvicorn_config(app: Any, settings: Settings, **options: Any) -> uvicorn.Config:
    """uvicorn's settings for a listener served on vaultd's own loop (HTTP API, console): no
    logging of its own (vaultd's access log and audit say what happened), no lifespan, the
    gRPC server's TLS and mTLS files, and its shutdown grace; loaded, ready for startup."""
    tls = settings.tls_cert_file is not None
    config = uvicorn.Config(
        app,
        lifespan="off",
        log_config=None,
        access_log=False,
        server_header=False,
        date_header=False,
        proxy_headers=False,
        timeout_graceful_shutdown=max(1, math.ceil(settings.shutdown_grace_seconds)),
        ssl_certfile=settings.tls_cert_file if tls else None,
        ssl_keyfile=settings.tls_key_file if tls else None,
        ssl_ca_certs=settings.tls_client_ca_file,
        ssl_cert_reqs=ssl.CERT_REQUIRED if settings.tls_client_ca_file else ssl.CERT_NONE,
        **options,
    )
    config.load()
    return config


async def start_http(
    settings: Settings, handlers: Mapping[str, grpc.RpcMethodHandler]
) -> HttpListener | None:
    """Serve the WorkOS-compatible HTTP API on settings.http_listen; None when it is off."""
    if not settings.http_listen:
        return None
    max_body = max(4 * 1024 * 1024, settings.max_value_bytes * _JSON_EXPANSION + _BODY_OVERHEAD)
    app = HttpApp(Calls(handlers), max_body, IdempotencyKeys())
    tls = settings.tls_cert_file is not None
    # h11: pure Python, the parser named above; _TimedH11 builds on it.
    config = uvicorn_config(app, settings, http="h11")
    config.http_protocol_class = _TimedH11
    server = uvicorn.Server(config)
    # What Server.serve sets before startup; with lifespan "off" it does nothing.
    server.lifespan = config.lifespan_class(config)
    sock = bind(settings.http_listen, reuse_port=settings.workers > 1)
    await server.startup(sockets=[sock])
    port = int(sock.getsockname()[1])
    log.info(
        "WorkOS-compatible HTTP API on %s (port %d, %s)",
        settings.http_listen,
        port,
        "TLS" if tls else "plaintext",
    )
    return HttpListener(server, sock, port, tls)
