"""Fixtures of the storage suites."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio
from redis.asyncio import Redis

from testkit.redis_server import RedisServer


@pytest_asyncio.fixture(scope="session")
async def redis_client(redis_server: RedisServer) -> AsyncIterator[Redis]:
    """A raw client, to look behind the store."""
    client = Redis.from_url(redis_server.url)
    yield client
    await client.aclose()
