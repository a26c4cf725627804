"""An ASGI app served by uvicorn on vaultd's own event loop: the plumbing the HTTP API
(vaultd/api/http/listener.py) and the web console (vaultd/console/listener.py) share.

Why not uvicorn.run: that owns the event loop and the signal handlers. Here vaultd binds the
socket and drives uvicorn's Server.startup/shutdown on the running loop, so one process and one
loop serve gRPC and these listeners, and vaultd's SIGTERM handling drains them all. No lifespan,
no uvicorn access log (Observe writes vaultd's), no Server or Date header.

TLS follows the gRPC listener's settings: the same certificate and key, and with a client CA,
client certificates are required (mutual TLS).
"""

from __future__ import annotations

import math
import socket
import ssl
from dataclasses import dataclass
from typing import Any

import uvicorn

from vaultd.settings import Settings


def split_host_port(address: str, setting: str) -> tuple[str, int]:
    """("host", port) from HOST:PORT (all interfaces when the host is empty); a ValueError
    naming `setting` (e.g. "http_listen") otherwise."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"{setting} {address!r} is not HOST:PORT")
    return host.strip("[]") or "0.0.0.0", int(port)


def bind(address: str, setting: str, what: str, *, reuse_port: bool, backlog: int) -> socket.socket:
    """A listening, non-blocking socket on `address`; `what` names the listener in the error."""
    host, port = split_host_port(address, setting)
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
        raise ValueError(f"cannot listen for {what} on {address}: {exc.strerror}") from None
    sock.listen(backlog)
    sock.setblocking(False)
    return sock


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


@dataclass
class AsgiListener:
    """A started uvicorn server on its bound socket."""

    server: uvicorn.Server
    sock: socket.socket
    port: int
    tls: bool

    async def stop(self) -> None:
        await self.server.shutdown()
        self.sock.close()


async def start_asgi(config: uvicorn.Config, sock: socket.socket, *, tls: bool) -> AsgiListener:
    """Serve `config`'s app on `sock` (closed if the start fails)."""
    server = uvicorn.Server(config)
    # What Server.serve sets before startup; with lifespan "off" it does nothing.
    server.lifespan = config.lifespan_class(config)
    try:
        await server.startup(sockets=[sock])
    except BaseException:
        sock.close()
        raise
    return AsgiListener(server, sock, int(sock.getsockname()[1]), tls)
