"""Reading vaultd's rich error details back from a failed call, as any client would."""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2


@dataclass(frozen=True)
class ErrorDetails:
    code: grpc.StatusCode
    message: str
    reason: str
    domain: str
    metadata: dict[str, str]
    violations: list[tuple[str, str]]
    retry_delay: float | None = None


def details_of(error: grpc.aio.AioRpcError) -> ErrorDetails:
    raw = dict(error.trailing_metadata() or ()).get("grpc-status-details-bin")
    reason = domain = ""
    metadata: dict[str, str] = {}
    violations: list[tuple[str, str]] = []
    retry_delay: float | None = None
    if raw is not None:
        status = status_pb2.Status.FromString(raw)
        assert status.code == error.code().value[0], "details disagree with the status code"
        for packed in status.details:
            info = error_details_pb2.ErrorInfo()
            bad = error_details_pb2.BadRequest()
            retry = error_details_pb2.RetryInfo()
            if packed.Unpack(info):
                reason, domain, metadata = info.reason, info.domain, dict(info.metadata)
            elif packed.Unpack(bad):
                violations = [(v.field, v.description) for v in bad.field_violations]
            elif packed.Unpack(retry):
                retry_delay = retry.retry_delay.ToTimedelta().total_seconds()
    return ErrorDetails(
        error.code(), error.details() or "", reason, domain, metadata, violations, retry_delay
    )


async def refused(call: Awaitable[object], code: grpc.StatusCode, reason: str) -> str:
    """Await a call that must fail with `code` and `reason`; its message."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    details = details_of(caught.value)
    assert (details.code, details.reason) == (code, reason), details
    return details.message


async def expect_error(call: Awaitable[object], code: grpc.StatusCode, reason: str) -> ErrorDetails:
    """Await a call that must fail with `code` and `reason` in vaultd's error domain; its
    details, for the test to check further."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    details = details_of(caught.value)
    assert (details.code, details.reason) == (code, reason), details
    assert details.domain == "vaultd"
    return details
