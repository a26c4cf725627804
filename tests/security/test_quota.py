"""Class 5, KEK quotas: a caller cannot fill the store and the KMS with KEKs.

Each new context item makes a KEK that lives until shredded. A leaked `keys:use` key sending a
fresh item per call is held to its per-key rate, an environment to its own rate and total, each
refused with RESOURCE_EXHAUSTED / KEK_QUOTA_EXCEEDED (with RetryInfo when waiting helps); the
refused call makes no KEK, items that have one keep working, other environments are untouched.
A key's total is counted in the store: restarting the server (or adding workers) does not
give a leaked key a fresh allowance.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import grpc
import pytest

from testkit.auth import add_api_key, channel
from testkit.grpc_errors import ErrorDetails, details_of
from testkit.redis_server import RedisServer
from testkit.running import settings_for
from vaultd.server import Vaultd, start
from vaultd.storage.base import NewKekCounts
from vaultd.v1 import key_service_pb2 as kpb
from vaultd.v1 import key_service_pb2_grpc as kpb_grpc

USER_KEY = "sk_" + "security-quota-user".ljust(43, "0")
OTHER_ENV_KEY = "sk_" + "security-quota-other-env".ljust(43, "0")


async def quota_vaultd(tmp_path: Path, **quota: Any) -> Vaultd:
    quota.setdefault("per_key_total", 0)
    vaultd = await start(settings_for(tmp_path / "data", None, kek_quota=quota))
    await add_api_key(vaultd.store, USER_KEY, permissions=("keys:use",))
    await add_api_key(vaultd.store, OTHER_ENV_KEY, environment_id="other")
    return vaultd


@pytest.fixture
async def rated(tmp_path: Path) -> AsyncIterator[Vaultd]:
    vaultd = await quota_vaultd(
        tmp_path, per_key_per_minute=3, per_environment_per_minute=5, per_environment_total=0
    )
    yield vaultd
    await vaultd.stop(None)


def fresh() -> dict[str, str]:
    return {"organization_id": f"org_{uuid.uuid4().hex}"}


async def data_key(chan: grpc.aio.Channel, context: dict[str, str]) -> ErrorDetails | None:
    try:
        await kpb_grpc.KeyServiceStub(chan).CreateDataKey(
            kpb.CreateDataKeyRequest(key_context=context)
        )
    except grpc.aio.AioRpcError as error:
        return details_of(error)
    return None


async def test_new_keks_per_key_and_per_environment_are_rate_limited(rated: Vaultd) -> None:
    target = f"127.0.0.1:{rated.port}"
    async with channel(target, USER_KEY) as user, channel(target) as admin:
        first = fresh()
        for context in [first, fresh(), fresh()]:
            assert await data_key(user, context) is None
        refused = await data_key(user, fresh())
        assert refused is not None
        assert refused.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert refused.reason == "KEK_QUOTA_EXCEEDED" and refused.domain == "vaultd"
        assert refused.metadata == {"quota": "per_key_per_minute", "limit": "3"}
        assert refused.retry_delay is not None and 0 < refused.retry_delay <= 20
        # Nothing else changed: the refused call made no KEK; an item with a KEK still works.
        assert len(await rated.store.list_keks("default")) == 3
        assert await data_key(user, first) is None

        # The environment's own rate: 5 a minute, whoever asks.
        assert await data_key(admin, fresh()) is None
        assert await data_key(admin, fresh()) is None
        refused = await data_key(admin, fresh())
        assert refused is not None and refused.metadata["quota"] == "per_environment_per_minute"
        assert refused.retry_delay is not None and refused.retry_delay > 0
        assert len(await rated.store.list_keks("default")) == 5

    async with channel(target, OTHER_ENV_KEY) as other:
        assert await data_key(other, fresh()) is None, "another environment is not affected"


async def test_an_environment_has_a_total_of_keks(tmp_path: Path) -> None:
    vaultd = await quota_vaultd(
        tmp_path, per_key_per_minute=0, per_environment_per_minute=0, per_environment_total=2
    )
    try:
        async with channel(f"127.0.0.1:{vaultd.port}", USER_KEY) as user:
            assert await data_key(user, fresh()) is None
            assert await data_key(user, fresh()) is None
            refused = await data_key(user, fresh())
        assert refused is not None and refused.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert refused.metadata == {"quota": "per_environment_total", "limit": "2"}
        assert len(await vaultd.store.list_keks("default")) == 2
    finally:
        await vaultd.stop(None)


@pytest.fixture(params=["sqlite", "redis"])
def redis_url(request: pytest.FixtureRequest) -> str | None:
    if request.param == "sqlite":
        return None
    server: RedisServer = request.getfixturevalue("redis_server")
    return server.url


async def test_a_key_has_a_durable_total_of_keks(tmp_path: Path, redis_url: str | None) -> None:
    # Fresh secrets: on the shared Redis another test may hold the module's fixed ones.
    leaked, colleague = (f"sk_{uuid.uuid4().hex}{uuid.uuid4().hex[:11]}" for _ in range(2))
    settings = settings_for(
        tmp_path / "data",
        redis_url,
        kek_quota={
            "per_key_per_minute": 0,
            "per_environment_per_minute": 0,
            "per_environment_total": 0,
            "per_key_total": 3,
        },
    )
    vaultd = await start(settings)
    try:
        leaked_record = await add_api_key(vaultd.store, leaked, permissions=("keys:use",))
        await add_api_key(vaultd.store, colleague, permissions=("keys:use",))
        target = f"127.0.0.1:{vaultd.port}"
        made = [fresh() for _ in range(3)]
        async with channel(target, leaked) as user, channel(target, colleague) as other:
            for context in made:
                assert await data_key(user, context) is None
            keks_before = len(await vaultd.store.list_keks("default"))
            refused = await data_key(user, fresh())
            assert refused is not None and refused.code == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert refused.reason == "KEK_QUOTA_EXCEEDED" and refused.domain == "vaultd"
            assert refused.metadata == {"quota": "per_key_total", "limit": "3"}
            assert refused.retry_delay is None, "waiting does not help: no RetryInfo"
            # Nothing else changed: no KEK made; the key's items keep working; another key can.
            assert len(await vaultd.store.list_keks("default")) == keks_before
            assert await data_key(user, made[0]) is None
            assert await data_key(other, fresh()) is None
    finally:
        await vaultd.stop(None)

    # A restarted server (or another worker on the same store) reads the same count.
    vaultd = await start(settings)
    try:
        counts = cast(NewKekCounts, vaultd.store)
        assert await counts.new_keks_of("default", leaked_record.id) == 3
        async with channel(f"127.0.0.1:{vaultd.port}", leaked) as user:
            refused = await data_key(user, fresh())
            assert refused is not None
            assert refused.metadata == {"quota": "per_key_total", "limit": "3"}
            assert refused.retry_delay is None
            assert await data_key(user, made[1]) is None
    finally:
        await vaultd.stop(None)
