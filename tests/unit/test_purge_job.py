"""The purge job (vaultd/core/purge.py) on a real embedded store, with a clock of its own: it
destroys what is due and nothing else, one holder of the lease at a time, and gives the lease up
when it closes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest_asyncio

from tests.storage.contract import BASE_TIME, create, new_env
from vaultd.core.purge import BATCH, PurgeJob
from vaultd.storage import SqliteStore
from vaultd.storage.records import DeletedObject

RETENTION = timedelta(days=30)
LEASE = timedelta(minutes=1)


class Clock:
    def __init__(self) -> None:
        self.now = BASE_TIME

    def __call__(self):  # type: ignore[no-untyped-def]
        return self.now


@pytest_asyncio.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    opened = SqliteStore(tmp_path / "vaultd.db")
    yield opened
    await opened.close()


def job(store: SqliteStore, owner: str, clock: Clock, purged: list[DeletedObject]) -> PurgeJob:
    async def record(deleted: DeletedObject) -> None:
        purged.append(deleted)

    return PurgeJob(
        store,
        owner,
        retention=RETENTION,
        interval=timedelta(seconds=60),
        lease=LEASE,
        on_purged=record,
        clock=clock,
    )


async def test_only_due_objects_are_purged_by_one_holder_at_a_time(store: SqliteStore) -> None:
    env, clock, purged = new_env(), Clock(), []  # type: list[DeletedObject]
    due = [await create(store, env) for _ in range(BATCH + 5)]  # more than one batch
    recent, live = await create(store, env), await create(store, env)
    for obj in due:
        await store.delete_object(env, obj.id, None, BASE_TIME - RETENTION - timedelta(hours=1))
    await store.delete_object(env, recent.id, None, BASE_TIME - RETENTION + timedelta(hours=1))
    first, second = job(store, "a", clock, purged), job(store, "b", clock, purged)

    assert await first.run_once() == len(due)
    assert {d.object_id for d in purged} == {o.id for o in due}
    assert await store.get_object(env, live.id) == live
    assert await store.due_for_purge(env, clock.now - RETENTION, 10) == []
    assert await store.undelete_object(env, recent.id, BASE_TIME - RETENTION)

    # `a` holds the lease: `b` purges nothing, even what is due, until the lease runs out.
    late = await create(store, env)
    await store.delete_object(env, late.id, None, BASE_TIME - RETENTION - timedelta(hours=1))
    assert await second.run_once() == 0
    assert await store.due_for_purge(env, clock.now - RETENTION, 10) != []
    clock.now += LEASE + timedelta(seconds=1)
    assert await second.run_once() == 1
    assert purged[-1] == DeletedObject(env, late.id, BASE_TIME - RETENTION - timedelta(hours=1))
    assert await store.get_object(env, recent.id) == recent


async def test_closing_gives_the_lease_up_at_once(store: SqliteStore) -> None:
    clock, purged = Clock(), []  # type: list[DeletedObject]
    first, second = job(store, "a", clock, purged), job(store, "b", clock, purged)
    await first.run_once()
    assert not await store.take_lease("purge", "b", clock.now + LEASE, clock.now)
    await first.close()
    assert await store.take_lease("purge", "b", clock.now + LEASE, clock.now)
    # A job that never held the lease writes nothing when it closes.
    await job(store, "c", clock, purged).close()
    assert not await store.take_lease("purge", "a", clock.now + LEASE, clock.now)
    assert second.owner == "b"
