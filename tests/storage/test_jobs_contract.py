"""The JobStore contract (vaultd/storage/base.py), proven against every store: rewrap jobs."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from ulid import ULID

from tests.storage.contract import (
    BASE_TIME,
    LATER,
    new_job,
)
from vaultd.storage import (
    Store,
)
from vaultd.storage.records import RewrapState


async def test_a_job_is_held_by_its_owner_until_its_lease_ends(store: Store) -> None:
    job = new_job("host-a:1")
    lease_end = BASE_TIME + timedelta(minutes=1)
    assert await store.get_rewrap_job(job.id) is None

    assert await store.save_rewrap_job(job, BASE_TIME)
    assert await store.get_rewrap_job(job.id) == job

    progress = replace(
        job,
        cursor=f"secret_{ULID()}",
        objects_total=9,
        objects_done=4,
        versions_rewrapped=5,
        keks_rewrapped=2,
        updated_at=LATER,
    )
    assert await store.save_rewrap_job(progress, lease_end)  # its owner: always
    # Another process, while the lease runs (up to and including its last instant): refused.
    takeover = replace(progress, owner="host-b:2", lease_until=lease_end + timedelta(minutes=1))
    assert not await store.save_rewrap_job(takeover, BASE_TIME)
    assert not await store.save_rewrap_job(takeover, lease_end)
    assert await store.get_rewrap_job(job.id) == progress

    # Once it has ended, another process takes it over, and the first is refused in turn.
    assert await store.save_rewrap_job(takeover, lease_end + timedelta(microseconds=1))
    assert await store.get_rewrap_job(job.id) == takeover
    assert not await store.save_rewrap_job(progress, lease_end + timedelta(seconds=1))

    # A job without a lease (finished, say) is free to anyone.
    done = replace(takeover, state=RewrapState.FAILED, error="provider refused", lease_until=None)
    assert await store.save_rewrap_job(done, BASE_TIME)
    assert await store.save_rewrap_job(replace(done, owner="host-c:3"), BASE_TIME)
    assert await store.get_rewrap_job(job.id) == replace(done, owner="host-c:3")


async def test_jobs_list_oldest_first(store: Store) -> None:
    jobs = [new_job(at=timedelta(hours=h)) for h in (3, 1, 2)]
    jobs.append(new_job(at=timedelta(hours=1)))  # same time: the id decides
    for job in jobs:
        assert await store.save_rewrap_job(job, BASE_TIME)

    listed = await store.list_rewrap_jobs()  # every test's jobs: one list for every process

    ours = [j for j in listed if j in jobs]
    assert ours == sorted(jobs, key=lambda j: (j.created_at, j.id))
    assert listed == sorted(listed, key=lambda j: (j.created_at, j.id))


async def test_malformed_job_ids_are_refused(store: Store) -> None:
    for bad in ["", "rewrap_:}{", f"rewrap_{str(ULID()).lower()}", str(ULID())]:
        with pytest.raises(ValueError, match="rewrap job id"):
            await store.get_rewrap_job(bad)
        with pytest.raises(ValueError, match="rewrap job id"):
            await store.save_rewrap_job(new_job(id=bad), BASE_TIME)
    with pytest.raises(ValueError, match="kek id"):
        await store.save_rewrap_job(new_job(kek_ids=("kek_NOT-HEX",)), BASE_TIME)
