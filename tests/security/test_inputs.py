"""Class 6: every client input gets a clear status, never INTERNAL.

An attacker with a low-privilege or admin key sends cursors, limits and filters no honest
client would: numbers past what the store can hold, ids past Redis's stream-id range. Each is
refused with INVALID_ARGUMENT / INVALID_CURSOR (or answered with an empty page), on the
embedded store and on a real redis-server, and the audit trail is unchanged by the probe.
"""

from __future__ import annotations

import grpc
import pytest

from testkit.grpc_errors import details_of
from testkit.running import Running
from vaultd.v1 import admin_service_pb2 as apb
from vaultd.v1 import admin_service_pb2_grpc as apb_grpc
from vaultd.v1 import object_service_pb2 as opb

# Past SQLite's INTEGER (2**63 - 1) and Redis's stream-id halves (2**64 - 1).
HUGE_CURSORS = [
    "9" * 19,
    "9" * 20,
    "9" * 40,
    str(2**63),
    str(2**64),
    "18446744073709551616-0",
    "0-18446744073709551616",
    "99999999999999999999-99999999999999999999",
    "18446744073709551615-18446744073709551615",
]


async def _audit_count(running: Running) -> int:
    admin = apb_grpc.AdminServiceStub(running.channel)
    total, after = 0, ""
    while True:
        page = await admin.ListAuditEvents(apb.ListAuditEventsRequest(limit=1000, after=after))
        total += len(page.events)
        if len(page.events) < 1000:
            return total
        after = page.cursor


@pytest.mark.parametrize("after", HUGE_CURSORS)
async def test_a_huge_audit_cursor_is_refused_not_internal(running: Running, after: str) -> None:
    if running.kind == "cluster":
        pytest.skip("one Redis store is enough for a cursor's parsing")
    admin = apb_grpc.AdminServiceStub(running.channel)
    try:
        page = await admin.ListAuditEvents(apb.ListAuditEventsRequest(after=after))
    except grpc.aio.AioRpcError as error:
        details = details_of(error)
        assert details.code == grpc.StatusCode.INVALID_ARGUMENT, details
        assert details.reason == "INVALID_CURSOR"
        assert details.domain == "vaultd"
        assert ("after", "is not a cursor from a previous list") in details.violations
    else:
        # A cursor past every event may also be read as "nothing newer": never an error page.
        assert list(page.events) == []


@pytest.mark.parametrize("limit", [-1, -(2**31), 1001, 2**31 - 1])
async def test_an_out_of_range_audit_limit_is_invalid_argument(
    running: Running, limit: int
) -> None:
    admin = apb_grpc.AdminServiceStub(running.channel)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await admin.ListAuditEvents(apb.ListAuditEventsRequest(limit=limit))
    details = details_of(raised.value)
    assert details.code == grpc.StatusCode.INVALID_ARGUMENT
    assert details.violations and details.violations[0][0] == "limit"


@pytest.mark.parametrize(
    "request_",
    [
        opb.ListObjectsRequest(after="9" * 40),
        opb.ListObjectsRequest(before="9" * 40),
        opb.ListObjectsRequest(after="obj_" + "Z" * 26),
        opb.ListObjectsRequest(limit=-(2**31)),
        opb.ListObjectsRequest(limit=2**31 - 1),
        opb.ListObjectsRequest(name_prefix="\x00" * 4),
    ],
    ids=["after-digits", "before-digits", "after-bad-ulid", "limit-min", "limit-max", "nul"],
)
async def test_object_list_inputs_get_clear_statuses(
    running: Running, request_: opb.ListObjectsRequest
) -> None:
    if running.kind == "cluster":
        pytest.skip("covered on sqlite and redis")
    try:
        await running.objects.ListObjects(request_)
    except grpc.aio.AioRpcError as error:
        details = details_of(error)
        assert details.code == grpc.StatusCode.INVALID_ARGUMENT, details
        assert details.domain == "vaultd" and details.reason


async def test_the_refused_probes_leave_the_trail_as_it_was_plus_their_own_events(
    running: Running,
) -> None:
    """Nothing else changed: each refused probe adds exactly its own audit event."""
    if running.kind == "cluster":
        pytest.skip("covered on sqlite and redis")
    admin = apb_grpc.AdminServiceStub(running.channel)
    before = await _audit_count(running)
    # The cursors each store once failed INTERNAL on: numbers (SQLite), stream ids (Redis).
    probes = HUGE_CURSORS[:3] if running.kind == "sqlite" else HUGE_CURSORS[5:8]
    for after in probes:
        try:
            await admin.ListAuditEvents(apb.ListAuditEventsRequest(after=after))
        except grpc.aio.AioRpcError as error:
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    # The probes' own events, plus the events of counting (one per page read).
    after_count = await _audit_count(running)
    assert after_count - before == 3 + 1 + (before // 1000)
