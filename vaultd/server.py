"""`vaultd serve`: gRPC (services, health, reflection, TLS, transport limits), the HTTP API, the
console and /metrics wired around the App that vaultd/app.py builds, and the shutdown order."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from providers import KeyProvider
from vaultd import startup
from vaultd.api.admin import AdminServicer
from vaultd.api.auth import Authentication, BodyGate
from vaultd.api.authlimit import FailedAuthentications
from vaultd.api.errors import ErrorMapping
from vaultd.api.http import HttpListener, start_http
from vaultd.api.keys import KeyServicer
from vaultd.api.objects import ObjectServicer
from vaultd.api.observe import Observe
from vaultd.api.ratelimit import RateLimit
from vaultd.api.reflection import add_reflection
from vaultd.api.wrapping import Wrapper, WrappingRegistrar
from vaultd.app import App, open_app
from vaultd.console import Console, ConsoleListener, start_console
from vaultd.core.audit import AuditLog
from vaultd.core.byok import ByokKeys
from vaultd.core.datakeys import DataKeys
from vaultd.core.keyring import Keyring
from vaultd.core.ratelimit import TokenBuckets
from vaultd.metrics import Metrics, MetricsServer
from vaultd.settings import Settings, TransportSettings
from vaultd.storage import Store
from vaultd.v1 import (
    admin_service_pb2,
    admin_service_pb2_grpc,
    key_service_pb2,
    key_service_pb2_grpc,
    object_service_pb2,
    object_service_pb2_grpc,
)

log = logging.getLogger(__name__)

SERVICE_NAMES = (
    object_service_pb2.DESCRIPTOR.services_by_name["ObjectService"].full_name,
    key_service_pb2.DESCRIPTOR.services_by_name["KeyService"].full_name,
    admin_service_pb2.DESCRIPTOR.services_by_name["AdminService"].full_name,
)
# Room for the largest allowed value plus the message around it; larger is refused by gRPC
# itself with RESOURCE_EXHAUSTED before it is read into memory.
_MESSAGE_OVERHEAD = 64 * 1024


@dataclass
class Vaultd:
    """A running vaultd: its App, gRPC server, bound port, and what must be stopped at the end."""

    app: App
    server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer
    rewrap_watcher: asyncio.Task[None]
    store_watcher: asyncio.Task[None]
    purge_job: asyncio.Task[None]
    metrics_server: MetricsServer | None = None
    http: HttpListener | None = None
    console: ConsoleListener | None = None

    # The App's parts callers reach for most, straight on the running server.
    store: Store = field(init=False)
    keyring: Keyring = field(init=False)
    audit_log: AuditLog = field(init=False)
    byok_keys: ByokKeys = field(init=False)

    def __post_init__(self) -> None:
        self.store, self.keyring = self.app.store, self.app.keyring
        self.audit_log, self.byok_keys = self.app.audit_log, self.app.byok_keys

    async def stop(self, grace: float | None) -> None:
        await self.health.enter_graceful_shutdown()
        if self.http is not None:
            await self.http.stop()
        if self.console is not None:
            await self.console.stop()
        await self.server.stop(grace)
        # Rewrap jobs stop where they are; their lease runs out and a process resumes them.
        self.rewrap_watcher.cancel()
        self.store_watcher.cancel()
        # A purge stops between two objects (each is one atomic step); App.aclose gives up the
        # lease, so another process carries on at once.
        self.purge_job.cancel()
        await asyncio.gather(self.purge_job, return_exceptions=True)
        await self.app.aclose()
        if self.metrics_server is not None:
            self.metrics_server.close()


def transport_options(transport: TransportSettings) -> list[tuple[str, int]]:
    """gRPC core channel arguments for the HTTP/2 limits; a 0 setting adds none."""

    def ms(seconds: float) -> int:
        return max(1, round(seconds * 1000))

    wanted: list[tuple[str, float, int]] = [
        ("grpc.max_concurrent_streams", transport.max_concurrent_streams, 0),
        ("grpc.http2.lookahead_bytes", transport.stream_window_bytes, 0),
        ("grpc.keepalive_time_ms", transport.keepalive_time_seconds, 1),
        ("grpc.keepalive_timeout_ms", transport.keepalive_timeout_seconds, 1),
        ("grpc.max_connection_idle_ms", transport.max_connection_idle_seconds, 1),
        ("grpc.max_connection_age_ms", transport.max_connection_age_seconds, 1),
        ("grpc.max_connection_age_grace_ms", transport.max_connection_age_grace_seconds, 1),
        ("grpc.max_metadata_size", transport.max_metadata_bytes, 0),
    ]
    options = [(name, ms(value) if in_ms else int(value)) for name, value, in_ms in wanted if value]
    if transport.stream_window_bytes:
        # Otherwise bandwidth-delay probing grows the window past the setting.
        options.append(("grpc.http2.bdp_probe", 0))
    return options


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """TLS credentials when a certificate is configured; with a client CA, mutual TLS."""
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return None
    client_ca = settings.tls_client_ca_file
    return grpc.ssl_server_credentials(
        [(settings.tls_key_file.read_bytes(), settings.tls_cert_file.read_bytes())],
        root_certificates=client_ca.read_bytes() if client_ca else None,
        require_client_auth=client_ca is not None,
    )


def tls_description(settings: Settings) -> str:
    if settings.tls_cert_file is None:
        return "plaintext"
    return "mutual TLS" if settings.tls_client_ca_file is not None else "TLS"


def wrappers(settings: Settings, metrics: Metrics | None) -> list[Wrapper]:
    """Outermost first: each wraps the ones after it, so ErrorMapping maps what later
    layers raise, and Observe sees every call's final status."""
    chain: list[Wrapper] = [
        Observe(metrics, settings.access_log),
        ErrorMapping(settings.default_deadline_seconds),
    ]
    limit = settings.rate_limit
    if limit.enabled:
        buckets: TokenBuckets[bytes] = TokenBuckets(limit.requests_per_second, limit.bucket_size)
        chain.append(RateLimit(buckets))
    return chain


