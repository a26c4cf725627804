"""Quotas on KEK creation (docs/SECURITY.md section 5).

A KEK is made the first time a context item is used, and lives until shredded: a caller with
`objects:write` or `keys:use` could otherwise fill the store and the KMS with KEKs by sending a
fresh context item per call. Each new KEK (not a new version of one) is admitted against:
- per API key and per environment, KEKs per minute (token buckets: a burst of a minute's worth,
  refilled continuously) -> KEK_QUOTA_EXCEEDED with the delay until the next token;
- per environment, KEKs in total -> KEK_QUOTA_EXCEEDED without a delay (shred or raise it);
- per API key, KEKs in total -> KEK_QUOTA_EXCEEDED without a delay (a new key, or raise it).

The environment's total is counted from the store once per environment and process, then kept
up to date in memory by the KEKs this process admits; like the rate limits, it is per process.
The per-key total is a durable count in the store (NewKekCounts), checked and raised
in one atomic step, so it holds across restarts and across every process sharing the store.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import cast

from vaultd.core.audit import ORIGIN
from vaultd.core.errors import KekQuotaExceeded
from vaultd.core.ratelimit import TokenBuckets
from vaultd.core.types import store_errors
from vaultd.storage.base import NewKekCounts, Store


@dataclass(frozen=True, slots=True)
class KekQuotaLimits:
    """0 turns a quota off."""

    per_key_per_minute: int = 0
    per_environment_per_minute: int = 0
    per_environment_total: int = 0
    per_key_total: int = 0


class KekQuota:
    def __init__(
        self,
        store: Store,
        limits: KekQuotaLimits,
        clock: Callable[[], float] = time.monotonic,
        counts: NewKekCounts | None = None,
    ) -> None:
        """`counts` keeps the per-key totals; by default `store` (both stores implement it)."""
        self._store = store
        self._counts = counts if counts is not None else cast(NewKekCounts, store)
        self._limits = limits
        self._per_key = _buckets(limits.per_key_per_minute, clock)
        self._per_environment = _buckets(limits.per_environment_per_minute, clock)
        self._totals: dict[str, int] = {}

    async def admit(self, environment_id: str, api_key_id: str | None) -> None:
        """Count one new KEK of `environment_id`, made for `api_key_id` (None: no caller, e.g.
        a job); KekQuotaExceeded, counting nothing, when a quota is spent."""
        limits = self._limits
        if limits.per_environment_total:
            total = await self._total(environment_id)
            if total >= limits.per_environment_total:
                raise KekQuotaExceeded("per_environment_total", limits.per_environment_total, None)
        checks: list[tuple[TokenBuckets[str] | None, str, str, int]] = [
            (self._per_environment, environment_id, "per_environment_per_minute",
             limits.per_environment_per_minute),
        ]  # fmt: skip
        if api_key_id is not None:
            checks.append(
                (self._per_key, api_key_id, "per_key_per_minute", limits.per_key_per_minute)
            )
        for buckets, key, name, limit in checks:
            if buckets is not None and (wait := buckets.peek(key)):
                raise KekQuotaExceeded(name, limit, wait)
        # Counted before the one await below, so concurrent admissions in this process see
        # each other; undone if the durable per-key total then refuses (or cannot be read).
        for buckets, key, _, _ in checks:
            if buckets is not None:
                buckets.take(key)
        if limits.per_environment_total:
            self._totals[environment_id] = self._totals.get(environment_id, 0) + 1
        if api_key_id is None or not limits.per_key_total:
            return
        counted = False
        try:
            with store_errors():
                counted = await self._counts.admit_new_kek(
                    environment_id, api_key_id, limits.per_key_total
                )
        finally:
            if not counted:
                self._undo(environment_id, checks)
        if not counted:
            raise KekQuotaExceeded("per_key_total", limits.per_key_total, None)

    def _undo(
        self, environment_id: str, checks: list[tuple[TokenBuckets[str] | None, str, str, int]]
    ) -> None:
        for buckets, key, _, _ in checks:
            if buckets is not None:
                buckets.give_back(key)
        if self._limits.per_environment_total:
            self._totals[environment_id] -= 1

    async def _total(self, environment_id: str) -> int:
        if environment_id not in self._totals:
            with store_errors():
                keks = await self._store.list_keks(environment_id)
            self._totals[environment_id] = len(keks)
        return self._totals[environment_id]


def _buckets(per_minute: int, clock: Callable[[], float]) -> TokenBuckets[str] | None:
    return TokenBuckets(per_minute / 60.0, per_minute, clock=clock) if per_minute else None


def kek_admission(quota: KekQuota) -> Callable[[str], Awaitable[None]]:
    """For the Keyring (its `admit_kek`): admit a new KEK against the quotas of the call being
    served (audit.ORIGIN), or of no caller at all for a job."""

    async def admit(environment_id: str) -> None:
        origin = ORIGIN.get()
        actor = origin.actor if origin is not None else None
        await quota.admit(environment_id, actor.id if actor is not None else None)

    return admit
