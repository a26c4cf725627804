"""More calls in flight than the Redis client has connections: they queue, none fails."""

from __future__ import annotations

import asyncio

from ulid import ULID

from testkit.redis_server import RedisServer
from vaultd.storage import RedisStore
from vaultd.storage.redis.urls import MAX_CONNECTIONS


async def test_a_burst_beyond_the_pool_size_waits_for_connections(
    redis_server: RedisServer,
) -> None:
    store = RedisStore.from_url(redis_server.url)
    try:
        burst = 3 * MAX_CONNECTIONS
        # redis-py's default pool refuses the 101st concurrent command (MaxConnectionsError):
        # a burst of requests would get UNAVAILABLE from a healthy Redis.
        replies = await asyncio.gather(
            *(store.get_object(f"env_pool{n}", f"secret_{ULID()}") for n in range(burst))
        )
        assert replies == [None] * burst
    finally:
        await store.close()