def failed_auth(settings: Settings) -> FailedAuthentications | None:
    """The per-peer budget of failed authentications, unless turned off."""
    limit = settings.rate_limit
    if not limit.failed_auth_per_second:
        return None
    return FailedAuthentications(
        TokenBuckets(limit.failed_auth_per_second, limit.failed_auth_burst)
    )


ReadyGate = Callable[[], Awaitable[None]]
"""Awaited once the server listens, before health says SERVING (workers: until all listen)."""


async def start(
    settings: Settings, providers: Iterable[KeyProvider] = (), ready: ReadyGate | None = None
) -> Vaultd:
    """Build the App from settings (plus injected providers) and serve it."""
    app = await open_app(settings, providers)
    try:
        return await serve_app(app, ready)
    except BaseException:
        await app.aclose()
        raise


async def serve_app(app: App, ready: ReadyGate | None = None) -> Vaultd:
    """Serve `app` over gRPC (and HTTP, the console and /metrics when configured)."""
    settings = app.settings
    server = grpc_server(settings)
    registrar = register_services(server, app)
    health_servicer = health.aio.HealthServicer()
    # grpc's servicer starts out SERVING; vaultd says so only once it is (workers: all of them).
    await set_health(health_servicer, serving=False)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, registrar)
    # Reflection without Authentication unless configured: the schema is public.
    add_reflection(
        registrar
        if settings.reflection.require_api_key
        else WrappingRegistrar(server, wrappers(settings, app.metrics)),
        (*SERVICE_NAMES, health.SERVICE_NAME),
    )
    port = add_port(server, settings)
    metrics_server = start_metrics(app)
    await server.start()
    http, console = await start_listeners(app, server, registrar)
    if ready is not None:
        await ready()
    await set_health(health_servicer, serving=True)
    log.info("%s", _banner(app, port))
    watcher = asyncio.create_task(app.lifecycle.runner.watch(), name="rewrap watcher")
    store_watcher = asyncio.create_task(_watch_store(app, health_servicer), name="store watcher")
    purge = asyncio.create_task(app.purge.run(), name="purge job")
    return Vaultd(
        app,
        server,
        port,
        health_servicer,
        watcher,
        store_watcher,
        purge,
        metrics_server,
        http,
        console,
    )


def grpc_server(settings: Settings) -> grpc.aio.Server:
    max_message = max(4 * 1024 * 1024, settings.max_value_bytes + _MESSAGE_OVERHEAD)
    return grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", max_message),
            ("grpc.max_send_message_length", max_message),
            # Workers share the port on purpose; a lone server must not silently share it
            # with a second one started by mistake (gRPC turns SO_REUSEPORT on by default).
            ("grpc.so_reuseport", int(settings.workers > 1)),
            *transport_options(settings.transport),
        ],
    )


