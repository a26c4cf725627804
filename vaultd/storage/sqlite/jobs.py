"""Rewrap jobs and named leases in the embedded store (the JobStore part of SqliteStore).

Each job is kept whole as its codec record, beside the columns the lease check and listing need;
a named lease (the purge job's) is a row of `leases`.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime

from vaultd.storage import codec
from vaultd.storage.keys import LEASE_NAME, REWRAP_JOB_ID, check, check_rewrap_job
from vaultd.storage.records import RewrapJob
from vaultd.storage.sqlite.connection import SqliteConnection, transaction


class SqliteJobs(SqliteConnection):
    """JobStore on SQLite."""

    async def save_rewrap_job(self, job: RewrapJob, now: datetime) -> bool:
        check_rewrap_job(job)
        row = (
            job.id,
            codec.to_micros(job.created_at),
            job.owner,
            None if job.lease_until is None else codec.to_micros(job.lease_until),
            codec.encode_rewrap_job(job),
        )
        now_micros = codec.to_micros(now)

        def save(conn: sqlite3.Connection) -> bool:
            with transaction(conn):
                held = conn.execute(
                    "SELECT owner, lease_until FROM rewrap_jobs WHERE id = ?", (job.id,)
                ).fetchone()
                if held is not None and not _may_take(held[0], held[1], job.owner, now_micros):
                    return False
                conn.execute("INSERT OR REPLACE INTO rewrap_jobs VALUES (?, ?, ?, ?, ?)", row)
                return True

        return await self._run(save)

    async def get_rewrap_job(self, job_id: str) -> RewrapJob | None:
        check(REWRAP_JOB_ID, job_id, "rewrap job id")
        sql = "SELECT record FROM rewrap_jobs WHERE id = ?"
        row = await self._run(lambda c: c.execute(sql, (job_id,)).fetchone())
        return None if row is None else codec.decode_rewrap_job(row[0])

    async def list_rewrap_jobs(self) -> list[RewrapJob]:
        sql = "SELECT record FROM rewrap_jobs ORDER BY created_at, id"
        rows = await self._run(lambda c: c.execute(sql).fetchall())
        return [codec.decode_rewrap_job(record) for (record,) in rows]

    async def take_lease(self, name: str, owner: str, until: datetime, now: datetime) -> bool:
        check(LEASE_NAME, name, "lease name")
        row = (name, owner, codec.to_micros(until))
        now_micros = codec.to_micros(now)

        def take(conn: sqlite3.Connection) -> bool:
            with transaction(conn):
                held = conn.execute(
                    "SELECT owner, lease_until FROM leases WHERE name = ?", (name,)
                ).fetchone()
                if held is not None and not _may_take(held[0], held[1], owner, now_micros):
                    return False
                conn.execute("INSERT OR REPLACE INTO leases VALUES (?, ?, ?)", row)
                return True

        return await self._run(take)

    async def release_lease(self, name: str, owner: str) -> None:
        check(LEASE_NAME, name, "lease name")
        sql = "DELETE FROM leases WHERE name = ? AND owner = ?"

        def release(conn: sqlite3.Connection) -> None:
            with transaction(conn):
                conn.execute(sql, (name, owner))

        await self._run(release)


def _may_take(held_by: str, lease_until: int | None, owner: str, now: int) -> bool:
    """Whether `owner` may write over a job `held_by` someone until `lease_until` (µs)."""
    return held_by == owner or lease_until is None or lease_until < now
