"""The HTTP listener: uvicorn serving HttpApp on vaultd's own event loop, beside gRPC
(vaultd/asgi_listener.py: how, and how TLS follows gRPC's settings).

Why uvicorn: it is a small, widely used HTTP/1.1 server whose parser (h11) has been hardened
by years of exposure; a hand-written parser in vaultd would be new attack surface for no gain.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

import grpc
from uvicorn.protocols.http.h11_impl import H11Protocol

from vaultd.api.http.app import HttpApp
from vaultd.api.http.calls import Calls
from vaultd.api.http.idempotency import IdempotencyKeys
from vaultd.asgi_listener import AsgiListener, bind, start_asgi, uvicorn_config
from vaultd.settings import Settings

log = logging.getLogger(__name__)

# Room for a value of max_value_bytes written as JSON text (escapes can take 6 bytes a
# character: \\u0001), plus the fields around it.
_JSON_EXPANSION = 6
_BODY_OVERHEAD = 64 * 1024


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


HttpListener = AsgiListener


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
    sock = bind(
        settings.http_listen, "http_listen", "HTTP", reuse_port=settings.workers > 1, backlog=1024
    )
    listener = await start_asgi(config, sock, tls=tls)
    log.info(
        "WorkOS-compatible HTTP API on %s (port %d, %s)",
        settings.http_listen,
        listener.port,
        "TLS" if tls else "plaintext",
    )
    return listener
