"""The composition root: every part of vaultd built from its settings, in one place.

`open_app` builds settings -> store (behind its guard when serving) -> provider registry and
BYOK rules -> audit log -> API keys -> BYOK keys -> keyring -> lifecycle (with its rewrap
runner) -> object vault, deleted objects and the purge job, and `App.aclose` closes what it
opened, in reverse. `vaultd serve` (vaultd/server.py) wires gRPC, HTTP and the console around a
serving App; the operator commands (vaultd/cli/) use a command App over the same parts;
`open_records` is the smaller set the `apikey` and `audit` commands need. No other module
constructs these parts.

A serving App caches KEKs and API keys and refuses a store its guard does not trust; a command
App caches nothing (a command must see what a server just changed, and acts once) and opens the
store as it is, so an operator can inspect or repair it.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import cast

from ulid import ULID

from providers import KeyProvider, ProviderRegistry, build_registry
from providers.internal import DEFAULT_URI, InternalProvider
from vaultd import securefiles
from vaultd.core import audit
from vaultd.core.apikeys import DEFAULT_ENVIRONMENT, ApiKeys, check_bootstrap_secret
from vaultd.core.audit import AuditLog, Origin, Subject, kek_created_sink, purged_sink
from vaultd.core.auditchain import AuditKeys
from vaultd.core.byok import ByokKeys
from vaultd.core.cache import TtlCache
from vaultd.core.deleted import DeletedObjects
from vaultd.core.envelope import Kek
from vaultd.core.errors import KeyProviderUnavailable
from vaultd.core.keyring import CacheKey, Keyring
from vaultd.core.lifecycle import KeyLifecycle
from vaultd.core.objects import ObjectVault
from vaultd.core.purge import PurgeJob
from vaultd.core.quota import KekQuota, KekQuotaLimits, kek_admission
from vaultd.core.rewrap import JobFinishedSink, RewrapRunner
from vaultd.core.rules import KeyRules
from vaultd.core.storeguard import StoreGuard
from vaultd.core.types import Actor
from vaultd.known_store import known_store
from vaultd.metrics import Metrics
from vaultd.settings import Settings
from vaultd.storage import SQLITE_FILE_NAME, Store, open_store
from vaultd.storage.base import ByokKeyStore
from vaultd.storage.records import RewrapJob, RewrapState

log = logging.getLogger(__name__)

API_KEY_CACHE_ENTRIES = 10_000
BOOTSTRAP_ACTOR = Actor("vaultd", "bootstrap")
REWRAP_ACTOR = Actor("vaultd", "rewrap")
PURGE_ACTOR = Actor("vaultd", "purge")
FIRST_ADMIN_KEY_FILE = "first-admin-key"


@dataclass(frozen=True)
class KeyConfig:
    """The providers and BYOK rules the settings name, with the internal provider among them."""

    internal: InternalProvider
    registry: ProviderRegistry
    rules: KeyRules


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


def key_config(settings: Settings, injected: Iterable[KeyProvider] = ()) -> KeyConfig:
    """The providers and BYOK rules the settings name; raises on any bad rule or provider.

    `injected` providers are used as built (e.g. with credentials a config file cannot hold).
    """
    internal = internal_provider(settings)
    registry = build_registry(settings.providers, [internal, *injected])
    rules = KeyRules.from_config(
        DEFAULT_URI, [(rule.match, rule.key) for rule in settings.byok], registry.schemes
    )
    return KeyConfig(internal, registry, rules)


def check_file_permissions(settings: Settings) -> None:
    """Refuse to start (InsecurePath, one line) when another account on the host could read a
    key or the embedded store, or plant files where vaultd writes them."""
    securefiles.check_private_file(settings.root_key_path, "root key file")
    securefiles.check_private_dir(settings.root_key_path.parent, "root key directory")
    securefiles.check_private_file(settings.audit_key_path, "audit key file")
    if settings.redis_url is None:
        securefiles.check_private_dir(settings.data_dir, "data directory")
        securefiles.check_private_file(settings.data_dir / SQLITE_FILE_NAME, "store file")


async def open_settings_store(settings: Settings, *, bounded: bool = False) -> Store:
    """The store the settings name, unguarded: what the operator commands act on. `bounded`
    applies store_timeout_seconds (the commands that diagnose a store want it)."""
    if bounded:
        return await open_store(
            settings.redis_url, settings.data_dir, settings.store_timeout_seconds
        )
    return await open_store(settings.redis_url, settings.data_dir)


def store_guard(settings: Settings, store: Store, internal: InternalProvider) -> StoreGuard:
    """The guard that checks `store` is durable and this deployment's (vaultd/core/storeguard)."""
    return StoreGuard(
        store,
        internal.fingerprints(),
        known_store(settings.root_key_path.parent),
        allow_volatile=settings.allow_volatile_redis,
        check_seconds=settings.store_check_seconds,
    )


