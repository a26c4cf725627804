"""Durable counts of the new KEKs admitted for each API key (the per-key total KEK quota).

A count lives in the store, not in a process, so the quota holds across restarts and across the
processes that share one store. It is raised when a new KEK is admitted (core/quota.py), in one
atomic check-and-add, so concurrent callers in any number of processes can never pass the limit
between them. An admitted KEK whose making then fails (its provider refused the wrap, or another
caller made the same KEK first) stays counted: the count is an upper bound of the KEKs the key
made, never below it. Storage knows nothing of quotas beyond the limit it is told.
"""

from __future__ import annotations

from typing import Protocol


class NewKekCounts(Protocol):
    """The narrow storage protocol of per-API-key KEK counts (docs/FORMAT.md, "KEK counts")."""

    async def new_keks_of(self, environment_id: str, api_key_id: str) -> int:
        """How many new KEKs were admitted for the API key (0 when none)."""
        ...

    async def admit_new_kek(self, environment_id: str, api_key_id: str, limit: int) -> bool:
        """Count one more new KEK for the API key, unless `limit` (>= 1) are counted already;
        whether it was counted."""
        ...
