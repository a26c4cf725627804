"""Shared fixtures: one private redis-server per session, and the stores on top of it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from tests.server.conftest import Running, settings_for
from tests.support.auth import BOOTSTRAP_API_KEY, add_api_key, channel
from tests.support.redis_server import RedisServer
from tests.support.redis_topologies import RedisClusterSet, RedisSentinelSet
from vaultd.server import start
from vaultd.storage import RedisStore, SqliteStore, Store
from vaultd.v1 import object_service_pb2_grpc

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
    vaultd = await start(settings_for(data_dir, redis_url, max_value_bytes=64 * 1024))
    # The shared Redis may have API keys from other tests already, so bootstrap may not have
    # happened: make sure the key exists.
    await add_api_key(vaultd.store, BOOTSTRAP_API_KEY, name="bootstrap")
    client = channel(f"127.0.0.1:{vaultd.port}")
    yield Running(request.param, vaultd, data_dir, redis_url, client)
    await client.close()
    await vaultd.stop(None)


@pytest.fixture
def objects(running: Running) -> object_service_pb2_grpc.ObjectServiceStub:
    return running.objects
