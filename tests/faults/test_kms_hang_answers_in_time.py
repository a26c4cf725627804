"""A hung KMS, end to end over gRPC: vaultd answers UNAVAILABLE with RetryInfo before the
client's deadline (3 s and 20 s), instead of the client seeing DEADLINE_EXCEEDED.

The API passes each call's deadline to the providers (providers.deadline.answer_within), so
their retries stop in time to answer. The status is the proof: an answer after the deadline
would be the client's DEADLINE_EXCEEDED. The times printed (run with -s) are measurements.
"""

from __future__ import annotations

import time
import uuid

import grpc
import pytest

from testkit.fault_load import AUTH
from testkit.grpc_errors import details_of
from testkit.slow_kms import Kms
from vaultd.v1 import object_service_pb2 as pb

pytestmark = pytest.mark.faults

HUNG_FOR = 60.0  # longer than any deadline below: the KMS never answers in time


@pytest.mark.parametrize("deadline", [3.0, 20.0])
async def test_a_hung_kms_is_unavailable_before_the_deadline(kms: Kms, deadline: float) -> None:
    kms.proxy.delay = HUNG_FOR
    name = f"hung-{uuid.uuid4().hex}"
    began = time.monotonic()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await kms.objects.CreateObject(
            pb.CreateObjectRequest(name=name, value=b"x", key_context=kms.tenant()),
            timeout=deadline,
            metadata=AUTH,
        )
    elapsed = time.monotonic() - began
    details = details_of(caught.value)
    assert (details.code, details.reason) == (
        grpc.StatusCode.UNAVAILABLE,
        "BACKEND_UNAVAILABLE",
    ), details
    assert details.metadata["key_uri"].startswith("gcp-kms://"), details
    assert details.retry_delay is not None and details.retry_delay > 0, details
    print(f"\nhung KMS, {deadline:.0f} s deadline: UNAVAILABLE after {elapsed:.2f} s")
    kms.proxy.delay = 0.0
