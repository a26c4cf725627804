"""KEKs: one per context item, created just in time, versioned, wrapped by a provider key.

A KEK's id is a digest of (environment, item), so finding it needs no index and two environments
never share one. Unwrapped KEKs live in a TtlCache: a warm cache makes no provider call, and
concurrent misses for one KEK make one.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TypeVar

from providers import (
    Binding,
    KeyUnavailableError,
    ProviderError,
    ProviderRegistry,
    ProviderUnavailableError,
)
from vaultd.core.cache import TtlCache
from vaultd.core.envelope import EncryptedKeys, Kek, new_dek, unwrap_entry
from vaultd.core.errors import (
    BackendUnavailable,
    DecryptionFailed,
    KeyUnavailable,
    VaultError,
)
from vaultd.core.rules import KeyRules
from vaultd.core.validation import KeyContext
from vaultd.storage.base import KekVersion, Store, StoreUnavailable

T = TypeVar("T")
CacheKey = tuple[str, ...]

ProviderCallObserver = Callable[[str, str, str, float], None]
"""Told of every provider call: (scheme, "wrap" | "unwrap", outcome, seconds), where outcome is
"ok", "unavailable", "key_unavailable" or "error". server.py feeds it to the metrics; core
imports no metrics library."""

KekCreatedSink = Callable[[str, str, KekVersion], Awaitable[None]]
"""Awaited once per KEK version this process creates: (environment id, KEK id, its record).
server.py makes it write the vault.kek.created audit event; core knows nothing of auditing."""


KEK_ID = re.compile("kek_[0-9a-f]{32}")


def kek_id_for(environment_id: str, item_key: str, item_value: str) -> str:
    material = "\0".join(("vaultd/kek-id/v1", environment_id, item_key, item_value))
    return "kek_" + hashlib.sha256(material.encode()).hexdigest()[:32]


def key_id_label(kek: Kek) -> str:
    """How a KEK version appears in ObjectMetadata.key_ids."""
    return f"{kek.kek_id}.v{kek.version}"


@contextmanager
def store_errors() -> Iterator[None]:
    """Storage outages become BACKEND_UNAVAILABLE for the client."""
    try:
        yield
    except StoreUnavailable:
        raise BackendUnavailable("storage is unavailable; retry later") from None


def _binding(environment_id: str, kek_id: str, kek: KekVersion) -> Binding:
    return {
        "vaultd:environment": environment_id,
        "vaultd:item": f"{kek.item_key}={kek.item_value}",
        "vaultd:kek": f"{kek_id}.v{kek.version}",
    }


class Keyring:
    """Finds, creates and unwraps KEKs for an environment's context items."""

    def __init__(
        self,
        store: Store,
        providers: ProviderRegistry,
        rules: KeyRules,
        cache: TtlCache[CacheKey, Kek],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        on_provider_call: ProviderCallObserver | None = None,
        on_kek_created: KekCreatedSink | None = None,
    ) -> None:
        self._store = store
        self._providers = providers
        self._rules = rules
        self.cache = cache
        self._clock = clock
        self._on_provider_call = on_provider_call
        self._on_kek_created = on_kek_created

    async def current_keks(self, environment_id: str, context: KeyContext) -> list[Kek]:
        """The newest KEK of each item that must wrap a DEK for this context."""
        return [
            await self._current(environment_id, key, value)
            for key, value in self._rules.items_to_wrap(context)
        ]

    async def unwrap_dek(self, environment_id: str, keys: EncryptedKeys) -> bytes:
        """The DEK from the first entry whose KEK can be had; errors only if none can."""
        errors: list[VaultError] = []
        for entry in keys.entries:
            try:
                kek = await self._version(environment_id, entry.kek_id, entry.kek_version)
                return unwrap_entry(keys, entry, kek.key)
            except VaultError as exc:
                errors.append(exc)
        # An unavailable key says what to fix; prefer it over "does not decrypt".
        raise next((e for e in errors if not isinstance(e, DecryptionFailed)), errors[0])

    async def _current(self, environment_id: str, item_key: str, item_value: str) -> Kek:
        kek_id = kek_id_for(environment_id, item_key, item_value)

        async def load() -> Kek:
            with store_errors():
                versions = await self._store.get_kek_versions(environment_id, kek_id)
            if not versions:
                created = await self._create(environment_id, kek_id, item_key, item_value)
                if created is not None:
                    return created
                with store_errors():
                    versions = await self._store.get_kek_versions(environment_id, kek_id)
            return await self._unwrap(environment_id, kek_id, versions[-1])

        return await self.cache.get_or_load(("current", environment_id, kek_id), load)

    async def _version(self, environment_id: str, kek_id: str, version: int) -> Kek:
        if not KEK_ID.fullmatch(kek_id):
            # Client bytes: never let a malformed id reach a storage key.
            raise DecryptionFailed("encrypted_keys names a key this environment does not have")

        async def load() -> Kek:
            with store_errors():
                versions = await self._store.get_kek_versions(environment_id, kek_id)
            match = _find(versions, version)
            if match is None:
                raise DecryptionFailed("encrypted_keys names a key this environment does not have")
            return await self._unwrap(environment_id, kek_id, match)

        return await self.cache.get_or_load(("version", environment_id, kek_id, str(version)), load)

    async def _create(
        self, environment_id: str, kek_id: str, item_key: str, item_value: str
    ) -> Kek | None:
        """Make version 1; None when another writer made it first (then read theirs)."""
        key_uri = self._rules.key_uri(item_key, item_value)
        plain = new_dek()
        draft = KekVersion(item_key, item_value, 1, key_uri, b"", self._clock())
        wrapped = await self._provider_call(
            "wrap",
            key_uri,
            lambda: self._providers.for_uri(key_uri).wrap(
                key_uri, plain, _binding(environment_id, kek_id, draft)
            ),
        )
        record = KekVersion(item_key, item_value, 1, key_uri, wrapped, draft.created_at)
        with store_errors():
            if not await self._store.add_kek_version(environment_id, kek_id, record):
                return None
        if self._on_kek_created is not None:
            await self._on_kek_created(environment_id, kek_id, record)
        kek = Kek(kek_id, 1, plain)
        self.cache.put(("version", environment_id, kek_id, "1"), kek)
        return kek

    async def _unwrap(self, environment_id: str, kek_id: str, record: KekVersion) -> Kek:
        uri = record.provider_uri
        plain = await self._provider_call(
            "unwrap",
            uri,
            lambda: self._providers.for_uri(uri).unwrap(
                uri, record.wrapped_key, _binding(environment_id, kek_id, record)
            ),
        )
        return Kek(kek_id, record.version, plain)

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
        except ProviderUnavailableError:
            outcome = "unavailable"
            raise BackendUnavailable(
                f"key provider for {key_uri} is unavailable; retry later",
                metadata={"key_uri": key_uri},
            ) from None
        except (KeyUnavailableError, ProviderError) as exc:
            outcome = "key_unavailable"
            raise KeyUnavailable(str(exc), metadata={"key_uri": key_uri}) from None
        finally:
            if self._on_provider_call is not None:
                scheme = key_uri.partition("://")[0]
                self._on_provider_call(
                    scheme, operation, outcome, time.perf_counter() - started
                )


def _find(versions: Sequence[KekVersion], version: int) -> KekVersion | None:
    return next((v for v in versions if v.version == version), None)
