"""A vaultd per store for the key lifecycle tests: a short KEK cache TTL (a rewrap job waits
one TTL after a rotation before it scans), unthrottled rewrap jobs and a short lease."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest

from tests.server.conftest import settings_for
from tests.support.auth import BOOTSTRAP_API_KEY, add_api_key, channel
from tests.support.grpc_errors import details_of
from vaultd.core.objects import Actor, ObjectVault
from vaultd.server import Vaultd, start
from vaultd.v1 import admin_service_pb2 as apb
from vaultd.v1 import admin_service_pb2_grpc as apb_grpc
from vaultd.v1 import key_service_pb2_grpc as kpb_grpc
from vaultd.v1 import object_service_pb2_grpc as pb_grpc

CACHE_TTL = 0.2
LEASE = 2.0
ACTOR = Actor("tests", "lifecycle seeding")


@dataclass
class Lifecycle:
    kind: str
    vaultd: Vaultd
    channel: grpc.aio.Channel

    @property
    def objects(self) -> pb_grpc.ObjectServiceStub:
        return pb_grpc.ObjectServiceStub(self.channel)

    @property
    def keys(self) -> kpb_grpc.KeyServiceStub:
        return kpb_grpc.KeyServiceStub(self.channel)

    @property
    def admin(self) -> apb_grpc.AdminServiceStub:
        return apb_grpc.AdminServiceStub(self.channel)

    def vault(self) -> ObjectVault:
        """The server's own object vault (same store, same keyring), to seed many objects
        without a gRPC call each."""
        return ObjectVault(self.vaultd.store, self.vaultd.keyring)


def new_org() -> dict[str, str]:
    return {"organization_id": f"org_{uuid.uuid4().hex[:12]}"}


def item(context: dict[str, str]) -> str:
    ((key, value),) = context.items()
    return f"{key}={value}"


def items(*contexts: dict[str, str]) -> apb.KekSelector:
    return apb.KekSelector(items=[item(c) for c in contexts])


async def wait_job(admin: apb_grpc.AdminServiceStub, job_id: str) -> apb.RewrapJob:
    """The job once it is no longer running (polled; bounded so a hang fails the test)."""
    for _ in range(3000):
        job = (await admin.GetRewrapJob(apb.GetRewrapJobRequest(id=job_id))).job
        if job.state != apb.REWRAP_STATE_RUNNING:
            return job
        await asyncio.sleep(0.05)
    raise AssertionError(f"rewrap job {job_id} still running: {job}")


async def refused(call, code: grpc.StatusCode, reason: str) -> str:  # type: ignore[no-untyped-def]
    """Await a call that must fail with `code` and `reason`; its message."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    details = details_of(caught.value)
    assert (details.code, details.reason) == (code, reason), details
    return details.message


@pytest.fixture(scope="session", params=["sqlite", "redis"])
async def lifecycle(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Lifecycle]:
    # A database of its own: `--all` and the job list must not see other tests' servers' KEKs.
    redis_url = None
    if request.param == "redis":
        redis_url = request.getfixturevalue("redis_server").url.removesuffix("/0") + "/7"
    settings = settings_for(
        tmp_path_factory.mktemp(f"lifecycle-{request.param}"),
        redis_url,
        kek_cache={"ttl_seconds": CACHE_TTL, "max_entries": 10_000},
        keys={"rewrap_versions_per_second": 0, "rewrap_lease_seconds": LEASE},
    )
    vaultd = await start(settings)
    await add_api_key(vaultd.store, BOOTSTRAP_API_KEY, name="bootstrap")
    chan = channel(f"127.0.0.1:{vaultd.port}")
    yield Lifecycle(request.param, vaultd, chan)
    await chan.close()
    await vaultd.stop(None)
