"""A store that lost its data, was replaced, or would lose it on a restart (issue 13, items 2-4).

Each test runs a real vaultd over a real port against a real redis-server (or the embedded
store) and counts what it acknowledged and what it could read back: vaultd refuses to serve a
store that cannot keep an acknowledged write, and a store that was emptied or swapped under it,
with STORE_NOT_DURABLE / STORE_IDENTITY_MISMATCH instead of bootstrapping afresh or blaming the
caller's key (API_KEY_INVALID).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from pathlib import Path

import grpc
import pytest

from testkit.auth import BOOTSTRAP_API_KEY, channel
from testkit.fault_load import FaultReport
from testkit.grpc_errors import details_of
from testkit.redis_dbs import RedisDb, redis_db_url
from testkit.redis_server import RedisServer
from vaultd.cli import main
from vaultd.core.storeguard import StoreRefused
from vaultd.known_store import STORE_ID_FILE
from vaultd.server import Vaultd, start
from vaultd.settings import Settings
from vaultd.v1 import object_service_pb2 as pb
from vaultd.v1 import object_service_pb2_grpc as pb_grpc

pytestmark = pytest.mark.faults

CHECK_SECONDS = 0.3
MISMATCH = (grpc.StatusCode.UNAVAILABLE, "STORE_IDENTITY_MISMATCH")
WRITES_BEFORE = 20


def _settings(data_dir: Path, redis_url: str | None, **extra: object) -> Settings:
    extra.setdefault("store_check_seconds", CHECK_SECONDS)
    # Every call asks the store for its key: an emptied store shows at the first call.
    extra.setdefault("api_key_cache_seconds", 0)
    return Settings(
        listen="127.0.0.1:0",
        data_dir=data_dir,
        redis_url=redis_url,
        bootstrap_api_key=BOOTSTRAP_API_KEY,
        log_level="error",
        **extra,
    )


async def _write(vaultd: Vaultd, name: str, value: bytes) -> str:
    async with channel(f"127.0.0.1:{vaultd.port}") as chan:
        reply = await pb_grpc.ObjectServiceStub(chan).CreateObject(
            pb.CreateObjectRequest(
                name=name, value=value, key_context={"organization_id": "org_guard"}
            ),
            timeout=10,
        )
    return str(reply.metadata.id)


async def _read(vaultd: Vaultd, name: str) -> bytes:
    async with channel(f"127.0.0.1:{vaultd.port}") as chan:
        reply = await pb_grpc.ObjectServiceStub(chan).GetObjectByName(
            pb.GetObjectByNameRequest(name=name), timeout=10
        )
    return bytes(reply.object.value)


async def _refusal(vaultd: Vaultd, name: str) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _read(vaultd, name)
    details = details_of(caught.value)
    return details.code, details.reason


async def test_volatile_redis_is_refused_at_start_unless_allowed(tmp_path: Path) -> None:
    with RedisServer(tmp_path / "redis", persistent=False) as redis:
        with pytest.raises(StoreRefused, match="appendonly yes") as refused:
            await start(_settings(tmp_path / "vaultd", redis.url))
        assert refused.value.exit_code == 2
        assert "no persistence" in str(refused.value)

        vaultd = await start(_settings(tmp_path / "vaultd", redis.url, allow_volatile_redis=True))
        try:
            await _write(vaultd, "allowed", b"volatile by choice")
            assert await _read(vaultd, "allowed") == b"volatile by choice"
        finally:
            await vaultd.stop(None)


def test_the_cli_refuses_a_volatile_redis_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        _serve_volatile(tmp_path, capsys)
    finally:  # `serve` points logging at this test's captured stderr; give it back
        root.handlers[:] = handlers
        root.setLevel(level)


def _serve_volatile(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with RedisServer(tmp_path / "redis", persistent=False) as redis:
        code = main(["serve", "--data-dir", str(tmp_path / "d"), "--redis-url", redis.url])
    # Log lines (JSON) may come before it; what is not a log line is the one line of refusal.
    err = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("{")]
    assert code == 2
    assert len(err) == 1, err
    assert err[0].startswith("vaultd: the store would lose acknowledged")


# 0: each call looks its key up, so the first call after the restart finds the store emptied.
# 5: cached keys keep calls going until the guard's next check (CHECK_SECONDS).
@pytest.mark.parametrize("key_cache_seconds", [0.0, 5.0])
async def test_redis_restarted_empty_is_refused_and_nothing_after_it_is_lost(
    tmp_path: Path, fault_report: FaultReport, key_cache_seconds: float
) -> None:
    """A volatile Redis (allowed on purpose) restarts empty under a serving vaultd: every call
    then fails STORE_IDENTITY_MISMATCH (never API_KEY_INVALID, never a fresh bootstrap), a
    restarted vaultd refuses the empty store, and after `vaultd store init` every write that
    was acknowledged after the restart reads back."""
    data_dir = tmp_path / "vaultd"
    with RedisServer(tmp_path / "redis", persistent=False) as redis:
        settings = _settings(
            data_dir,
            redis.url,
            allow_volatile_redis=True,
            api_key_cache_seconds=key_cache_seconds,
        )
        vaultd = await start(settings)
        try:
            for i in range(WRITES_BEFORE):
                await _write(vaultd, f"before-{i}", b"x")
                fault_report.writes_acknowledged += 1
            redis.kill()
            redis.start()  # empty: no AOF, no snapshot
            # Writes race the guard's next check: those acknowledged must stay readable.
            acked_after: list[str] = []
            for i in range(50):
                try:
                    await _write(vaultd, f"after-{i}", b"y")
                    acked_after.append(f"after-{i}")
                    fault_report.statuses["OK"] += 1
                except grpc.aio.AioRpcError as exc:
                    details = details_of(exc)
                    fault_report.statuses[f"{details.code.name}/{details.reason}"] += 1
                await asyncio.sleep(CHECK_SECONDS / 5)
            assert await _refusal(vaultd, "before-0") == MISMATCH
            statuses = set(fault_report.statuses)
            assert "UNAUTHENTICATED/API_KEY_INVALID" not in statuses
            assert statuses <= {"OK", "UNAVAILABLE/STORE_IDENTITY_MISMATCH"}, statuses
        finally:
            await vaultd.stop(None)
        fault_report.writes_acknowledged += len(acked_after)

        # A restarted vaultd does not bootstrap the empty store afresh.
        with pytest.raises(StoreRefused, match="vaultd store init"):
            await start(settings)
        init = ["store", "init", "--data-dir", str(data_dir), "--redis-url", redis.url]
        assert await asyncio.to_thread(main, init) == 0
        vaultd = await start(settings)
        try:
            for name in acked_after:
                assert await _read(vaultd, name) == b"y"
                fault_report.writes_verified += 1
            lost = await _refusal_count(vaultd, WRITES_BEFORE)
        finally:
            await vaultd.stop(None)
    fault_report.note("acknowledged before the restart, lost with the volatile store", lost)
    assert lost == WRITES_BEFORE  # the opt-in's price, and said loudly, not silently


async def _refusal_count(vaultd: Vaultd, count: int) -> int:
    missing = 0
    for i in range(count):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await _read(vaultd, f"before-{i}")
        missing += caught.value.code() == grpc.StatusCode.NOT_FOUND
    return missing


async def test_an_emptied_store_answers_the_real_cause_not_api_key_invalid(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """FLUSHDB under a serving vaultd (a restore gone wrong): the next call hears
    STORE_IDENTITY_MISMATCH at once, health turns NOT_SERVING, and a restart refuses."""
    import redis.asyncio as aioredis
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    url = redis_db_url(redis_server.url, RedisDb.STORE_GUARD)  # flushed: a database of its own
    raw = aioredis.Redis.from_url(url)
    await raw.flushdb()
    settings = _settings(tmp_path / "vaultd", url, store_check_seconds=60)
    vaultd = await start(settings)
    try:
        await _write(vaultd, "kept", b"v")
        await raw.flushdb()
        assert await _refusal(vaultd, "kept") == MISMATCH
        async with channel(f"127.0.0.1:{vaultd.port}", api_key=None) as chan:
            reply = await health_pb2_grpc.HealthStub(chan).Check(
                health_pb2.HealthCheckRequest(), timeout=5
            )
        assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING
    finally:
        await vaultd.stop(None)
        await raw.aclose()
    with pytest.raises(StoreRefused, match="it was emptied or replaced"):
        await start(settings)


def _copy(source: Path, target: Path) -> None:
    """Copy a store or key file as an operator would, private as vaultd requires."""
    target.parent.mkdir(mode=0o700, exist_ok=True)
    target.write_bytes(source.read_bytes())
    target.chmod(0o600)


async def test_another_deployments_store_is_refused(tmp_path: Path) -> None:
    """Two deployments, one embedded store file: the second root key is refused, and so is a
    host that served another store."""
    first = _settings(tmp_path / "first", None)
    vaultd = await start(first)
    await vaultd.stop(None)
    store_file = tmp_path / "first" / "vaultd.db"
    _copy(store_file, tmp_path / "second" / "vaultd.db")
    with pytest.raises(StoreRefused, match="initialised with another root key"):
        await start(_settings(tmp_path / "second", None))

    # Same root key, another store: the host remembers the one it served.
    _copy(tmp_path / "first" / "root.key", tmp_path / "third" / "root.key")
    vaultd = await start(_settings(tmp_path / "third", None))  # its own, new store
    await vaultd.stop(None)
    third_id = (tmp_path / "third" / STORE_ID_FILE).read_text().strip()
    first_id = (tmp_path / "first" / STORE_ID_FILE).read_text().strip()
    assert third_id != first_id
    (tmp_path / "third" / "vaultd.db").unlink()
    for suffix in ("-wal", "-shm"):
        (tmp_path / "third" / f"vaultd.db{suffix}").unlink(missing_ok=True)
    _copy(store_file, tmp_path / "third" / "vaultd.db")
    with pytest.raises(StoreRefused, match=f"served store {third_id}, but the store it reaches"):
        await start(_settings(tmp_path / "third", None))


async def test_an_emptied_store_next_to_its_root_key_needs_store_init(tmp_path: Path) -> None:
    """The root key remembers the store it served: the store file gone (a volume not mounted,
    a restore gone wrong) is refused until the operator says it is meant to start afresh."""
    data_dir = tmp_path / "vaultd"
    vaultd = await start(_settings(data_dir, None))
    await vaultd.stop(None)
    for suffix in ("", "-wal", "-shm"):
        (data_dir / f"vaultd.db{suffix}").unlink(missing_ok=True)
    with pytest.raises(StoreRefused, match="it was emptied or replaced"):
        await start(_settings(data_dir, None))
    assert await asyncio.to_thread(main, ["store", "init", "--data-dir", str(data_dir)]) == 0
    vaultd = await start(_settings(data_dir, None))
    try:
        await _write(vaultd, "fresh", b"start afresh, on purpose")
        assert await _read(vaultd, "fresh") == b"start afresh, on purpose"
    finally:
        await vaultd.stop(None)
    # init never replaces an identity: it adopts its own store, and refuses another's
    assert await asyncio.to_thread(main, ["store", "init", "--data-dir", str(data_dir)]) == 0
    other = tmp_path / "other"
    _copy(data_dir / "vaultd.db", other / "vaultd.db")
    assert await asyncio.to_thread(main, ["store", "init", "--data-dir", str(other)]) == 1


async def test_a_store_an_older_vaultd_filled_is_adopted(tmp_path: Path) -> None:
    """Data but no identity (written before identities existed): given one, and served."""
    import sqlite3

    data_dir = tmp_path / "vaultd"
    vaultd = await start(_settings(data_dir, None))
    name = f"legacy-{uuid.uuid4().hex[:6]}"
    await _write(vaultd, name, b"old data")
    await vaultd.stop(None)
    with sqlite3.connect(data_dir / "vaultd.db") as db:
        db.execute("DELETE FROM store_identity")
        db.execute("DELETE FROM store_root_keys")
    (data_dir / STORE_ID_FILE).unlink()
    vaultd = await start(_settings(data_dir, None))
    try:
        assert await _read(vaultd, name) == b"old data"
        assert (data_dir / STORE_ID_FILE).read_text().startswith("store_")
    finally:
        await vaultd.stop(None)
