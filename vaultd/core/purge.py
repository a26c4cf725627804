"""The purge job: destroys deleted objects once their retention has run out.

Every serving process runs one, but only the holder of the store's "purge" lease works at a
time: it renews the lease after every batch, and when it stops (killed, say) another process
takes the lease once it runs out and carries on. Each purge is one atomic store step that
destroys the object only if it is still deleted, and was deleted before the cut-off the job
read: a process killed at any point has destroyed only objects that were due, and an object
undeleted (or deleted again) meanwhile is left alone. Nothing else is kept between batches,
so the next holder simply asks the store again what is due.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol

from vaultd.core.errors import VaultError
from vaultd.core.types import store_errors
from vaultd.storage.base import JobStore, ObjectStore
from vaultd.storage.errors import ObjectMissing
from vaultd.storage.records import DeletedObject

log = logging.getLogger(__name__)

LEASE = "purge"
BATCH = 100
"""Objects per look at the index, and per lease renewal."""

PurgedSink = Callable[[DeletedObject], Awaitable[None]]
"""Awaited once per object the job destroyed; app.py audits it (vault.data.purged)."""


class PurgeStore(ObjectStore, JobStore, Protocol):
    """What the purge job needs of the store: deleted objects, and its lease."""


class PurgeJob:
    """This process's purge job (see the module's docstring)."""

    def __init__(
        self,
        store: PurgeStore,
        owner: str,
        *,
        retention: timedelta,
        interval: timedelta,
        lease: timedelta,
        on_purged: PurgedSink | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self.owner = owner
        self._retention = retention
        self._interval = interval
        self._lease = lease
        self._on_purged = on_purged
        self._clock = clock
        self._held = False  # whether this process ever took the lease (close releases it then)

    async def run(self) -> None:
        """Purge what is due now and every interval, until cancelled."""
        while True:
            try:
                await self.run_once()
            except VaultError as exc:
                # Storage away for now: the next round (here, or in the next holder) retries.
                log.warning("the purge job paused: %s", exc)
            await asyncio.sleep(self._interval.total_seconds())

    async def run_once(self) -> int:
        """Purge every object due now, if this process holds the lease; how many it purged."""
        purged = 0
        while await self._hold():
            cutoff = self._clock() - self._retention
            with store_errors():
                due = await self._store.due_for_purge(None, cutoff, BATCH)
            done = [await self._purge(deleted, cutoff) for deleted in due]
            purged += sum(done)
            if len(due) < BATCH or not any(done):
                break  # all that is due is done (or changed since it was read: next round)
        if purged:
            log.info("the purge job destroyed %d deleted object(s)", purged)
        return purged

    async def close(self) -> None:
        """Give the lease up, so another process need not wait for it to run out."""
        if not self._held:
            return  # never taken (an operator command's App): nothing to write
        try:
            with store_errors():
                await self._store.release_lease(LEASE, self.owner)
        except VaultError as exc:
            log.warning("the purge job could not release its lease: %s", exc)

    async def _hold(self) -> bool:
        """Take or renew the lease; False while another process holds it."""
        now = self._clock()
        with store_errors():
            held = await self._store.take_lease(LEASE, self.owner, now + self._lease, now)
        self._held = self._held or held
        return held

    async def _purge(self, deleted: DeletedObject, cutoff: datetime) -> int:
        with store_errors():
            try:
                if not await self._store.purge_object(
                    deleted.environment_id, deleted.object_id, cutoff
                ):
                    return 0  # undeleted, or deleted again, since the index was read
            except ObjectMissing:
                return 0  # purged by an admin's PurgeObject meanwhile
        if self._on_purged is not None:
            await self._on_purged(deleted)
        return 1
