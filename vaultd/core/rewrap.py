"""Rewrap jobs: move wrapped keys to their KEK's newest version and provider key, never the data.

A job works on some KEKs of one environment, in two steps:

1. each KEK version that its item's provider key no longer holds (the item's BYOK rule names a
   new CMK, or the root key has a new version) is re-wrapped under the current one;
2. every object version is visited in id order, and each `encrypted_keys` entry under an older
   version of those KEKs is re-wrapped under the newest. Only that entry changes: the DEK, its
   id, the version id and the ciphertext stay as they are, byte for byte. A version still in
   format 1 (one entry label for data keys and objects alike) has every entry re-wrapped, at
   its own KEK version unless that is one being moved, into format 2 labelled as a migrated
   object version's DEK: the migration to domain-separated keys, again without touching the
   data (whose associated data stays the older one, which that label tells readers).

Every write is a compare-and-set, so updates, deletes and other jobs may run at the same time.
The job's cursor and counts are saved after each batch, under a lease: a job whose process died
is taken over by another (or the same, restarted) once the lease runs out, and continues from
its cursor. Re-running a batch is harmless: entries already at the newest version are skipped.

Before step 2 the job waits until the newest versions are older than the KEK cache's TTL, so no
process still wraps new DEKs under a version it cached before the rotation.

Data-key blobs live with the callers, out of reach: callers move them with RekeyDataKey.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Protocol

from vaultd.core.envelope import (
    LEGACY_FORMAT_VERSION,
    EncryptedKeys,
    Purpose,
    WrappedEntry,
    wrap_dek,
)
from vaultd.core.errors import BackendUnavailable, VaultError
from vaultd.core.keyring import Keyring
from vaultd.core.types import store_errors
from vaultd.core.versions import object_dek, version_keys
from vaultd.storage.base import JobStore, ObjectStore
from vaultd.storage.errors import KekChanged
from vaultd.storage.records import KekStamp, ObjectVersions, RewrapJob, RewrapState, StoredVersion

log = logging.getLogger(__name__)

BATCH_OBJECTS = 50
"""Objects per scan step, and per saved progress."""

JobFinishedSink = Callable[[RewrapJob], Awaitable[None]]
"""Awaited once per job this process finishes (done or failed); app.py audits it."""


class RewrapStore(ObjectStore, JobStore, Protocol):
    """What a rewrap runner needs of the store: the objects it walks, the jobs it keeps."""


class RewrapRunner:
    """Runs this process's rewrap jobs, and takes over those whose runner went away."""

    def __init__(
        self,
        store: RewrapStore,
        keyring: Keyring,
        owner: str,
        *,
        lease: timedelta,
        settle: timedelta,
        versions_per_second: float,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        on_finished: JobFinishedSink | None = None,
    ) -> None:
        self._store = store
        self._keyring = keyring
        self.owner = owner
        self._lease = lease
        self._settle = settle
        self._rate = versions_per_second
        self._clock = clock
        self._on_finished = on_finished
        self._tasks: dict[str, asyncio.Task[None]] = {}

    async def start(self, job: RewrapJob) -> RewrapJob:
        """Store a new job as this process's and run it in the background."""
        claimed = await self.queue(self._claim(job))
        self._spawn(claimed)
        return claimed

    async def queue(self, job: RewrapJob) -> RewrapJob:
        """Store a new job as it is: with no owner, the next watcher anywhere takes it."""
        with store_errors():
            if not await self._store.save_rewrap_job(job, self._clock()):
                raise BackendUnavailable("the rewrap job could not be stored; retry")
        return job

    async def resume_abandoned(self) -> list[str]:
        """Take over every running job whose lease ran out; the ids of those taken."""
        now = self._clock()
        with store_errors():
            jobs = await self._store.list_rewrap_jobs()
        taken = []
        for job in jobs:
            if job.state is not RewrapState.RUNNING or job.id in self._tasks:
                continue
            if job.lease_until is not None and job.lease_until > now:
                continue
            claimed = self._claim(job)
            with store_errors():
                if await self._store.save_rewrap_job(claimed, now):
                    log.info("resuming rewrap job %s from %r", job.id, job.cursor)
                    self._spawn(claimed)
                    taken.append(job.id)
        return taken

    async def watch(self) -> None:
        """Resume abandoned jobs now and every half lease, until cancelled."""
        while True:
            try:
                await self.resume_abandoned()
            except VaultError as exc:
                log.warning("could not look for abandoned rewrap jobs: %s", exc)
            await asyncio.sleep(self._lease.total_seconds() / 2)

    async def wait(self, job_id: str) -> None:
        """Until this process's run of the job ends (tests and the CLI's local runs)."""
        task = self._tasks.get(job_id)
        if task is not None:
            await asyncio.shield(task)

    async def close(self) -> None:
        """Stop running: the jobs stay RUNNING and are resumed when their lease runs out."""
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    def _claim(self, job: RewrapJob) -> RewrapJob:
        now = self._clock()
        return replace(job, owner=self.owner, lease_until=now + self._lease, updated_at=now)

    def _spawn(self, job: RewrapJob) -> None:
        task = asyncio.create_task(self._run(job), name=f"rewrap {job.id}")
        self._tasks[job.id] = task
        task.add_done_callback(lambda _: self._tasks.pop(job.id, None))

    async def _run(self, job: RewrapJob) -> None:
        try:
            job = await self._work(job)
        except _LeaseLost:
            log.info("rewrap job %s: another process took it over", job.id)
            return
        except BackendUnavailable as exc:
            # Storage or a KMS is away for now: leave the job RUNNING; once its lease runs out,
            # a watcher (here or elsewhere) resumes it from the last saved cursor.
            log.warning("rewrap job %s paused: %s", job.id, exc)
            return
        except _Unreadable as exc:
            log.warning("rewrap job %s failed: %s", job.id, exc)
            job = replace(job, state=RewrapState.FAILED, error=str(exc))
        except VaultError as exc:
            log.warning("rewrap job %s failed: %s", job.id, exc)
            job = replace(job, state=RewrapState.FAILED, error=f"{exc.reason}: {exc.message}")
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("rewrap job %s failed", job.id)
            job = replace(job, state=RewrapState.FAILED, error="INTERNAL: see the server log")
        try:
            if await self._save(job) and self._on_finished is not None:
                await self._on_finished(job)
        except VaultError as exc:
            # Unsaved: the job stays RUNNING and is resumed, which redoes nothing harmful.
            log.warning("rewrap job %s: could not save its end: %s", job.id, exc)

    async def _work(self, job: RewrapJob) -> RewrapJob:
        env = job.environment_id
        newest: dict[str, int] = {}
        keks_rewrapped = 0
        for kek_id in job.kek_ids:
            record = await self._keyring.record(env, kek_id)
            if record is None or record.shredded_at is not None:
                continue  # shredded since the job started: nothing of it is left to move
            keks_rewrapped += await self._keyring.rewrap_kek(env, record)
            newest[kek_id] = len(record.versions)
            job = await self._settled(job, record.versions[-1].created_at)
        if job.cursor == "" and job.objects_done == 0:
            with store_errors():
                job = replace(job, objects_total=await self._store.count_objects(env))
        job = replace(job, keks_rewrapped=job.keks_rewrapped + keks_rewrapped)
        while True:
            started = time.monotonic()
            with store_errors():
                batch = await self._store.scan_object_versions(env, job.cursor, BATCH_OBJECTS)
            if not batch:
                return replace(job, state=RewrapState.DONE, error="")
            # The objects of a batch move concurrently: their writes overlap on the network.
            moved = await asyncio.gather(*(self._rewrap_object(env, obj, newest) for obj in batch))
            rewrapped = sum(moved)
            visited = sum(len(obj.versions) for obj in batch)
            job = replace(
                job,
                cursor=batch[-1].object_id,
                objects_done=job.objects_done + len(batch),
                versions_rewrapped=job.versions_rewrapped + rewrapped,
            )
            if not await self._save(job):
                raise _LeaseLost
            if self._rate > 0:
                await asyncio.sleep(visited / self._rate - (time.monotonic() - started))

    async def _settled(self, job: RewrapJob, newest_at: datetime) -> RewrapJob:
        """Wait (keeping the lease) until `newest_at` is a cache TTL old."""
        while (remaining := (newest_at + self._settle - self._clock()).total_seconds()) > 0:
            await asyncio.sleep(min(remaining, self._lease.total_seconds() / 3))
            if not await self._save(job):
                raise _LeaseLost
        return job

    async def _rewrap_object(self, env: str, obj: ObjectVersions, newest: dict[str, int]) -> int:
        moved = 0
        for version in obj.versions:
            moved += await self._rewrap_version(env, obj.object_id, version, newest)
        return moved

    async def _rewrap_version(
        self, env: str, object_id: str, version: StoredVersion, newest: dict[str, int]
    ) -> bool:
        try:
            keys = version_keys(version)
        except VaultError as exc:
            where = f"{object_id} {version.version_id}"
            raise _Unreadable(f"{exc.reason}: {where}: {exc.message}") from None
        legacy = keys.format_version == LEGACY_FORMAT_VERSION
        stale = any(_stale(e, newest) for e in keys.entries)
        if not legacy and not stale:
            return False
        for attempt in range(2):
            try:
                dek, purpose = await object_dek(self._keyring, env, keys)
                # A format-1 version keeps its value's older associated data: the label says so.
                if purpose is Purpose.LEGACY_V1:
                    purpose = Purpose.MIGRATED_OBJECT_VERSION
                entries, used = [], []
                for entry in keys.entries:
                    if _stale(entry, newest) or legacy:
                        target = (
                            newest[entry.kek_id] if _stale(entry, newest) else entry.kek_version
                        )
                        kek = await self._keyring.version(env, entry.kek_id, target)
                        entry = wrap_dek(dek, keys.dek_id, [kek], purpose).entries[0]
                        used.append(KekStamp(kek.kek_id, kek.version, kek.stamp))
                    entries.append(entry)
            except BackendUnavailable:
                raise
            except VaultError as exc:
                where = f"{object_id} {version.version_id}"
                if not stale:
                    # Only the format migration wanted it, and a key it needs is shredded,
                    # retired or revoked: leave it as it is (still read), and say so.
                    log.warning("rewrap: %s stays in format 1: %s", where, exc.reason)
                    return False
                raise _Unreadable(f"{exc.reason}: {where}: {exc.message}") from None
            moved = EncryptedKeys(
                keys.dek_id, tuple(entries), Purpose.OBJECT_VERSION.format_version
            )
            with store_errors():
                try:
                    # False: deleted, or moved by another job meanwhile: nothing is left to do.
                    return await self._store.replace_encrypted_keys(
                        env, object_id, version, moved.to_bytes(), moved.key_ids, used
                    )
                except KekChanged as exc:
                    # Re-wrapped by this very job (rewrap_kek) since this process cached it.
                    self._keyring.forget_changed(
                        env, next(k for k in used if k.kek_id == exc.kek_id)
                    )
                    if attempt:
                        raise BackendUnavailable(
                            "a KEK kept changing; the job will resume"
                        ) from None
        raise AssertionError("unreachable")

    async def _save(self, job: RewrapJob) -> bool:
        """Save progress and extend the lease; False once another process owns the job."""
        now = self._clock()
        with store_errors():
            return await self._store.save_rewrap_job(
                replace(job, updated_at=now, lease_until=now + self._lease), now
            )


class _Unreadable(Exception):
    """An object version's DEK cannot be had (its keys shredded, revoked, retired): the job
    stops and says which, rather than skip it and report success."""


class _LeaseLost(Exception):
    """Another process saved the job since this one last did: it runs the job now."""


def _stale(entry: WrappedEntry, newest: dict[str, int]) -> bool:
    return entry.kek_id in newest and entry.kek_version < newest[entry.kek_id]
