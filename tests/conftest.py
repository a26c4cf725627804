"""Shared fixtures: one private redis-server per session, the stores on top of it, and the
session-wide vaultds (built by testkit/running.py). Helpers live in testkit/, not here."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from testkit.lifecycle import CACHE_TTL, LEASE
from testkit.redis_dbs import RedisDb, redis_db_url
from testkit.redis_server import RedisServer
from testkit.redis_topologies import RedisClusterSet, RedisSentinelSet
from testkit.running import Running, running_vaultd
from vaultd.storage import RedisStore, SqliteStore, Store
from vaultd.v1 import object_service_pb2_grpc

# The KMS stand-ins, shared by the provider, BYOK, fault and benchmark tests (one each per session).
pytest_plugins = [
    "testkit.standins.aws",
    "testkit.standins.gcp",
    "testkit.standins.azure",
    "testkit.standins.hcvault",
]


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A real redis-server on its own port; tests share it and keep apart by unique ids."""
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterSet]:
    """A real 3-master Redis Cluster on private ports."""
    with RedisClusterSet(tmp_path_factory.mktemp("cluster")) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def redis_sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisSentinelSet]:
    """A real master + replica + sentinel on private ports."""
    with RedisSentinelSet(tmp_path_factory.mktemp("sentinel")) as sentinel:
        yield sentinel


@pytest_asyncio.fixture(scope="session")
async def cluster_store(redis_cluster: RedisClusterSet) -> AsyncIterator[RedisStore]:
    store = RedisStore.from_url(redis_cluster.url)
    yield store
    await store.close()


@pytest_asyncio.fixture(scope="session")
async def sentinel_store(redis_sentinel: RedisSentinelSet) -> AsyncIterator[RedisStore]:
    store = RedisStore.from_url(redis_sentinel.url)
    yield store
    await store.close()


@pytest_asyncio.fixture(scope="session")
async def redis_store(redis_server: RedisServer) -> AsyncIterator[RedisStore]:
    store = RedisStore.from_url(redis_server.url)
    yield store
    await store.close()


@pytest_asyncio.fixture(scope="session")
async def sqlite_store(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[SqliteStore]:
    store = SqliteStore(tmp_path_factory.mktemp("sqlite") / "vaultd.db")
    yield store
    await store.close()


@pytest.fixture(params=["sqlite", "redis", "cluster", "sentinel"])
def store(request: pytest.FixtureRequest) -> Store:
    """Each store in turn, so one suite proves both keep the same contract."""
    chosen: Store = request.getfixturevalue(f"{request.param}_store")
    return chosen


# One vaultd per store for the whole session, shared by every suite: two servers with different
# root keys on one Redis database would each find the other's KEKs unwrappable.
@pytest.fixture(scope="session", params=["sqlite", "redis", "cluster"])
async def running(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Running]:
    redis_url = {
        "sqlite": lambda: None,
        "redis": lambda: request.getfixturevalue("redis_server").url,
        "cluster": lambda: request.getfixturevalue("redis_cluster").url,
    }[request.param]()
    data_dir = tmp_path_factory.mktemp(f"vaultd-{request.param}")
    async with running_vaultd(
        request.param, data_dir, redis_url, max_value_bytes=64 * 1024
    ) as server:
        yield server


# The key lifecycle tests' vaultd per store (tests/lifecycle, tests/security's domain
# migration): a short KEK cache TTL (a rewrap job waits one TTL after a rotation before it
# scans), unthrottled rewrap jobs and a short lease.
@pytest.fixture(scope="session", params=["sqlite", "redis"])
async def lifecycle(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Running]:
    # A database of its own: `--all` and the job list must not see other tests' servers' KEKs.
    redis_url = None
    if request.param == "redis":
        redis_url = redis_db_url(request.getfixturevalue("redis_server").url, RedisDb.LIFECYCLE)
    async with running_vaultd(
        request.param,
        tmp_path_factory.mktemp(f"lifecycle-{request.param}"),
        redis_url,
        kek_cache={"ttl_seconds": CACHE_TTL, "max_entries": 10_000},
        keys={"rewrap_versions_per_second": 0, "rewrap_lease_seconds": LEASE},
    ) as server:
        yield server


@pytest.fixture
def objects(running: Running) -> object_service_pb2_grpc.ObjectServiceStub:
    return running.objects
