"""Class 5: no amplification by callers without a valid key.

A hostile network client sends a flood of calls, each with a fresh random well-formed token.
Before this defence each cost a store lookup and a full audit write, and no limit applied (the
per-key bucket of each random token was fresh). Now a peer's failed authentications are
budgeted: past the budget its calls are RESOURCE_EXHAUSTED / RATE_LIMITED with RetryInfo,
without a lookup or an audit write each, exactly as for one repeated bad token; a key the
process already knows keeps working from the same address. Refused calls' audit events hold a
bounded view of what the request carried.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from testkit.auth import bearer, channel
from testkit.grpc_errors import details_of
from testkit.redis_dbs import RedisDb, redis_db_url
from testkit.redis_server import RedisServer
from testkit.running import running_vaultd, settings_for
from testkit.serving import scrape
from vaultd.server import Vaultd, start
from vaultd.storage.records import AuditQuery
from vaultd.v1 import object_service_pb2 as opb
from vaultd.v1 import object_service_pb2_grpc as opb_grpc

BURST = 5
FLOOD = 40
TRUNCATED = "…"  # how an audit event marks a field it cut short


@pytest.fixture(params=["sqlite", "redis"])
async def limited(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Vaultd]:
    redis_url = None
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        redis_url = redis_db_url(server.url, RedisDb.AMPLIFICATION)
    async with running_vaultd(
        request.param,
        tmp_path / "data",
        redis_url,
        metrics_listen="127.0.0.1:0",
        api_key_cache_seconds=600,
        # Almost no refill while the test runs: the budget is the burst.
        rate_limit={"failed_auth_per_second": 0.001, "failed_auth_burst": BURST},
    ) as running:
        yield running.vaultd


def lookups(vaultd: Vaultd) -> float:
    assert vaultd.metrics_server is not None
    samples = scrape(vaultd.metrics_server.port)
    key = ("vaultd_storage_duration_seconds_count", frozenset({("operation", "find_api_key")}))
    return samples.get(key, 0.0)


async def unauthenticated_events(vaultd: Vaultd) -> int:
    """Events of calls that failed authentication, as stored (they belong to no environment)."""
    assert vaultd.audit_log is not None
    await vaultd.audit_log.flush()
    total, cursor = 0, ""
    while True:
        page = await vaultd.store.read_audit_events("", AuditQuery(after=cursor, limit=1000))
        total += len(page.events)
        if len(page.events) < 1000:
            return total
        cursor = page.cursor


def random_token() -> str:
    return "sk_" + secrets.token_urlsafe(32)


@pytest.mark.parametrize("tokens", ["fresh", "repeated"])
async def test_a_token_flood_costs_a_bounded_number_of_lookups_and_audit_writes(
    limited: Vaultd, tokens: str
) -> None:
    target = f"127.0.0.1:{limited.port}"
    repeated = random_token()
    async with channel(target, None) as anonymous, channel(target) as admin:
        stub = opb_grpc.ObjectServiceStub(anonymous)
        # The admin key is known to this process before the flood.
        name = f"kept-{uuid.uuid4().hex}"
        await opb_grpc.ObjectServiceStub(admin).CreateObject(
            opb.CreateObjectRequest(
                name=name, value=b"v", key_context={"org": f"amplify-{uuid.uuid4().hex}"}
            )
        )
        lookups_before = lookups(limited)
        events_before = await unauthenticated_events(limited)
        seen: list[tuple[grpc.StatusCode, str, float | None]] = []
        for _ in range(FLOOD):
            token = random_token() if tokens == "fresh" else repeated
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await stub.GetObjectByName(
                    opb.GetObjectByNameRequest(name=name), metadata=bearer(token)
                )
            details = details_of(raised.value)
            seen.append((details.code, details.reason, details.retry_delay))

        refused = [s for s in seen if s[0] == grpc.StatusCode.UNAUTHENTICATED]
        limited_ = [s for s in seen if s[0] == grpc.StatusCode.RESOURCE_EXHAUSTED]
        assert len(refused) == BURST and all(r[1] == "API_KEY_INVALID" for r in refused)
        assert len(limited_) == FLOOD - BURST
        assert all(r[1] == "RATE_LIMITED" and r[2] and r[2] > 0 for r in limited_)
        # Each refused call looked up at most once, and wrote at most one event.
        assert lookups(limited) - lookups_before <= BURST
        assert await unauthenticated_events(limited) - events_before == BURST

        # Nothing else changed: the known admin key still works from the same address.
        got = await opb_grpc.ObjectServiceStub(admin).GetObjectByName(
            opb.GetObjectByNameRequest(name=name)
        )
        assert got.object.value == b"v"


async def test_calls_without_any_token_spend_the_same_budget(limited: Vaultd) -> None:
    async with channel(f"127.0.0.1:{limited.port}", None) as anonymous:
        stub = opb_grpc.ObjectServiceStub(anonymous)
        codes = []
        for _ in range(BURST * 3):
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await stub.GetObjectByName(opb.GetObjectByNameRequest(name="x"))
            codes.append(raised.value.code())
    assert codes.count(grpc.StatusCode.UNAUTHENTICATED) == BURST
    assert codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) == BURST * 2


async def test_a_refused_calls_audit_event_holds_a_bounded_view_of_its_request(
    tmp_path: Path,
) -> None:
    vaultd = await start(settings_for(tmp_path / "data", None, max_value_bytes=8 * 1024 * 1024))
    try:
        huge_context = {f"k{i:04d}" + "x" * 200: "v" * 5000 for i in range(400)}  # ~2 MiB
        async with channel(f"127.0.0.1:{vaultd.port}") as admin:
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await opb_grpc.ObjectServiceStub(admin).CreateObject(
                    opb.CreateObjectRequest(
                        name="n" * 100_000, value=b"v", key_context=huge_context
                    )
                )
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert vaultd.audit_log is not None
        await vaultd.audit_log.flush()
        page = await vaultd.store.read_audit_events("default", AuditQuery(limit=1000))
        event = [e for e in page.events if e.type == "vault.data.created"][-1]
        assert event.outcome != "success"
        assert len(event.object_name) <= 512 and event.object_name.endswith(TRUNCATED)
        assert len(event.key_context) == 11 and event.key_context[TRUNCATED] == "390"
        assert all(len(k) <= 120 and len(v) <= 500 for k, v in event.key_context.items())
        size = sum(len(k) + len(v) for k, v in event.key_context.items())
        assert size < 10 * (120 + 500) + 10
    finally:
        await vaultd.stop(None)
