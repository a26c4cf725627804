"""BYOK keys managed at run time: per-environment rules kept in the store, verified before use.

A BYOK key record (storage/records.py) is a rule like a `byok:` entry of the configuration, but
added, verified and removed through AdminService while vaultd runs. Resolving a context item
consults the environment's records first, then the configured rules (which seed every
environment), then the default key. Each process reads an environment's records at most once
per `ttl_seconds` (the KEK cache's TTL), so a change reaches every process within one TTL, and
the process that made it at once.

Adding a key first verifies it: the provider wraps and unwraps a probe under it. A key that
fails is not registered. A registered key keeps governing its items even when a later
verification fails, so a revoked key makes its tenant's calls fail rather than silently
moving new data to another key.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from ulid import ULID

from providers import ProviderError, ProviderRegistry, ProviderUnavailableError
from vaultd.core.cache import TtlCache
from vaultd.core.errors import (
    ByokKeyConflict,
    ByokKeyNotFound,
    ByokKeyVerificationFailed,
    InvalidArgument,
    KeyProviderUnavailable,
)
from vaultd.core.rules import KeyRules, Rule, RuleError
from vaultd.core.types import store_errors
from vaultd.core.validation import KeyContext, validate_key_context
from vaultd.storage.base import ByokKeyStore
from vaultd.storage.records import ByokKeyRecord

MAX_ENVIRONMENTS_CACHED = 10_000
MAX_KEY_URI_CHARS = 1024


def _rule(record: ByokKeyRecord) -> Rule:
    is_prefix = record.pattern.endswith("*")
    value = record.pattern[:-1] if is_prefix else record.pattern
    label = f"byok key {record.id} ({record.item_key}={record.pattern} -> {record.key_uri})"
    return Rule(record.item_key, value, record.key_uri, is_prefix, label)


class LayeredRules:
    """An environment's BYOK keys over the configured rules: the first that governs wins."""

    def __init__(self, runtime: KeyRules, configured: KeyRules) -> None:
        self._runtime = runtime
        self._configured = configured
        self.default_uri = configured.default_uri

    def governing_rule(self, item_key: str, item_value: str) -> Rule | None:
        return self._runtime.governing_rule(item_key, item_value) or (
            self._configured.governing_rule(item_key, item_value)
        )

    def key_uri(self, item_key: str, item_value: str) -> str:
        return self.key_uris(item_key, item_value)[0]

    def key_uris(self, item_key: str, item_value: str) -> tuple[str, ...]:
        rule = self.governing_rule(item_key, item_value)
        return rule.key_uris if rule else (self.default_uri,)

    def items_to_wrap(self, context: KeyContext) -> KeyContext:
        governed = tuple(item for item in context if self.governing_rule(*item))
        return governed or context


