"""Assembly: storage, providers, core services, gRPC services, health, reflection, metrics,
TLS, shutdown."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from ulid import ULID

from providers import KeyProvider, ProviderRegistry, build_registry
from providers.internal import DEFAULT_URI, InternalProvider
from vaultd import securefiles, startup
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
from vaultd.console import Console, ConsoleListener, start_console
from vaultd.core import audit
from vaultd.core.apikeys import DEFAULT_ENVIRONMENT, ApiKeys, check_bootstrap_secret
from vaultd.core.audit import AuditLog, Origin, Subject, kek_created_sink
from vaultd.core.auditchain import AuditKeys
from vaultd.core.byok import ByokKeys
from vaultd.core.cache import TtlCache
from vaultd.core.datakeys import DataKeys
from vaultd.core.envelope import Kek
from vaultd.core.errors import KeyProviderUnavailable
from vaultd.core.keyring import CacheKey, Keyring
from vaultd.core.lifecycle import KeyLifecycle
from vaultd.core.objects import ObjectVault
from vaultd.core.quota import KekQuota, KekQuotaLimits, kek_admission
from vaultd.core.ratelimit import TokenBuckets
from vaultd.core.rewrap import JobFinishedSink, RewrapRunner
from vaultd.core.rules import KeyRules
from vaultd.core.storeguard import StoreGuard
from vaultd.core.types import Actor
from vaultd.known_store import known_store
from vaultd.metrics import Metrics, MetricsServer
from vaultd.settings import Settings, TransportSettings
from vaultd.storage import SQLITE_FILE_NAME, Store, open_store
from vaultd.storage.base import ByokKeyStore
from vaultd.storage.records import RewrapJob, RewrapState
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
API_KEY_CACHE_ENTRIES = 10_000
BOOTSTRAP_ACTOR = Actor("vaultd", "bootstrap")
# Room for the largest allowed value plus the message around it; larger is refused by gRPC
# itself with RESOURCE_EXHAUSTED before it is read into memory.
_MESSAGE_OVERHEAD = 64 * 1024


def internal_provider(settings: Settings) -> InternalProvider:
    path = settings.root_key_path
    existed = path.exists()
    provider = InternalProvider.from_file(path)
    if not existed:
        log.warning(
            "generated a new root key at %s (mode 0600); production wants a KMS-held or "
            "supplied root key (root_key_file, or a BYOK rule per tenant)",
            path,
        )
    return provider


def check_file_permissions(settings: Settings) -> None:
    """Refuse to start (InsecurePath, one line) when another account on the host could read a
    key or the embedded store, or plant files where vaultd writes them."""
    securefiles.check_private_file(settings.root_key_path, "root key file")
    securefiles.check_private_dir(settings.root_key_path.parent, "root key directory")
    securefiles.check_private_file(settings.audit_key_path, "audit key file")
    if settings.redis_url is None:
        securefiles.check_private_dir(settings.data_dir, "data directory")
        securefiles.check_private_file(settings.data_dir / SQLITE_FILE_NAME, "store file")


def load_key_config(
    settings: Settings,
    injected: Iterable[KeyProvider] = (),
    internal: InternalProvider | None = None,
) -> tuple[ProviderRegistry, KeyRules]:
    """The providers and BYOK rules the settings name; raises on any bad rule or provider.

    `injected` providers are used as built (e.g. with credentials a config file cannot hold).
    """
    internal = internal or internal_provider(settings)
    providers = build_registry(settings.providers, [internal, *injected])
    rules = KeyRules.from_config(
        DEFAULT_URI, [(rule.match, rule.key) for rule in settings.byok], providers.schemes
    )
    return providers, rules


async def open_guarded_store(settings: Settings, internal: InternalProvider) -> StoreGuard:
    """The store, once its guard found it durable and this deployment's (StoreRefused if not)."""
    store = await open_store(settings.redis_url, settings.data_dir, settings.store_timeout_seconds)
    guard = StoreGuard(
        store,
        internal.fingerprints(),
        known_store(settings.root_key_path.parent),
        allow_volatile=settings.allow_volatile_redis,
        check_seconds=settings.store_check_seconds,
    )
    try:
        await guard.open()
    except BaseException:
        await store.close()
        raise
    return guard


@dataclass
class Vaultd:
    """A running vaultd: its gRPC server, bound port, and what must be closed at the end."""

    server: grpc.aio.Server
    port: int
    store: Store
    keyring: Keyring
    lifecycle: KeyLifecycle
    health: health.aio.HealthServicer
    rewrap_watcher: asyncio.Task[None]
    store_watcher: asyncio.Task[None]
    metrics_server: MetricsServer | None = None
    audit_log: AuditLog | None = None
    http: HttpListener | None = None
    console: ConsoleListener | None = None
    byok_keys: ByokKeys | None = None

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
        await self.lifecycle.runner.close()
        if self.audit_log is not None:
            await self.audit_log.flush()  # events of calls cancelled while theirs was written
        await self.store.close()
        if self.metrics_server is not None:
            self.metrics_server.close()


