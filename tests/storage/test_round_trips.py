"""How many Redis round trips each hot-path store call costs, counted rather than read off code.

Two counts for each call: the requests the client sent (every redis-py round trip is one
`send_packed_command`, a pipeline included, followed by reading its replies) and the commands
the server ran (INFO commandstats, where a script is one EVALSHA plus the commands inside it).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest_asyncio
from redis.asyncio import Redis
from redis.asyncio.connection import Connection

from tests.storage.test_contract import new_env, new_event, new_object, new_version
from tests.support.redis_server import RedisServer
from vaultd.storage import RedisStore


class CountingConnection(Connection):
    sent = 0

    async def send_packed_command(self, *args: Any, **kwargs: Any) -> None:
        CountingConnection.sent += 1
        await super().send_packed_command(*args, **kwargs)


@pytest_asyncio.fixture
async def counted(redis_server: RedisServer) -> AsyncIterator[RedisStore]:
    store = RedisStore(Redis.from_url(redis_server.url, connection_class=CountingConnection))
    yield store
    await store.close()


async def commands(redis_server: RedisServer) -> dict[str, int]:
    """Calls per command so far, from the server's own counters."""
    async with Redis.from_url(redis_server.url) as client:
        stats = await client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


async def cost(redis_server: RedisServer, call: Any) -> tuple[int, dict[str, int]]:
    """(round trips, commands run by the server) of awaiting `call`."""
    before_sent, before = CountingConnection.sent, await commands(redis_server)
    await call
    after_sent, after = CountingConnection.sent, await commands(redis_server)
    ran = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    for own in ("info", "hello", "client|setinfo", "select"):  # the counting client's own
        ran.pop(own, None)
    return after_sent - before_sent, {k: n for k, n in ran.items() if n}


async def test_create_get_and_update_are_one_round_trip_each(
    counted: RedisStore, redis_server: RedisServer
) -> None:
    env = new_env()
    # The first use of each script loads it (EVALSHA, NOSCRIPT, SCRIPT LOAD); then it is cached.
    warm = new_object(env)
    await counted.create_object(warm)
    await counted.get_object(env, warm.id)
    await counted.update_object(env, warm.id, new_version(), None)

    obj = new_object(env)
    trips, ran = await cost(redis_server, counted.create_object(obj))
    assert (trips, ran.get("evalsha")) == (1, 1)
    trips, ran = await cost(redis_server, counted.get_object(env, obj.id))
    assert (trips, ran.get("evalsha")) == (1, 1)
    version = new_version()
    trips, ran = await cost(
        redis_server, counted.update_object(env, obj.id, version, obj.version.version_id)
    )
    assert (trips, ran.get("evalsha")) == (1, 1)


async def test_a_batch_of_audit_events_is_one_round_trip(
    counted: RedisStore, redis_server: RedisServer
) -> None:
    keep = datetime.now(UTC) - timedelta(days=1)
    await counted.ping()  # connects (CLIENT SETINFO and the like) before counting starts
    batch = [new_event(new_env() if n % 2 else "default") for n in range(40)]
    trips, ran = await cost(redis_server, counted.append_audit_events(batch, keep))
    assert trips == 1
    assert ran == {"xadd": 40}
