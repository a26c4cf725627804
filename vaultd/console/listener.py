"""The console's own listener (console_listen): uvicorn serving ConsoleApp on vaultd's loop.

The same stack as the WorkOS-compatible HTTP listener (uvicorn + a plain ASGI app): vaultd
binds the socket and drives uvicorn's Server.startup/shutdown on the running event loop, so one
process and one loop serve gRPC and the console, and vaultd's SIGTERM handling stops both. TLS
follows the gRPC listener's settings (same certificate; with a client CA, client certificates
are required). ConsoleApp could instead be mounted under /console on that listener (http_listen).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from dataclasses import dataclass

import uvicorn

from vaultd.api.http.listener import uvicorn_config
from vaultd.console.app import ConsoleApp
from vaultd.console.rates import Rates
from vaultd.console.services import Console
from vaultd.settings import Settings

log = logging.getLogger(__name__)


def split_host_port(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"console_listen {address!r} is not HOST:PORT")
    return host.strip("[]") or "0.0.0.0", int(port)


def bind(address: str) -> socket.socket:
    host, port = split_host_port(address)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        # A ValueError: `vaultd serve` reports it in one line, as it does bad configuration.
        raise ValueError(f"cannot listen for the console on {address}: {exc.strerror}") from None
    sock.listen(128)
    sock.setblocking(False)
    return sock


@dataclass
class ConsoleListener:
    server: uvicorn.Server
    sock: socket.socket
    port: int
    tls: bool
    sampler: asyncio.Task[None] | None
    rates: Rates | None

    @property
    def url(self) -> str:
        host = self.sock.getsockname()[0]
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}/console/"

    async def stop(self) -> None:
        if self.sampler is not None:
            self.sampler.cancel()
        await self.server.shutdown()
        self.sock.close()


async def start_console(settings: Settings, console: Console) -> ConsoleListener | None:
    """Serve the console on settings.console_listen; None when it is off."""
    if not settings.console_listen:
        return None
    tls = settings.tls_cert_file is not None
    rates = Rates(console.metrics) if console.metrics is not None else None
    app = ConsoleApp(console, tls=tls, rates=rates)
    config = uvicorn_config(app, settings)
    server = uvicorn.Server(config)
    server.lifespan = config.lifespan_class(config)  # what Server.serve sets before startup
    sock = bind(settings.console_listen)
    try:
        await server.startup(sockets=[sock])
    except BaseException:
        sock.close()
        raise
    sampler = asyncio.create_task(rates.run(), name="console rates") if rates else None
    listener = ConsoleListener(server, sock, int(sock.getsockname()[1]), tls, sampler, rates)
    log.info("web console on %s (%s)", listener.url, "TLS" if tls else "plaintext")
    return listener