REWRAP_ACTOR = Actor("vaultd", "rewrap")


def rewrap_finished_sink(audit_log: AuditLog) -> JobFinishedSink:
    """For the RewrapRunner: a vault.kek.rewrap.finished event when a job ends. The job runs
    apart from the call that started it (maybe in another process), so vaultd is its actor."""

    async def finished(job: RewrapJob) -> None:
        outcome = audit.SUCCESS if job.state is RewrapState.DONE else job.error.split(":")[0]
        await audit_log.record(
            audit.REWRAP_FINISHED,
            Origin(job.environment_id, REWRAP_ACTOR, request_id=job.id),
            outcome,
            Subject(key_ids=job.kek_ids),
        )

    return finished


def key_lifecycle(
    settings: Settings, store: Store, keyring: Keyring, rules: KeyRules, audit_log: AuditLog
) -> KeyLifecycle:
    """The lifecycle commands, with a runner for rewrap jobs (the server's, or the CLI's)."""
    runner = RewrapRunner(
        store,
        keyring,
        owner=f"{socket.gethostname()}:{os.getpid()}:{ULID()}",
        lease=timedelta(seconds=settings.keys.rewrap_lease_seconds),
        # Until every process's cached "current" KEK has expired, some may still wrap new DEKs
        # under the version a rotation replaced.
        settle=timedelta(seconds=settings.kek_cache.ttl_seconds),
        versions_per_second=settings.keys.rewrap_versions_per_second,
        on_finished=rewrap_finished_sink(audit_log),
    )
    return KeyLifecycle(store, keyring, rules, runner)


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


FIRST_ADMIN_KEY_FILE = "first-admin-key"


def write_first_admin_key(data_dir: Path, secret: str) -> Path:
    """The generated first admin key in data_dir/first-admin-key, readable by its owner only."""
    securefiles.private_dir(data_dir)
    path = data_dir / FIRST_ADMIN_KEY_FILE
    # A fresh 0600 file renamed over any older one: never written through a planted symlink.
    securefiles.replace(path, (secret + "\n").encode())
    return path


async def open_api_keys(store: Store, audit_log: AuditLog, settings: Settings) -> ApiKeys:
    """The API keys, after making the first admin key if the store has none (docs/ARCHITECTURE.md
    section 10)."""
    api_keys = ApiKeys(store, TtlCache(settings.api_key_cache_seconds, API_KEY_CACHE_ENTRIES))
    supplied = settings.bootstrap_api_key
    new = await api_keys.bootstrap(supplied.get_secret_value() if supplied else None)
    if new is not None:
        origin = Origin(DEFAULT_ENVIRONMENT, BOOTSTRAP_ACTOR)
        await audit_log.record(
            audit.APIKEY_CREATED, origin, subject=Subject(api_key_id=new.record.id)
        )
        if supplied is None:
            # Once, on stdout and never in a log: whoever starts a fresh store copies it now.
            # Also in a 0600 file, so it is not lost in the scroll of an install's output.
            path = write_first_admin_key(settings.data_dir, new.secret)
            print(
                f"vaultd: the first admin API key (environment {DEFAULT_ENVIRONMENT!r}) is shown "
                f"this once; vaultd keeps only its hash: {new.secret} (also in {path}, mode "
                "0600: delete it once copied)",
                flush=True,
            )
    return api_keys


ReadyGate = Callable[[], Awaitable[None]]
"""Awaited once the server listens, before health says SERVING (workers: until all listen)."""


