"""vaultd killed with SIGKILL while its purge job destroys many deleted objects past their
retention (core/purge.py).

`vaultd serve` runs as its own process on the embedded store and on a private Redis (AOF, fsync
always), with a retention of seconds. Killed part way through the purge, it must have destroyed
nothing that was not due (live objects, and objects deleted too recently, are whole) and left
no object half purged; started again, the next holder of the purge lease (once the dead one's
has run out) destroys every due object that was left.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import grpc
import pytest
import pytest_asyncio

from testkit.auth import channel
from testkit.fault_load import API_KEY, FaultReport
from testkit.redis_server import RedisServer
from testkit.serving import ServeProcess, clean_env, wait_serving
from vaultd.storage import RedisStore, SqliteStore, Store
from vaultd.v1 import object_service_pb2 as pb
from vaultd.v1 import object_service_pb2_grpc as pb_grpc

pytestmark = pytest.mark.faults

DURABLE = ["--appendonly", "yes", "--appendfsync", "always"]
RETENTION_SECONDS = 6.0
LEASE_SECONDS = 2.0
# Enough that purging them takes a while on each store (a purge on SQLite also checkpoints).
DUE = {"sqlite": 300, "redis": 1500}
LIVE, RECENT = 40, 20
CONCURRENCY = 32
START_ATTEMPTS = 150
FAR_FUTURE = datetime(2999, 1, 1, tzinfo=UTC)
T = TypeVar("T")


@pytest.fixture(params=["sqlite", "redis"])
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServeProcess]:
    env = clean_env() | {
        "VAULTD_DATA_DIR": str(tmp_path / "data"),
        "VAULTD_BOOTSTRAP_API_KEY": API_KEY,
        "VAULTD_LOG_LEVEL": "warning",
        "VAULTD_ACCESS_LOG": "false",
        "VAULTD_DELETED_RETENTION_SECONDS": str(RETENTION_SECONDS),
        "VAULTD_PURGE_INTERVAL_SECONDS": "0.1",
        "VAULTD_PURGE_LEASE_SECONDS": str(LEASE_SECONDS),
    }
    redis: RedisServer | None = None
    if request.param == "redis":
        redis = RedisServer(tmp_path / "redis", extra_args=DURABLE)
        redis.start()
        env["VAULTD_REDIS_URL"] = redis.url
    process = ServeProcess(tmp_path, env)
    try:
        yield process
    finally:
        process.stop()
        if redis is not None:
            redis.stop()


@pytest_asyncio.fixture
async def looking(served: ServeProcess) -> AsyncIterator[Store]:
    """The store the server uses, opened by the test to look behind it."""
    url = served.env.get("VAULTD_REDIS_URL")
    data = Path(served.env["VAULTD_DATA_DIR"])
    store: Store = RedisStore.from_url(url) if url else SqliteStore(data / "vaultd.db")
    yield store
    await store.close()


async def _in_parallel(calls: list[Callable[[], Awaitable[T]]]) -> list[T]:
    limit = asyncio.Semaphore(CONCURRENCY)

    async def one(call: Callable[[], Awaitable[T]]) -> T:
        async with limit:
            return await call()

    return await asyncio.gather(*(one(c) for c in calls))


async def _create(stub: pb_grpc.ObjectServiceStub, count: int, tag: str) -> dict[str, bytes]:
    """`count` objects, each with a value of its own: id -> value."""
    values = [f"{tag}-{uuid.uuid4().hex}".encode() for _ in range(count)]

    def create(value: bytes) -> Callable[[], Awaitable[pb.CreateObjectResponse]]:
        request = pb.CreateObjectRequest(name=value.decode(), value=value, key_context={"t": tag})
        return lambda: stub.CreateObject(request)

    made = await _in_parallel([create(v) for v in values])
    return {m.metadata.id: v for m, v in zip(made, values, strict=True)}


async def _delete(stub: pb_grpc.ObjectServiceStub, ids: list[str]) -> None:
    def delete(object_id: str) -> Callable[[], Awaitable[pb.DeleteObjectResponse]]:
        return lambda: stub.DeleteObject(pb.DeleteObjectRequest(id=object_id))

    await _in_parallel([delete(i) for i in ids])


async def _deleted(store: Store) -> set[str]:
    """The ids of every object deleted and not purged yet."""
    return {d.object_id for d in await store.due_for_purge("default", FAR_FUTURE, 1_000_000)}


async def _walked(store: Store) -> dict[str, int]:
    """Every stored object (deleted ones too) with how many versions it has."""
    found: dict[str, int] = {}
    after = ""
    while batch := await store.scan_object_versions("default", after, 500):
        found |= {o.object_id: len(o.versions) for o in batch}
        after = batch[-1].object_id
    return found


async def _serving(process: ServeProcess) -> grpc.aio.Channel:
    target = await asyncio.to_thread(process.start)
    try:
        (await wait_serving(target, attempts=START_ATTEMPTS))
    except AssertionError:
        raise AssertionError(f"vaultd did not start; its log:\n{process.log_tail()}") from None
    return channel(target, API_KEY)


async def test_sigkill_during_a_purge_loses_nothing_not_due(
    served: ServeProcess, looking: Store, fault_report: FaultReport, request: pytest.FixtureRequest
) -> None:
    kind = request.node.callspec.params["served"]
    stub = pb_grpc.ObjectServiceStub(await _serving(served))
    due = await _create(stub, DUE[kind], "due")
    live = await _create(stub, LIVE, "live")
    recent = await _create(stub, RECENT, "recent")
    with fault_report.timed("delete due"):
        await _delete(stub, list(due))
    deleted_by = time.monotonic()

    # Deleted now, these are not due until long after the kill below.
    await asyncio.sleep(max(0.0, RETENTION_SECONDS - 1.0 - (time.monotonic() - deleted_by)))
    await _delete(stub, list(recent))
    with fault_report.timed("until mid-purge"):
        while len(left := await _deleted(looking) & set(due)) == len(due):
            assert time.monotonic() - deleted_by < RETENTION_SECONDS + 30, "no purge began"
            await asyncio.sleep(0.01)
    served.kill()
    left = await _deleted(looking) & set(due)
    fault_report.note("due", len(due))
    fault_report.note("purged before the kill", len(due) - len(left))
    assert left, "the purge finished before the kill: nothing was cut short"

    # Nothing not due was lost; nothing is half purged.
    walked = await _walked(looking)
    assert set(recent) <= await _deleted(looking)
    assert all(walked.get(i) == 1 for i in [*live, *recent])
    assert {i for i in due if i in walked} == left
    for object_id, value in live.items():
        stored = await looking.get_object("default", object_id)
        assert stored is not None and stored.version.size == len(value)

    # Started again: the next holder takes the lease once the dead one's runs out, and purges
    # what was left.
    stub = pb_grpc.ObjectServiceStub(await _serving(served))
    restarted = time.monotonic()
    with fault_report.timed("rest purged after restart"):
        while await _deleted(looking) & set(due):
            assert time.monotonic() - restarted < LEASE_SECONDS + 30, "the purge never resumed"
            await asyncio.sleep(0.1)
    assert not set(due) & set(await _walked(looking))
    for object_id, value in live.items():
        got = await stub.GetObject(pb.GetObjectRequest(id=object_id))
        assert got.object.value == value
    fault_report.writes_acknowledged = len(due) + len(live) + len(recent)
    fault_report.writes_verified = len(due) + len(live)
