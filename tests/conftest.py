"""Shared fixtures: one private redis-server per session, and the stores on top of it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from tests.support.redis_server import RedisServer
from tests.support.redis_topologies import RedisClusterSet, RedisSentinelSet
from vaultd.storage import RedisStore, SqliteStore, Store

# The KMS stand-ins, shared by the provider, BYOK, fault and benchmark tests (one each per session).
pytest_plugins = [
    "tests.standins.aws",
    "tests.standins.gcp",
    "tests.standins.azure",
    "tests.standins.hcvault",
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
