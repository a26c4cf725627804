"""Rewrap jobs and named leases in the Redis store (the JobStore part of RedisStore).

Two hashes outside every environment: job records by id, and "<lease_until µs> <owner>" by id,
which the save script checks so only the job's holder (or anyone, once its lease ran out)
writes it. Named leases (the purge job's) are a third hash, name -> "<until µs> <owner>".
"""

from __future__ import annotations

from datetime import datetime

from vaultd.storage import codec
from vaultd.storage.keys import (
    LEASE_NAME,
    REWRAP_JOB_ID,
    JobKind,
    check,
    check_rewrap_job,
    job_key,
)
from vaultd.storage.records import RewrapJob
from vaultd.storage.redis.connection import RedisConnection, as_bytes, available

_REWRAP_KEYS = [job_key(JobKind.REWRAP), job_key(JobKind.REWRAP_HOLDERS)]


class RedisJobs(RedisConnection):
    """JobStore on Redis."""

    @available
    async def save_rewrap_job(self, job: RewrapJob, now: datetime) -> bool:
        check_rewrap_job(job)
        lease = 0 if job.lease_until is None else codec.to_micros(job.lease_until)
        saved = await self._write(
            self._scripts.save_rewrap_job,
            keys=_REWRAP_KEYS,
            args=[
                job.id,
                codec.encode_rewrap_job(job),
                f"{lease} {job.owner}",
                codec.to_micros(now),
            ],
        )
        return bool(saved)

    @available
    async def get_rewrap_job(self, job_id: str) -> RewrapJob | None:
        check(REWRAP_JOB_ID, job_id, "rewrap job id")
        record = await self._redis.hget(_REWRAP_KEYS[0], job_id)
        return None if record is None else codec.decode_rewrap_job(as_bytes(record))

    @available
    async def list_rewrap_jobs(self) -> list[RewrapJob]:
        records = await self._redis.hvals(_REWRAP_KEYS[0])
        jobs = [codec.decode_rewrap_job(as_bytes(r)) for r in records]
        return sorted(jobs, key=lambda j: (j.created_at, j.id))

    @available
    async def take_lease(self, name: str, owner: str, until: datetime, now: datetime) -> bool:
        check(LEASE_NAME, name, "lease name")
        taken = await self._write(
            self._scripts.take_lease,
            keys=[job_key(JobKind.LEASES)],
            args=[name, owner, codec.to_micros(until), codec.to_micros(now)],
        )
        return bool(taken)

    @available
    async def release_lease(self, name: str, owner: str) -> None:
        check(LEASE_NAME, name, "lease name")
        await self._write(
            self._scripts.release_lease, keys=[job_key(JobKind.LEASES)], args=[name, owner]
        )
