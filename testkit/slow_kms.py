"""A vaultd whose BYOK tenants' KEKs live in a private Google Cloud KMS stand-in reached through
a SlowProxy, for the fault tests of a slow, hung or flaky KMS (tests/faults; the `kms` fixture
is in tests/faults/conftest.py)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TypeVar

import grpc
import pytest

from testkit.fault_load import AUTH, OK, FaultReport, recorded
from testkit.slow_proxy import SlowProxy
from testkit.standins.gcp import GcpKmsStandIn
from vaultd.core.keyring import kek_id_for
from vaultd.server import Vaultd
from vaultd.v1 import object_service_pb2 as pb
from vaultd.v1 import object_service_pb2_grpc as pb_grpc

T = TypeVar("T")

# Every organization_id starting org_ is the stand-in's tenant (the load's contexts too).
TENANT_ITEM = "organization_id"
TENANT_PREFIX = "org_"
GENEROUS_DEADLINE = 10.0


@dataclass
class Kms:
    """vaultd with a BYOK rule to a private stand-in reached through a SlowProxy."""

    standin: GcpKmsStandIn
    proxy: SlowProxy
    vaultd: Vaultd
    channel: grpc.aio.Channel
    report: FaultReport
    environment_id: str = ""

    @property
    def objects(self) -> pb_grpc.ObjectServiceStub:
        return pb_grpc.ObjectServiceStub(self.channel)

    def tenant(self) -> dict[str, str]:
        """A context governed by the stand-in's key that nothing used yet: its KEK is cold."""
        return {TENANT_ITEM: f"{TENANT_PREFIX}{uuid.uuid4().hex[:12]}"}

    @property
    def wraps(self) -> int:
        return self.standin.calls["wrap"]

    @property
    def unwraps(self) -> int:
        return self.standin.calls["unwrap"]

    async def call(self, call: Awaitable[T], deadline: float) -> tuple[T | None, str, float]:
        """The reply (None on error), its status and how long it took against `deadline`."""
        began = time.monotonic()
        reply, status = await recorded(self.report, call)
        elapsed = time.monotonic() - began
        # Reported, not asserted: the client and this in-process server share one event loop,
        # which a loaded machine can starve for seconds. The statuses (DEADLINE_EXCEEDED or
        # UNAVAILABLE, never a late OK or INTERNAL) and "nothing written" carry the promise.
        overdue = round(max(0.0, elapsed - deadline), 2)
        key = "most seconds a call returned past its deadline"
        self.report.note(key, max(overdue, float(self.report.notes.get(key, 0.0))))
        return reply, status, elapsed

    async def create(
        self, name: str, context: dict[str, str], deadline: float = GENEROUS_DEADLINE
    ) -> tuple[pb.CreateObjectResponse | None, str, float]:
        request = pb.CreateObjectRequest(name=name, value=name.encode(), key_context=context)
        created = await self.call(
            self.objects.CreateObject(request, timeout=deadline, metadata=AUTH), deadline
        )
        if created[1] == OK:
            self.report.writes_acknowledged += 1
        return created

    async def read(
        self, object_id: str, deadline: float = GENEROUS_DEADLINE
    ) -> tuple[pb.GetObjectResponse | None, str, float]:
        request = pb.GetObjectRequest(id=object_id)
        return await self.call(
            self.objects.GetObject(request, timeout=deadline, metadata=AUTH), deadline
        )

    async def read_back(self, object_id: str, value: bytes) -> None:
        got, status, _ = await self.read(object_id)
        assert status == OK and got is not None, status
        assert got.object.value == value
        self.report.writes_verified += 1

    async def assert_nothing_written(self, name: str, context: dict[str, str]) -> None:
        """No object by that name, and no KEK version for the tenant's item in the store."""
        request = pb.GetObjectByNameRequest(name=name)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await self.objects.GetObjectByName(request, timeout=GENEROUS_DEADLINE, metadata=AUTH)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND, caught.value
        kek_id = kek_id_for(self.environment_id, TENANT_ITEM, context[TENANT_ITEM])
        kek = await self.vaultd.store.get_kek(self.environment_id, kek_id)
        assert kek is None, f"KEK stored for a KEK that was never wrapped: {kek}"
