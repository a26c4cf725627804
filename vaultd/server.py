"""Assembly: storage, providers, core services, gRPC services, health, reflection, shutdown."""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from providers import ProviderRegistry, build_registry
from providers.internal import DEFAULT_URI, InternalProvider, RootKeyFile
from vaultd.api.errors import ErrorInterceptor
from vaultd.api.keys import KeyServicer
from vaultd.api.objects import ObjectServicer
from vaultd.core.cache import TtlCache
from vaultd.core.datakeys import DataKeys
from vaultd.core.envelope import Kek
from vaultd.core.keyring import CacheKey, Keyring
from vaultd.core.objects import ObjectVault
from vaultd.core.rules import KeyRules
from vaultd.settings import Settings
from vaultd.storage import Store, open_store
from vaultd.v1 import (
    key_service_pb2,
    key_service_pb2_grpc,
    object_service_pb2,
    object_service_pb2_grpc,
)

log = logging.getLogger(__name__)

SERVICE_NAMES = (
    object_service_pb2.DESCRIPTOR.services_by_name["ObjectService"].full_name,
    key_service_pb2.DESCRIPTOR.services_by_name["KeyService"].full_name,
)
# Room for the largest allowed value plus the message around it; larger is refused by gRPC
# itself with RESOURCE_EXHAUSTED before it is read into memory.
_MESSAGE_OVERHEAD = 64 * 1024


def load_root_key(settings: Settings) -> RootKeyFile:
    path = settings.root_key_path
    existed = path.exists()
    root = RootKeyFile.load_or_create(path)
    if not existed:
        log.warning(
            "generated a new root key at %s (mode 0600); production wants a KMS-held or "
            "supplied root key (root_key_file, or a BYOK rule per tenant)",
            path,
        )
    return root


def load_key_config(settings: Settings) -> tuple[ProviderRegistry, KeyRules]:
    """The providers and BYOK rules the settings name; raises on any bad rule or provider."""
    providers = build_registry(settings.providers, [InternalProvider(load_root_key(settings))])
    rules = KeyRules.from_config(
        DEFAULT_URI, [(rule.match, rule.key) for rule in settings.byok], providers.schemes
    )
    return providers, rules


@dataclass
class Vaultd:
    """A running vaultd: its gRPC server, bound port, and what must be closed at the end."""

    server: grpc.aio.Server
    port: int
    store: Store
    keyring: Keyring
    health: health.aio.HealthServicer

    async def stop(self, grace: float | None) -> None:
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)
        await self.store.close()


async def start(settings: Settings) -> Vaultd:
    """Build every part from settings and start serving on settings.listen."""
    # Configuration first: a bad rule or provider fails the start, not the first request.
    providers, rules = load_key_config(settings)
    store = await open_store(settings.redis_url, settings.data_dir)
    cache: TtlCache[CacheKey, Kek] = TtlCache(
        settings.kek_cache.ttl_seconds, settings.kek_cache.max_entries
    )
    keyring = Keyring(store, providers, rules, cache)
    vault = ObjectVault(store, keyring, settings.max_value_bytes)

    max_message = max(4 * 1024 * 1024, settings.max_value_bytes + _MESSAGE_OVERHEAD)
    server = grpc.aio.server(
        interceptors=[ErrorInterceptor()],
        options=[
            ("grpc.max_receive_message_length", max_message),
            ("grpc.max_send_message_length", max_message),
        ],
    )
    object_service_pb2_grpc.add_ObjectServiceServicer_to_server(  # type: ignore[no-untyped-call]
        ObjectServicer(vault), server
    )
    key_service_pb2_grpc.add_KeyServiceServicer_to_server(  # type: ignore[no-untyped-call]
        KeyServicer(DataKeys(keyring, settings.max_value_bytes)), server
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    port = server.add_insecure_port(settings.listen)
    await server.start()
    for name in ("", *SERVICE_NAMES):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info("vaultd listening on %s (port %d)", settings.listen, port)
    return Vaultd(server, port, store, keyring, health_servicer)


async def serve(settings: Settings) -> None:
    """Serve until SIGTERM or SIGINT, then let in-flight calls finish and return."""
    vaultd = await start(settings)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await stopping.wait()
    log.info("draining in-flight calls (at most %.0fs)", settings.shutdown_grace_seconds)
    await vaultd.stop(settings.shutdown_grace_seconds)
    log.info("stopped")
