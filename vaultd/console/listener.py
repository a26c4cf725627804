"""The console's own listener (console_listen): uvicorn serving ConsoleApp on vaultd's loop.

The same stack as the WorkOS-compatible HTTP listener (vaultd/asgi_listener.py: uvicorn + a
plain ASGI app, on vaultd's loop, with gRPC's TLS settings), plus the sampler behind the
console's rate charts. ConsoleApp could instead be mounted under /console on that listener.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from vaultd.asgi_listener import AsgiListener, bind, start_asgi, uvicorn_config
from vaultd.console.app import ConsoleApp
from vaultd.console.rates import Rates
from vaultd.console.services import Console
from vaultd.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class ConsoleListener(AsgiListener):
    sampler: asyncio.Task[None] | None = None
    rates: Rates | None = None

    @property
    def url(self) -> str:
        host = self.sock.getsockname()[0]
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}/console/"

    async def stop(self) -> None:
        if self.sampler is not None:
            self.sampler.cancel()
        await super().stop()


async def start_console(settings: Settings, console: Console) -> ConsoleListener | None:
    """Serve the console on settings.console_listen; None when it is off."""
    if not settings.console_listen:
        return None
    tls = settings.tls_cert_file is not None
    rates = Rates(console.metrics) if console.metrics is not None else None
    app = ConsoleApp(console, tls=tls, rates=rates)
    sock = bind(
        settings.console_listen, "console_listen", "the console", reuse_port=False, backlog=128
    )
    started = await start_asgi(uvicorn_config(app, settings), sock, tls=tls)
    sampler = asyncio.create_task(rates.run(), name="console rates") if rates else None
    listener = ConsoleListener(started.server, sock, started.port, tls, sampler, rates)
    log.info("web console on %s (%s)", listener.url, "TLS" if tls else "plaintext")
    return listener