class ByokKeys:
    def __init__(
        self,
        store: ByokKeyStore,
        providers: ProviderRegistry,
        configured: KeyRules,
        ttl_seconds: float,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._providers = providers
        self._configured = configured
        self._now = now
        self.cache: TtlCache[str, LayeredRules] = TtlCache(ttl_seconds, MAX_ENVIRONMENTS_CACHED)

    async def rules_for(self, environment_id: str) -> LayeredRules:
        """The rules that resolve this environment's context items now."""

        async def load() -> LayeredRules:
            with store_errors():
                records = await self._store.list_byok_keys(environment_id)
            return LayeredRules(KeyRules("", map(_rule, records)), self._configured)

        return await self.cache.get_or_load(environment_id, load)

    async def create(
        self, environment_id: str, match: Mapping[str, str], key_uri: str
    ) -> ByokKeyRecord:
        """Verify the key, then register it for the match; refused on a clash."""
        self._check_new(match, key_uri)
        ((item_key, pattern),) = match.items()
        record = ByokKeyRecord(
            f"byok_{ULID()}", environment_id, item_key, pattern, key_uri, self._now()
        )
        error = await self._verify(key_uri)
        if error is not None:
            raise ByokKeyVerificationFailed(
                f"{key_uri} did not wrap and unwrap a probe: {error}", metadata={"key_uri": key_uri}
            )
        record = ByokKeyRecord(
            record.id,
            environment_id,
            item_key,
            pattern,
            key_uri,
            record.created_at,
            self._now(),
            True,
        )
        with store_errors():
            holder = await self._store.add_byok_key(record)
        if holder is not None:
            raise ByokKeyConflict(
                f"the match is already governed by {_rule(holder).label}",
                metadata={"conflicts_with": holder.id},
            )
        self.cache.discard(environment_id)
        return record

    def _check_new(self, match: Mapping[str, str], key_uri: str) -> None:
        """A new key's match and URI, refused unless well-formed, served by a configured
        provider, and clear of the configured rules."""
        # Bounded before anything echoes them: an error's message travels in the trailers.
        if len(match) != 1:
            raise InvalidArgument(
                "match", "must hold exactly one context item, e.g. {organization_id: org_abc}"
            )
        validate_key_context(match, "match")
        if not key_uri or len(key_uri) > MAX_KEY_URI_CHARS:
            raise InvalidArgument(
                "key_uri", f"must have 1 to {MAX_KEY_URI_CHARS} characters, e.g. aws-kms://arn:..."
            )
        try:
            rule = Rule.parse(0, match, key_uri)
        except RuleError as exc:
            raise InvalidArgument("match", str(exc).partition(": ")[2] or str(exc)) from None
        try:
            self._providers.for_uri(key_uri)
        except ProviderError as exc:
            raise InvalidArgument("key_uri", str(exc)) from None
        clash = next(
            (
                r
                for r in self._configured.rules
                if (r.item_key, r.value, r.is_prefix) == (rule.item_key, rule.value, rule.is_prefix)
            ),
            None,
        )
        if clash is not None:
            raise ByokKeyConflict(
                f"the match is already governed by the configured {clash.label}",
                metadata={"conflicts_with": clash.label},
            )

    async def list(self, environment_id: str) -> list[ByokKeyRecord]:
        with store_errors():
            return await self._store.list_byok_keys(environment_id)

    async def get(self, environment_id: str, byok_key_id: str) -> ByokKeyRecord:
        with store_errors():
            record = await self._store.get_byok_key(environment_id, byok_key_id)
        if record is None:
            raise ByokKeyNotFound(f"no BYOK key {byok_key_id!r} in this environment")
        return record

    async def verify(self, environment_id: str, byok_key_id: str) -> ByokKeyRecord:
        """Verify a registered key again and record the outcome (a failure is recorded, not
        raised: the record says what went wrong)."""
        record = await self.get(environment_id, byok_key_id)
        error = await self._verify(record.key_uri)
        with store_errors():
            updated = await self._store.set_byok_verification(
                environment_id, byok_key_id, self._now(), error is None, error or ""
            )
        if updated is None:
            raise ByokKeyNotFound(f"no BYOK key {byok_key_id!r} in this environment")
        return updated

    async def delete(self, environment_id: str, byok_key_id: str) -> ByokKeyRecord:
        """Remove a key: new KEKs of its items follow the configured rules again; KEKs already
        wrapped under it keep naming it, so their data stays readable while the key works."""
        with store_errors():
            removed = await self._store.delete_byok_key(environment_id, byok_key_id)
        if removed is None:
            raise ByokKeyNotFound(f"no BYOK key {byok_key_id!r} in this environment")
        self.cache.discard(environment_id)
        return removed

    async def _verify(self, key_uri: str) -> str | None:
        """None when the key wraps and unwraps now; else what failed (no key material)."""
        try:
            await self._providers.for_uri(key_uri).verify(key_uri)
        except ProviderUnavailableError as exc:
            raise KeyProviderUnavailable(
                f"key provider for {key_uri} is unavailable; retry later",
                metadata={"key_uri": key_uri},
                retry_delay=exc.retry_after,
            ) from None
        except ProviderError as exc:
            return str(exc)
        return None
