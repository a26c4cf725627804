"""How many Redis round trips each hot-path store call costs, counted rather than read off code.

Two counts for each call: the requests the client sent (every redis-py round trip is one
`send_packed_command`, a pipeline included, followed by reading its replies) and the commands
the server ran (INFO commandstats, where a script is one EVALSHA plus the commands inside it).
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio
from redis.asyncio import Redis
from redis.asyncio.connection import Connection
from redis.exceptions import ResponseError

from testkit.redis_server import RedisServer
from testkit.slow_proxy import SlowProxy
from tests.storage.contract import new_env, new_event, new_object, new_version
from vaultd.storage import RedisStore
from vaultd.storage.errors import StoreUnavailable
from vaultd.storage.keys import Kind, key


@pytest.fixture(scope="module")
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server for this module alone: INFO commandstats counts every client's commands,
    and the session's shared server also serves other suites' background work (rewrap jobs)."""
    with RedisServer(tmp_path_factory.mktemp("round-trips")) as server:
        yield server


class CountingConnection(Connection):
    sent = 0

    async def send_packed_command(self, *args: Any, **kwargs: Any) -> None:
        CountingConnection.sent += 1
        await super().send_packed_command(*args, **kwargs)


@pytest_asyncio.fixture
async def counted(own_redis: RedisServer) -> AsyncIterator[RedisStore]:
    store = RedisStore(Redis.from_url(own_redis.url, connection_class=CountingConnection))
    yield store
    await store.close()


async def commands(own_redis: RedisServer) -> dict[str, int]:
    """Calls per command so far, from the server's own counters."""
    async with Redis.from_url(own_redis.url) as client:
        stats = await client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


async def cost(own_redis: RedisServer, call: Any) -> tuple[int, dict[str, int]]:
    """(round trips, commands run by the server) of awaiting `call`."""
    before_sent, before = CountingConnection.sent, await commands(own_redis)
    await call
    after_sent, after = CountingConnection.sent, await commands(own_redis)
    ran = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    for own in ("info", "hello", "client|setinfo", "select"):  # the counting client's own
        ran.pop(own, None)
    return after_sent - before_sent, {k: n for k, n in ran.items() if n}


async def test_create_get_and_update_are_one_round_trip_each(
    counted: RedisStore, own_redis: RedisServer
) -> None:
    env = new_env()
    # The first use of each script loads it (EVALSHA, NOSCRIPT, SCRIPT LOAD); then it is cached.
    warm = new_object(env)
    await counted.create_object(warm)
    await counted.get_object(env, warm.id)
    await counted.update_object(env, warm.id, new_version(), None)

    obj = new_object(env)
    trips, ran = await cost(own_redis, counted.create_object(obj))
    assert (trips, ran.get("evalsha")) == (1, 1)
    trips, ran = await cost(own_redis, counted.get_object(env, obj.id))
    assert (trips, ran.get("evalsha")) == (1, 1)
    version = new_version()
    trips, ran = await cost(
        own_redis, counted.update_object(env, obj.id, version, obj.version.version_id)
    )
    assert (trips, ran.get("evalsha")) == (1, 1)


async def test_a_batch_of_audit_events_is_one_round_trip(
    counted: RedisStore, own_redis: RedisServer
) -> None:
    keep = datetime.now(UTC) - timedelta(days=1)
    await counted.ping()  # connects (CLIENT SETINFO and the like) before counting starts
    batch = [new_event(new_env() if n % 2 else "default") for n in range(40)]
    trips, ran = await cost(own_redis, counted.append_audit_events(batch, keep))
    assert trips == 1
    assert ran == {"xadd": 40}


async def test_concurrent_reads_and_audit_events_share_one_round_trip(
    counted: RedisStore, own_redis: RedisServer
) -> None:
    env = new_env()
    objects = [new_object(env) for _ in range(10)]
    for obj in objects:
        await counted.create_object(obj)  # also loads the scripts
    keep = datetime.now(UTC) - timedelta(days=1)
    events = [new_event(env) for _ in range(3)]

    async def together() -> list[Any]:
        reads = [counted.get_object(env, obj.id) for obj in objects]
        return await asyncio.gather(*reads, counted.append_audit_events(events, keep))

    trips, ran = await cost(own_redis, together())
    # llen: a current version's number is how many versions the object has.
    expected = {"evalsha": 10, "hmget": 10, "hget": 10, "lindex": 10, "llen": 10, "xadd": 3}
    assert (trips, ran) == (1, expected)


