"""One HTTP-enabled vaultd per store for the WorkOS SDK tests (testkit/http_server.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from testkit.http_server import HttpVaultd, http_vaultd
from testkit.redis_dbs import RedisDb, redis_db_url


@pytest.fixture(scope="session", params=["sqlite", "redis"])
async def http_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[HttpVaultd]:
    redis_url = None
    if request.param == "redis":
        redis_url = redis_db_url(request.getfixturevalue("redis_server").url, RedisDb.WORKOS_SDK)
    async with http_vaultd(
        request.param,
        tmp_path_factory.mktemp(f"workos-{request.param}"),
        redis_url,
        max_value_bytes=64 * 1024,
    ) as server:
        yield server