async def open_guarded_store(settings: Settings, internal: InternalProvider) -> StoreGuard:
    """The store, once its guard found it durable and this deployment's (StoreRefused if not)."""
    store = await open_settings_store(settings, bounded=True)
    guard = store_guard(settings, store, internal)
    try:
        await guard.open()
    except BaseException:
        await store.close()
        raise
    return guard


def audit_log(settings: Settings, store: Store) -> AuditLog:
    return AuditLog(
        store,
        timedelta(days=settings.audit_retention_days),
        keys=AuditKeys.load_or_create(settings.audit_key_path),
    )


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


def purge_job(settings: Settings, store: Store, audit_log: AuditLog) -> PurgeJob:
    """Destroys deleted objects past their retention; one per process, one at work at a time."""
    return PurgeJob(
        store,
        owner=f"{socket.gethostname()}:{os.getpid()}:{ULID()}",
        retention=settings.deleted_retention,
        interval=timedelta(seconds=settings.purge_interval_seconds),
        lease=timedelta(seconds=settings.purge_lease_seconds),
        on_purged=purged_sink(audit_log, PURGE_ACTOR),
    )


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


@dataclass
class Records:
    """The store with its audit log and API keys: what `vaultd apikey|audit` need, and no keys
    (those commands must work without the providers, and must not make a root key)."""

    settings: Settings
    store: Store
    audit_log: AuditLog
    api_keys: ApiKeys

    async def aclose(self) -> None:
        """Let the audit events being written land, then close the store."""
        try:
            await self.audit_log.flush()
        finally:
            await self.store.close()

    async def __aenter__(self) -> Records:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


async def open_records(settings: Settings) -> Records:
    store = await open_settings_store(settings)
    # No cache: each command looks once, and must see what another process just changed.
    return Records(settings, store, audit_log(settings, store), ApiKeys(store, TtlCache(0, 0)))


@dataclass
class App(Records):
    """Every core service over one store, and what closes them.

    `store` is the store as opened (closed at the end); the services use `services_store`,
    which is the same store, timed when metrics are on.
    """

    keys: KeyConfig
    guard: StoreGuard | None
    metrics: Metrics | None
    services_store: Store
    kek_cache: TtlCache[CacheKey, Kek]
    byok_keys: ByokKeys
    keyring: Keyring
    lifecycle: KeyLifecycle
    vault: ObjectVault
    deleted: DeletedObjects
    purge: PurgeJob

    async def aclose(self) -> None:
        """Stop the rewrap runner (its jobs' leases run out and a process resumes them), give
        up the purge lease, let the audit events being written land, then close the store."""
        try:
            await self.lifecycle.runner.close()
            await self.purge.close()
        finally:
            await super().aclose()

    async def __aenter__(self) -> App:
        return self


def kek_cache(settings: Settings, *, serving: bool) -> TtlCache[CacheKey, Kek]:
    if not serving:
        return TtlCache(0, 0)  # a command acts once and must see what a server just changed
    return TtlCache(
        settings.kek_cache.ttl_seconds,
        settings.kek_cache.max_entries,
        grace_seconds=settings.kek_cache.outage_grace_seconds,
        # Only a KMS outage is ridden out; a refusal or a storage error is answered as it is.
        serve_stale_on=lambda exc: isinstance(exc, KeyProviderUnavailable),
    )