async def test_a_command_failing_in_a_shared_pipeline_fails_only_its_caller(
    counted: RedisStore, own_redis: RedisServer
) -> None:
    env = new_env()
    obj = new_object(env)
    await counted.create_object(obj)
    # An object key of the wrong type: its read script fails inside Redis, alone.
    broken = new_object(env)
    async with Redis.from_url(own_redis.url) as raw:
        await raw.set(key(env, Kind.OBJECT, broken.id), b"not a hash")
    good, bad = await asyncio.gather(
        counted.get_object(env, obj.id), counted.get_object(env, broken.id), return_exceptions=True
    )
    assert good == obj
    assert isinstance(bad, ResponseError)


async def test_a_script_the_server_forgot_is_loaded_again(
    counted: RedisStore, own_redis: RedisServer
) -> None:
    env = new_env()
    obj = new_object(env)
    await counted.create_object(obj)
    async with Redis.from_url(own_redis.url) as raw:
        await raw.script_flush()  # as after a restart or a failover
    assert await counted.get_object(env, obj.id) == obj


async def _client_ids(own_redis: RedisServer) -> set[str]:
    """The ids of the clients connected now, other than the asking one."""
    async with Redis.from_url(own_redis.url) as raw:
        me = str(await raw.client_id())
        return {c["id"] for c in await raw.client_list() if c["id"] != me}


async def _kill(own_redis: RedisServer, client_id: str) -> None:
    async with Redis.from_url(own_redis.url) as raw:
        assert await raw.client_kill_filter(_id=client_id) == 1


async def test_a_connection_the_server_closed_while_idle_is_replaced(
    own_redis: RedisServer,
) -> None:
    others = await _client_ids(own_redis)
    store = RedisStore(Redis.from_url(own_redis.url))
    try:
        env = new_env()
        obj = new_object(env)
        await store.create_object(obj)
        held = await _client_ids(own_redis) - others  # the auto-pipeline's, and the pool's
        for client_id in held:
            await _kill(own_redis, client_id)  # as the server's idle `timeout` does
        await asyncio.sleep(0.1)  # the close reaches the client's event loop
        assert await store.get_object(env, obj.id) == obj  # not StoreUnavailable
        replacements = await _client_ids(own_redis) - others
        assert replacements and not replacements & held
    finally:
        await store.close()


async def test_a_connection_lost_mid_batch_fails_its_calls_and_is_replaced(
    own_redis: RedisServer,
) -> None:
    proxy = SlowProxy(own_redis.port)
    await proxy.start()
    others = await _client_ids(own_redis)
    store = RedisStore(Redis.from_url(f"redis://127.0.0.1:{proxy.port}/0"))
    try:
        env = new_env()
        obj = new_object(env)
        await store.create_object(obj)
        (held,) = await _client_ids(own_redis) - others
        proxy.delay = 0.5  # the next read waits in the proxy, sent but not yet at Redis
        read = asyncio.create_task(store.get_object(env, obj.id))
        await asyncio.sleep(0.1)
        await _kill(own_redis, held)  # the link drops with the read in flight
        with pytest.raises(StoreUnavailable):
            await read
        proxy.delay = 0.0
        assert await store.get_object(env, obj.id) == obj  # a fresh connection, in step
        assert held not in await _client_ids(own_redis)
    finally:
        await store.close()
        await proxy.close()


async def test_a_failed_batch_leaves_no_unretrieved_errors(own_redis: RedisServer) -> None:
    # Every command of a failed batch gets the error; none may be left for asyncio to report
    # as "Future exception was never retrieved" (an ERROR line per command, with traceback).
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    proxy = SlowProxy(own_redis.port)
    await proxy.start()
    store = RedisStore(Redis.from_url(f"redis://127.0.0.1:{proxy.port}/0"))
    try:
        env = new_env()
        events = [new_event(env) for _ in range(3)]
        await store.append_audit_events(events, datetime.now(UTC) - timedelta(days=1))
        await proxy.close()  # the link drops; the next batch cannot be sent or answered
        try:
            await store.append_audit_events(events, datetime.now(UTC) - timedelta(days=1))
        except StoreUnavailable:
            pass  # expected; not kept, so its traceback's frames can be collected below
        else:
            pytest.fail("a batch over a dropped link was reported stored")
        for _ in range(2):  # futures report unretrieved errors when they are collected
            await asyncio.sleep(0)
            gc.collect()
        assert [c.get("message") for c in reported] == []
    finally:
        loop.set_exception_handler(None)
        await store.close()
