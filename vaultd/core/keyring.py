"""KEKs: one per context item, created just in time, versioned, wrapped by a provider key.

A KEK's id is a digest of (environment, item), so finding it needs no index and two environments
never share one. Unwrapped KEKs live in a TtlCache: a warm cache makes no provider call, and
concurrent misses for one KEK make one.

A provider's explicit denial of a key (KeyUnavailableError with `denied`: the customer revoked
it) drops every cached KEK this process unwrapped or wrapped under that key URI at once, so
neither reads nor new writes go on under a revoked key until the cache would have expired.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from providers import (
    Binding,
    KeyUnavailableError,
    ProviderError,
    ProviderRegistry,
    ProviderUnavailableError,
    needs_rewrap,
)
from vaultd.core.cache import TtlCache
from vaultd.core.envelope import EncryptedKeys, Kek, Purpose, key_id, new_dek, unwrap_entry
from vaultd.core.errors import (
    BackendUnavailable,
    DecryptionFailed,
    KeyProviderUnavailable,
    KeyUnavailable,
    KeyVersionRetired,
    VaultError,
)
from vaultd.core.kekrecords import checked, find_version, live
from vaultd.core.rules import KeyRules, Resolver
from vaultd.core.types import store_errors
from vaultd.core.validation import KeyContext
from vaultd.storage.base import KekStore
from vaultd.storage.records import KekRecord, KekStamp, KekVersion, Wrapping

log = logging.getLogger(__name__)
T = TypeVar("T")
CacheKey = tuple[str, ...]
_CURRENT_ATTEMPTS = 3

ProviderCallObserver = Callable[[str, str, str, float], None]
"""Told of every provider call: (scheme, "wrap" | "unwrap", outcome, seconds), where outcome is
"ok", "unavailable", "key_unavailable" or "error". app.py feeds it to the metrics; core
imports no metrics library."""

KekCreatedSink = Callable[[str, str, KekVersion], Awaitable[None]]
"""Awaited once per KEK version this process creates: (environment id, KEK id, its record).
The server passes AuditLog.kek_created (core/audit.py), which writes vault.kek.created."""


KEK_ID = re.compile("kek_[0-9a-f]{32}")


def kek_id_for(environment_id: str, item_key: str, item_value: str) -> str:
    """The KEK id of a context item (docs/FORMAT.md section 2).

    The input is NUL-separated. It is injective because no part can hold a NUL: environment
    ids are [A-Za-z0-9_-], and context keys and values refuse control characters since
    (validation.py). Items accepted before that (with a NUL) keep the ids they were given, and
    every use of a KEK checks that its record names the very item asked for (`_checked`), so
    two items whose inputs could ever meet never share a key.
    """
    material = "\0".join(("vaultd/kek-id/v1", environment_id, item_key, item_value))
    return "kek_" + hashlib.sha256(material.encode()).hexdigest()[:32]


def _binding(environment_id: str, kek_id: str, kek: KekVersion) -> Binding:
    return {
        "vaultd:environment": environment_id,
        "vaultd:item": f"{kek.item_key}={kek.item_value}",
        "vaultd:kek": key_id(kek_id, kek.version),
    }


class Keyring:
    """Finds, creates, rotates and unwraps KEKs for an environment's context items."""

    def __init__(
        self,
        store: KekStore,
        providers: ProviderRegistry,
        rules: KeyRules,
        cache: TtlCache[CacheKey, Kek],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        on_provider_call: ProviderCallObserver | None = None,
        on_kek_created: KekCreatedSink | None = None,
        rotation_period: timedelta | None = None,
        admit_kek: Callable[[str], Awaitable[None]] | None = None,
        rules_for: Callable[[str], Awaitable[Resolver]] | None = None,
    ) -> None:
        self._store = store
        self._providers = providers
        self._rules = rules
        self.cache = cache
        self._clock = clock
        self._on_provider_call = on_provider_call
        self._on_kek_created = on_kek_created
        self._rotation_period = rotation_period
        # Asked before a new KEK (version 1) is made: the KEK quotas (quota.py).
        self._admit_kek = admit_kek
        # An environment's BYOK keys over the configured rules (core/byok.py), when served.
        self._rules_for = rules_for
        # Which KEKs (environment, kek id) were seen under each provider key URI: what a
        # denial of that key must drop from the cache. Bounded by the KEKs this process used.
        self._keks_under: dict[str, set[tuple[str, str]]] = {}

    async def current_keks(self, environment_id: str, context: KeyContext) -> list[Kek]:
        """The newest KEK of each item that must wrap a DEK for this context."""
        rules = await self._rules_in(environment_id)
        return [
            await self._current(environment_id, key, value)
            for key, value in rules.items_to_wrap(context)
        ]

    async def _rules_in(self, environment_id: str) -> Resolver:
        if self._rules_for is None:
            return self._rules
        return await self._rules_for(environment_id)

    async def unwrap_dek(self, environment_id: str, keys: EncryptedKeys, purpose: Purpose) -> bytes:
        """The DEK from the first entry whose KEK can be had and that authenticates as made for
        `purpose`; errors only if none does."""
        errors: list[VaultError] = []
        for entry in keys.entries:
            try:
                kek = await self.version(environment_id, entry.kek_id, entry.kek_version)
                return unwrap_entry(keys, entry, kek.key, purpose)
            except VaultError as exc:
                errors.append(exc)
        # An unavailable, shredded or retired key says what to fix; prefer it over "does not
        # decrypt".
        raise next((e for e in errors if not isinstance(e, DecryptionFailed)), errors[0])

    async def record(self, environment_id: str, kek_id: str) -> KekRecord | None:
        with store_errors():
            return await self._store.get_kek(environment_id, kek_id)

    async def version(self, environment_id: str, kek_id: str, version: int) -> Kek:
        """One version of a KEK, unless it was shredded or retired."""
        if not KEK_ID.fullmatch(kek_id):
            # Client bytes: never let a malformed id reach a storage key.
            raise DecryptionFailed("encrypted_keys names a key this environment does not have")

        async def load() -> Kek:
            record = live(await self.record(environment_id, kek_id))
            if record is not None and version < record.min_decryption_version:
                raise KeyVersionRetired(
                    f"{key_id(kek_id, version)} is retired: versions below "
                    f"{record.min_decryption_version} no longer decrypt",
                    metadata={"kek_id": kek_id, "kek_version": str(version)},
                )
            match = None if record is None else find_version(record.versions, version)
            if match is None:
                raise DecryptionFailed("encrypted_keys names a key this environment does not have")
            return await self._unwrap(environment_id, kek_id, match)

        return await self.cache.get_or_load(("version", environment_id, kek_id, str(version)), load)

    async def rotate(self, environment_id: str, item_key: str, item_value: str) -> KekVersion:
        """Add the item's next KEK version (the first, if it has none) and make it current.

        Two rotations at once make two versions: each caller asked for a new one.
        """
        kek_id = kek_id_for(environment_id, item_key, item_value)
        while True:
            record = checked(live(await self.record(environment_id, kek_id)), item_key, item_value)
            next_version = 1 if record is None else len(record.versions) + 1
            added = await self._add_version(
                environment_id, kek_id, item_key, item_value, next_version
            )
            if added is not None:
                self.cache.discard(("current", environment_id, kek_id))
                return added[1]

    async def rewrap_kek(self, environment_id: str, record: KekRecord) -> int:
        """Re-wrap every version of a KEK that its item's provider keys no longer hold.

        A version needs it when the item's rule now names other keys (a tenant moved to a new
        CMK, or gained or lost a secondary key), or when a provider says its own key moved on
        (a new root key version). The KEK itself is unchanged, so no DEK is touched. Returns
        how many were re-wrapped.
        """
        target = (await self._rules_in(environment_id)).key_uris(record.item_key, record.item_value)
        done = 0
        for stored in record.versions:
            if stored.key_uris == target and not self._stale(stored):
                continue
            kek = await self._unwrap(environment_id, record.kek_id, stored)
            rewrapped = await self._wrapped(environment_id, record.kek_id, target, kek.key, stored)
            with store_errors():
                if await self._store.rewrap_kek_version(
                    environment_id, record.kek_id, stored, rewrapped
                ):
                    done += 1
        return done

    def forget(self, environment_id: str, record: KekRecord) -> None:
        """Drop a KEK's cached versions in this process (after a retire or a shred)."""
        self.cache.discard(("current", environment_id, record.kek_id))
        for v in range(1, len(record.versions) + 1):
            self.cache.discard(("version", environment_id, record.kek_id, str(v)))

    def forget_changed(self, environment_id: str, kek: KekStamp) -> None:
        """Drop a KEK version the store refused a write under (storage.KekChanged): the next
        use reads the KEK from the store again."""
        self.cache.discard(("current", environment_id, kek.kek_id))
        self.cache.discard(("version", environment_id, kek.kek_id, str(kek.version)))

    async def _current(self, environment_id: str, item_key: str, item_value: str) -> Kek:
        kek_id = kek_id_for(environment_id, item_key, item_value)

        async def load() -> Kek:
            # Rarely more than once: only when another writer adds the same version first, or
            # the store loses a version just made (failover) and it must be made again.
            for _ in range(_CURRENT_ATTEMPTS):
                record = checked(
                    live(await self.record(environment_id, kek_id)), item_key, item_value
                )
                versions = () if record is None else record.versions
                if versions and not self._due(versions[-1]):
                    return await self._unwrap(environment_id, kek_id, versions[-1])
                added = await self._add_version(
                    environment_id, kek_id, item_key, item_value, len(versions) + 1
                )
                if added is not None:
                    return added[0]
            raise BackendUnavailable("the store's keys changed while being read; retry later")

        return await self.cache.get_or_load(("current", environment_id, kek_id), load)

    def _due(self, newest: KekVersion) -> bool:
        """Automatic rotation: the newest version is older than the rotation period."""
        period = self._rotation_period
        return period is not None and self._clock() - newest.created_at >= period

    def _stale(self, stored: KekVersion) -> bool:
        for wrapping in stored.wrappings:
            try:
                provider = self._providers.for_uri(wrapping.provider_uri)
            except ProviderError:
                return True  # its provider is no longer configured: unwrapping will say so
            if needs_rewrap(provider, wrapping.provider_uri, wrapping.wrapped_key):
                return True
        return False

    async def _add_version(
        self, environment_id: str, kek_id: str, item_key: str, item_value: str, version: int
    ) -> tuple[Kek, KekVersion] | None:
        """Make `version`, wrapped under the item's key URI; None when another writer made it
        first (or the KEK was shredded meanwhile).

        The new version is used only as the store then shows it, read back durably: that read
        gives its stamp, and proves it survived what the add's own confirmation may have missed.
        """
        if version == 1 and self._admit_kek is not None:
            await self._admit_kek(environment_id)
        key_uris = (await self._rules_in(environment_id)).key_uris(item_key, item_value)
        plain = new_dek()
        draft = KekVersion(item_key, item_value, version, key_uris[0], b"", self._clock())
        record = await self._wrapped(environment_id, kek_id, key_uris, plain, draft)
        with store_errors():
            if not await self._store.add_kek_version(environment_id, kek_id, record):
                return None
        if self._on_kek_created is not None:
            await self._on_kek_created(environment_id, kek_id, record)
        stored = live(await self.record(environment_id, kek_id))
        found = None if stored is None else find_version(stored.versions, version)
        if found is None or found.wrapped_key != record.wrapped_key:
            return None  # lost or replaced since: the caller reads what the store holds now
        kek = Kek(kek_id, version, plain, found.stamp)
        self.cache.put(("version", environment_id, kek_id, str(version)), kek)
        return kek, found

    def forget_key_uri(self, key_uri: str) -> int:
        """Drop every cached KEK wrapped under `key_uri` (its provider denied the key)."""
        keks = self._keks_under.pop(key_uri, set())
        return self.cache.discard_where(lambda key: (key[1], key[2]) in keks)

    async def _wrapped(
        self,
        environment_id: str,
        kek_id: str,
        key_uris: tuple[str, ...],
        plain: bytes,
        version: KekVersion,
    ) -> KekVersion:
        """`version` wrapped by every key of `key_uris` (the primary first). Every wrap must
        succeed: a version missing a key its rule names would not survive that key's peers."""
        wrappings = [
            Wrapping(uri, await self._wrap(environment_id, kek_id, uri, plain, version))
            for uri in key_uris
        ]
        primary, *secondary = wrappings
        return replace(
            version,
            provider_uri=primary.provider_uri,
            wrapped_key=primary.wrapped_key,
            secondary=tuple(secondary),
        )

    async def _wrap(
        self, environment_id: str, kek_id: str, key_uri: str, plain: bytes, version: KekVersion
    ) -> bytes:
        self._keks_under.setdefault(key_uri, set()).add((environment_id, kek_id))
        return await self._provider_call(
            "wrap",
            key_uri,
            lambda: self._providers.for_uri(key_uri).wrap(
                key_uri, plain, _binding(environment_id, kek_id, version)
            ),
        )

    async def _unwrap(self, environment_id: str, kek_id: str, record: KekVersion) -> Kek:
        """The KEK from the first of its wrappings a provider unwraps, the primary first.

        Each key is tried in turn (a denied or unreachable primary falls through to the next);
        when none unwraps, an outage is reported over a refusal, since it may pass.
        """
        errors: list[VaultError] = []
        binding = _binding(environment_id, kek_id, record)
        for wrapping in record.wrappings:
            self._keks_under.setdefault(wrapping.provider_uri, set()).add((environment_id, kek_id))
            try:
                plain = await self._unwrap_one(wrapping, binding)
            except (KeyProviderUnavailable, KeyUnavailable) as exc:
                errors.append(exc)
                continue
            if errors:
                log.warning(
                    "KEK %s unwrapped by %s after its earlier keys failed",
                    key_id(kek_id, record.version),
                    wrapping.provider_uri,
                )
            return Kek(kek_id, record.version, plain, record.stamp)
        raise next((e for e in errors if isinstance(e, KeyProviderUnavailable)), errors[0])

    async def _unwrap_one(self, wrapping: Wrapping, binding: Binding) -> bytes:
        uri = wrapping.provider_uri
        return await self._provider_call(
            "unwrap",
            uri,
            lambda: self._providers.for_uri(uri).unwrap(uri, wrapping.wrapped_key, binding),
        )

    async def _provider_call(
        self, operation: str, key_uri: str, call: Callable[[], Awaitable[T]]
    ) -> T:
        # The one place every provider call passes: its outcome and time are observed here.
        outcome = "error"  # cancelled, or out of the caller's deadline
        started = time.perf_counter()
        try:
            result = await call()
            outcome = "ok"
            return result
        except ProviderUnavailableError as exc:
            outcome = "unavailable"
            raise KeyProviderUnavailable(
                f"key provider for {key_uri} is unavailable; retry later",
                metadata={"key_uri": key_uri},
                retry_delay=exc.retry_after,
                deadline_reached=exc.deadline_reached,
            ) from None
        except (KeyUnavailableError, ProviderError) as exc:
            outcome = "key_unavailable"
            if isinstance(exc, KeyUnavailableError) and exc.denied:
                # A revocation: nothing cached under this key may serve another call.
                self.forget_key_uri(key_uri)
            raise KeyUnavailable(str(exc), metadata={"key_uri": key_uri}) from None
        finally:
            if self._on_provider_call is not None:
                scheme = key_uri.partition("://")[0]
                self._on_provider_call(scheme, operation, outcome, time.perf_counter() - started)
