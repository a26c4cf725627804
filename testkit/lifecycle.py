"""Helpers of the key lifecycle tests (rotate, retire, shred, rewrap): key contexts of their own,
KEK selectors, and waiting for a rewrap job. The server is tests/conftest.py's `lifecycle`."""

from __future__ import annotations

import asyncio
import uuid

from vaultd.v1 import admin_service_pb2 as apb
from vaultd.v1 import admin_service_pb2_grpc as apb_grpc

# The lifecycle server's KEK cache TTL: a rewrap job waits one TTL after a rotation before it
# scans, so a short one keeps the tests quick.
CACHE_TTL = 0.2
# Its rewrap lease: how long a job that lost its worker waits before another takes it over.
LEASE = 2.0


def new_org() -> dict[str, str]:
    """A key context no other test uses, so its KEKs are the test's own."""
    return {"organization_id": f"org_{uuid.uuid4().hex[:12]}"}


def item(context: dict[str, str]) -> str:
    """The `key=value` item naming the KEK of a one-entry key context."""
    ((key, value),) = context.items()
    return f"{key}={value}"


def items(*contexts: dict[str, str]) -> apb.KekSelector:
    return apb.KekSelector(items=[item(c) for c in contexts])


async def wait_job(admin: apb_grpc.AdminServiceStub, job_id: str) -> apb.RewrapJob:
    """The job once it is no longer running (polled; bounded so a hang fails the test)."""
    for _ in range(3000):
        job: apb.RewrapJob = (await admin.GetRewrapJob(apb.GetRewrapJobRequest(id=job_id))).job
        if job.state != apb.REWRAP_STATE_RUNNING:
            return job
        await asyncio.sleep(0.05)
    raise AssertionError(f"rewrap job {job_id} still running: {job}")
