"""Class 5, KEK quotas: a caller cannot fill the store and the KMS with KEKs.

Each new context item makes a KEK that lives until shredded. A leaked `keys:use` key sending a
fresh item per call is held to its per-key rate, an environment to its own rate and total, each
refused with RESOURCE_EXHAUSTED / KEK_QUOTA_EXCEEDED (with RetryInfo when waiting helps); the
refused call makes no KEK, items that have one keep working, other environments are untouched.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.server.conftest import settings_for
from tests.support.auth import add_api_key, channel
from tests.support.grpc_errors import ErrorDetails, details_of
from vaultd.server import Vaultd, start
from vaultd.v1 import key_service_pb2 as kpb
from vaultd.v1 import key_service_pb2_grpc as kpb_grpc

USER_KEY = "sk_" + "security-quota-user".ljust(43, "0")
OTHER_ENV_KEY = "sk_" + "security-quota-other-env".ljust(43, "0")


async def quota_vaultd(tmp_path: Path, **quota: Any) -> Vaultd:
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