async def open_app(
    settings: Settings, providers: Iterable[KeyProvider] = (), *, serving: bool = True
) -> App:
    """Every service, from settings (plus injected providers). `serving`: for `vaultd serve`
    (checked files, a guarded store, caches, metrics, the first admin key); else for a command."""
    # Configuration first: a bad rule or provider fails the start, not the first request.
    if serving:
        check_file_permissions(settings)
    keys = key_config(settings, providers)
    guard: StoreGuard | None = None
    if serving:
        if settings.bootstrap_api_key is not None:
            check_bootstrap_secret(settings.bootstrap_api_key.get_secret_value())
        # Before anything is bootstrapped: an emptied or foreign store is refused, not refilled.
        guard = await open_guarded_store(settings, keys.internal)
        store = guard.store
    else:
        store = await open_settings_store(settings)
    try:
        return await _services(settings, keys, store, guard, serving=serving)
    except BaseException:
        await store.close()
        raise


async def _services(
    settings: Settings, keys: KeyConfig, store: Store, guard: StoreGuard | None, *, serving: bool
) -> App:
    # Metrics cost nothing unless asked for: no timing proxy, no observer, no HTTP server.
    wants_metrics = serving and bool(settings.metrics_listen or settings.console_listen)
    metrics = Metrics() if wants_metrics else None
    services_store = metrics.timed_store(store) if metrics else store
    log_ = audit_log(settings, services_store)
    api_keys = await _api_keys(settings, services_store, log_) if serving else None
    # The environment's BYOK keys in the store, over the configured rules; a server re-reads
    # them once per KEK-cache TTL, so a key added in another process is used within that.
    byok_keys = ByokKeys(
        cast(ByokKeyStore, services_store),
        keys.registry,
        keys.rules,
        settings.kek_cache.ttl_seconds if serving else 0,
    )
    cache = kek_cache(settings, serving=serving)
    keyring = _keyring(settings, services_store, keys, cache, byok_keys, log_, metrics, serving)
    lifecycle = key_lifecycle(settings, services_store, keyring, keys.rules, log_)
    return App(
        settings=settings,
        store=store,
        audit_log=log_,
        api_keys=api_keys or ApiKeys(services_store, TtlCache(0, 0)),
        keys=keys,
        guard=guard,
        metrics=metrics,
        services_store=services_store,
        kek_cache=cache,
        byok_keys=byok_keys,
        keyring=keyring,
        lifecycle=lifecycle,
        vault=ObjectVault(
            services_store,
            keyring,
            settings.max_value_bytes,
            deleted_retention=settings.deleted_retention,
        ),
        deleted=DeletedObjects(services_store, settings.deleted_retention),
        purge=purge_job(settings, services_store, log_),
    )


def _keyring(
    settings: Settings,
    store: Store,
    keys: KeyConfig,
    cache: TtlCache[CacheKey, Kek],
    byok_keys: ByokKeys,
    audit_log: AuditLog,
    metrics: Metrics | None,
    serving: bool,
) -> Keyring:
    if not serving:
        # A command resolves items as a server does (the environment's BYOK keys over the
        # rules), so a rotation or a rewrap wraps under the tenant's registered key.
        return Keyring(store, keys.registry, keys.rules, cache, rules_for=byok_keys.rules_for)
    return Keyring(
        store,
        keys.registry,
        keys.rules,
        cache,
        on_provider_call=metrics.provider_call if metrics else None,
        on_kek_created=kek_created_sink(audit_log),
        rotation_period=settings.keys.rotation_period,
        admit_kek=kek_admission(KekQuota(store, KekQuotaLimits(**settings.kek_quota.model_dump()))),
        rules_for=byok_keys.rules_for,
    )


def write_first_admin_key(data_dir: Path, secret: str) -> Path:
    """The generated first admin key in data_dir/first-admin-key, readable by its owner only."""
    securefiles.private_dir(data_dir)
    path = data_dir / FIRST_ADMIN_KEY_FILE
    # A fresh 0600 file renamed over any older one: never written through a planted symlink.
    securefiles.replace(path, (secret + "\n").encode())
    return path


async def _api_keys(settings: Settings, store: Store, audit_log: AuditLog) -> ApiKeys:
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