async def start(
    settings: Settings, providers: Iterable[KeyProvider] = (), ready: ReadyGate | None = None
) -> Vaultd:
    """Build every part from settings (plus injected providers) and start serving."""
    # Configuration first: a bad rule or provider fails the start, not the first request.
    check_file_permissions(settings)
    internal = internal_provider(settings)
    registry, rules = load_key_config(settings, providers, internal)
    if settings.bootstrap_api_key is not None:
        check_bootstrap_secret(settings.bootstrap_api_key.get_secret_value())
    # Before anything is bootstrapped: an emptied or foreign store is refused, not refilled.
    guard = await open_guarded_store(settings, internal)
    store = guard.store
    cache: TtlCache[CacheKey, Kek] = TtlCache(
        settings.kek_cache.ttl_seconds,
        settings.kek_cache.max_entries,
        grace_seconds=settings.kek_cache.outage_grace_seconds,
        # Only a KMS outage is ridden out; a refusal or a storage error is answered as it is.
        serve_stale_on=lambda exc: isinstance(exc, KeyProviderUnavailable),
    )
    # Metrics cost nothing unless asked for: no timing proxy, no observer, no HTTP server.
    metrics = Metrics() if settings.metrics_listen or settings.console_listen else None
    observed_store = metrics.timed_store(store) if metrics else store
    audit_log = AuditLog(
        observed_store,
        timedelta(days=settings.audit_retention_days),
        keys=AuditKeys.load_or_create(settings.audit_key_path),
    )
    api_keys = await open_api_keys(observed_store, audit_log, settings)
    # The environment's BYOK keys in the store, over the configured rules; re-read once per
    # KEK-cache TTL, so a key added in another process is used within that.
    byok_keys = ByokKeys(
        cast(ByokKeyStore, observed_store), registry, rules, settings.kek_cache.ttl_seconds
    )
    keyring = Keyring(
        observed_store,
        registry,
        rules,
        cache,
        on_provider_call=metrics.provider_call if metrics else None,
        on_kek_created=kek_created_sink(audit_log),
        rotation_period=settings.keys.rotation_period,
        admit_kek=kek_admission(
            KekQuota(observed_store, KekQuotaLimits(**settings.kek_quota.model_dump()))
        ),
        rules_for=byok_keys.rules_for,
    )
    lifecycle = key_lifecycle(settings, observed_store, keyring, rules, audit_log)
    vault = ObjectVault(observed_store, keyring, settings.max_value_bytes)

    max_message = max(4 * 1024 * 1024, settings.max_value_bytes + _MESSAGE_OVERHEAD)
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", max_message),
            ("grpc.max_send_message_length", max_message),
            # Workers share the port on purpose; a lone server must not silently share it
            # with a second one started by mistake (gRPC turns SO_REUSEPORT on by default).
            ("grpc.so_reuseport", int(settings.workers > 1)),
            *transport_options(settings.transport),
        ],
    )
    # Every handler is wrapped once here, not intercepted per call. Authentication innermost:
    # what it raises is mapped by ErrorMapping, and a call refused by the rate limit never
    # costs a key lookup.
    # BodyGate outermost: no layer reads a request's bytes before its caller is known.
    registrar = WrappingRegistrar(
        server,
        [
            BodyGate(),
            *wrappers(settings, metrics),
            Authentication(
                api_keys,
                audit_log,
                guard,
                reads_best_effort=settings.audit_reads == "best_effort",
                failures=failed_auth(settings),
            ),
        ],
    )
    object_service_pb2_grpc.add_ObjectServiceServicer_to_server(ObjectServicer(vault), registrar)
    key_service_pb2_grpc.add_KeyServiceServicer_to_server(
        KeyServicer(
            DataKeys(
                keyring,
                settings.max_value_bytes,
                accept_legacy=settings.keys.accept_legacy_data_keys,
            )
        ),
        registrar,
    )
    admin_service_pb2_grpc.add_AdminServiceServicer_to_server(
        AdminServicer(api_keys, audit_log, lifecycle, rules, byok_keys), registrar
    )
    health_servicer = health.aio.HealthServicer()
    # grpc's servicer starts out SERVING; vaultd says so only once it is (workers: all of them).
    await set_health(health_servicer, serving=False)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, registrar)
    # Reflection without Authentication unless configured: the schema is public.
    add_reflection(
        registrar
        if settings.reflection.require_api_key
        else WrappingRegistrar(server, wrappers(settings, metrics)),
        (*SERVICE_NAMES, health.SERVICE_NAME),
    )
    credentials = server_credentials(settings)
    if credentials is None:
        port = server.add_insecure_port(settings.listen)
    else:
        port = server.add_secure_port(settings.listen, credentials)
    metrics_server = None
    if metrics is not None and settings.metrics_listen:
        metrics.watch_kek_cache(cache)
        metrics_server = metrics.serve(settings.metrics_listen)
        log.info("metrics on http://%s/metrics", settings.metrics_listen)
    await server.start()
    # The WorkOS-compatible HTTP API runs the handlers just wrapped, so it shares every layer.
    http: HttpListener | None = None
    try:
        http = await start_http(settings, registrar.handlers)
        # The web console (off unless console_listen is set) calls the same core services.
        console = await start_console(
            settings,
            Console(
                vault, api_keys, audit_log, lifecycle, rules, registry, metrics, byok_keys=byok_keys
            ),
        )
    except BaseException:
        if http is not None:
            await http.stop()
        await server.stop(None)
        raise
    if ready is not None:
        await ready()
    await set_health(health_servicer, serving=True)
    log.info(
        "%s",
        startup.banner(
            listen=settings.listen,
            port=port,
            tls=tls_description(settings),
            store=startup.store_description(settings.redis_url, settings.data_dir),
            providers=registry.schemes,
            byok_rules=len(rules.rules),
            metrics=settings.metrics_listen,
        ),
    )
    watcher = asyncio.create_task(lifecycle.runner.watch(), name="rewrap watcher")
    store_watcher = asyncio.create_task(
        guard.watch(lambda serving: _spawn(set_health(health_servicer, serving=serving))),
        name="store watcher",
    )
    return Vaultd(
        server,
        port,
        store,
        keyring,
        lifecycle,
        health_servicer,
        watcher,
        store_watcher,
        metrics_server,
        audit_log,
        http,
        console,
        byok_keys,
    )


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