def register_services(server: grpc.aio.Server, app: App) -> WrappingRegistrar:
    """The three vaultd services on `server`, each handler wrapped once (not intercepted per
    call); the registrar, whose handlers the HTTP API runs too."""
    settings = app.settings
    # Authentication innermost: what it raises is mapped by ErrorMapping, and a call refused by
    # the rate limit never costs a key lookup. BodyGate outermost: no layer reads a request's
    # bytes before its caller is known.
    registrar = WrappingRegistrar(
        server,
        [
            BodyGate(),
            *wrappers(settings, app.metrics),
            Authentication(
                app.api_keys,
                app.audit_log,
                app.guard,
                reads_best_effort=settings.audit_reads == "best_effort",
                failures=failed_auth(settings),
            ),
        ],
    )
    object_service_pb2_grpc.add_ObjectServiceServicer_to_server(
        ObjectServicer(app.vault, app.deleted), registrar
    )
    data_keys = DataKeys(
        app.keyring, settings.max_value_bytes, accept_legacy=settings.keys.accept_legacy_data_keys
    )
    key_service_pb2_grpc.add_KeyServiceServicer_to_server(KeyServicer(data_keys), registrar)
    admin_service_pb2_grpc.add_AdminServiceServicer_to_server(
        AdminServicer(
            app.api_keys,
            app.audit_log,
            app.lifecycle,
            app.keys.rules,
            app.byok_keys,
            app.deleted,
        ),
        registrar,
    )
    return registrar


def add_port(server: grpc.aio.Server, settings: Settings) -> int:
    credentials = server_credentials(settings)
    if credentials is None:
        return int(server.add_insecure_port(settings.listen))
    return int(server.add_secure_port(settings.listen, credentials))


def start_metrics(app: App) -> MetricsServer | None:
    if app.metrics is None or not app.settings.metrics_listen:
        return None
    app.metrics.watch_kek_cache(app.kek_cache)
    log.info("metrics on http://%s/metrics", app.settings.metrics_listen)
    return app.metrics.serve(app.settings.metrics_listen)


async def start_listeners(
    app: App, server: grpc.aio.Server, registrar: WrappingRegistrar
) -> tuple[HttpListener | None, ConsoleListener | None]:
    """The HTTP API and the console, each off unless configured; on failure, gRPC stops too."""
    http: HttpListener | None = None
    try:
        # The WorkOS-compatible HTTP API runs the handlers just wrapped: it shares every layer.
        http = await start_http(app.settings, registrar.handlers)
        # The web console (off unless console_listen is set) calls the same core services.
        console = await start_console(
            app.settings,
            Console(
                app.vault,
                app.api_keys,
                app.audit_log,
                app.lifecycle,
                app.keys.rules,
                app.keys.registry,
                app.metrics,
                byok_keys=app.byok_keys,
            ),
        )
    except BaseException:
        if http is not None:
            await http.stop()
        await server.stop(None)
        raise
    return http, console


def _banner(app: App, port: int) -> str:
    settings = app.settings
    return startup.banner(
        listen=settings.listen,
        port=port,
        tls=tls_description(settings),
        store=startup.store_description(settings.redis_url, settings.data_dir),
        providers=app.keys.registry.schemes,
        byok_rules=len(app.keys.rules.rules),
        metrics=settings.metrics_listen,
    )


async def _watch_store(app: App, health_servicer: health.aio.HealthServicer) -> None:
    """Health follows the store guard: NOT_SERVING while the store is refused or unreachable."""
    assert app.guard is not None  # a serving App always has one
    await app.guard.watch(lambda serving: _spawn(set_health(health_servicer, serving=serving)))


async def set_health(servicer: health.aio.HealthServicer, *, serving: bool) -> None:
    status = (
        health_pb2.HealthCheckResponse.SERVING
        if serving
        else health_pb2.HealthCheckResponse.NOT_SERVING
    )
    for name in ("", *SERVICE_NAMES):
        await servicer.set(name, status)


_BACKGROUND: set[asyncio.Task[None]] = set()


def _spawn(work: Coroutine[Any, Any, None]) -> None:
    """Run `work` on its own; the set keeps the task referenced until it ends."""
    task = asyncio.get_running_loop().create_task(work)
    _BACKGROUND.add(task)
    task.add_done_callback(_BACKGROUND.discard)


async def serve(settings: Settings, ready: ReadyGate | None = None) -> None:
    """Serve until SIGTERM or SIGINT, then let in-flight calls finish and return."""
    vaultd = await start(settings, ready=ready)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await stopping.wait()
    log.info("draining in-flight calls (at most %.0fs)", settings.shutdown_grace_seconds)
    await vaultd.stop(settings.shutdown_grace_seconds)
    log.info("stopped")
