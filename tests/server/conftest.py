"""A real vaultd on a real port, once per session per store, and stubs talking to it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from vaultd.server import Vaultd, start
from vaultd.settings import Settings
from vaultd.v1 import object_service_pb2_grpc


@dataclass
class Running:
    kind: str
    vaultd: Vaultd
    data_dir: Path
    redis_url: str | None
    channel: grpc.aio.Channel

    @property
    def objects(self) -> object_service_pb2_grpc.ObjectServiceStub:
        return object_service_pb2_grpc.ObjectServiceStub(self.channel)


def settings_for(data_dir: Path, redis_url: str | None, **extra: object) -> Settings:
    return Settings(listen="127.0.0.1:0", data_dir=data_dir, redis_url=redis_url, **extra)


@pytest.fixture(scope="session", params=["sqlite", "redis"])
async def running(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Running]:
    redis_url = request.getfixturevalue("redis_server").url if request.param == "redis" else None
    data_dir = tmp_path_factory.mktemp(f"vaultd-{request.param}")
    vaultd = await start(settings_for(data_dir, redis_url, max_value_bytes=64 * 1024))
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{vaultd.port}")
    yield Running(request.param, vaultd, data_dir, redis_url, channel)
    await channel.close()
    await vaultd.stop(None)


@pytest.fixture
def objects(running: Running) -> object_service_pb2_grpc.ObjectServiceStub:
    return running.objects
