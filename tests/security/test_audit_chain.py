"""Class 7: tamper-evident audit events.

Someone with write access to the store (a stolen Redis password, a copy of the SQLite file put
back) deletes or edits an audit event to hide a read. `vaultd audit verify` walks each
writer's hash chain and reports the first broken position, on the SQLite file and on a real
redis-server. Context values are stored as keyed hashes, found with `vaultd audit hash`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from testkit.auth import channel
from testkit.redis_server import RedisServer
from testkit.running import settings_for
from vaultd.cli import main
from vaultd.server import Vaultd, start
from vaultd.storage import codec
from vaultd.storage.keys import audit_key
from vaultd.storage.records import AuditQuery
from vaultd.v1 import object_service_pb2 as opb
from vaultd.v1 import object_service_pb2_grpc as opb_grpc

ORG = f"org_chain_{uuid.uuid4().hex[:8]}"


@pytest.fixture(params=["sqlite", "redis"])
async def audited(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[Vaultd, list[str], str]]:
    # A redis-server of its own: each test's vaultd has its own audit key, and a trail mixed
    # with another test's events would not verify.
    redis = RedisServer(tmp_path / "redis") if request.param == "redis" else None
    redis_url = redis.__enter__().url if redis is not None else None
    data = tmp_path / "data"
    vaultd = await start(settings_for(data, redis_url))
    async with channel(f"127.0.0.1:{vaultd.port}") as admin:
        objects = opb_grpc.ObjectServiceStub(admin)
        made = await objects.CreateObject(
            opb.CreateObjectRequest(
                name="chained", value=b"v", key_context={"organization_id": ORG}
            )
        )
        for _ in range(4):
            await objects.GetObject(opb.GetObjectRequest(id=made.metadata.id))
    assert vaultd.audit_log is not None
    await vaultd.audit_log.flush()
    _DATA_DIRS[id(vaultd)] = data
    args = ["--data-dir", str(data)] + (["--redis-url", redis_url] if redis_url else [])
    yield vaultd, args, request.param
    await vaultd.stop(None)
    if redis is not None:
        redis.__exit__(None, None, None)


async def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    capsys.readouterr()
    code = await asyncio.to_thread(main, list(args))
    return code, capsys.readouterr().out


async def stored(vaultd: Vaultd) -> list[tuple[str, bytes]]:
    """(store position id, record) of every event of "default", in the store's order."""
    if vaultd.store.__class__.__name__ == "SqliteStore":
        db = sqlite3.connect(vaultd_db(vaultd))
        try:
            rows = db.execute(
                "SELECT seq, record FROM audit_events WHERE environment_id = 'default' ORDER BY seq"
            ).fetchall()
        finally:
            db.close()
        return [(str(seq), bytes(record)) for seq, record in rows]
    redis = vaultd.store._redis  # type: ignore[attr-defined]
    entries = await redis.xrange(audit_key("default"))
    return [(sid.decode(), fields[b"e"]) for sid, fields in entries]


_DATA_DIRS: dict[int, Path] = {}


def vaultd_db(vaultd: Vaultd) -> Path:
    return _DATA_DIRS[id(vaultd)] / "vaultd.db"


async def delete(vaultd: Vaultd, position: str) -> None:
    if vaultd.store.__class__.__name__ == "SqliteStore":
        db = sqlite3.connect(vaultd_db(vaultd))
        with db:
            db.execute("DELETE FROM audit_events WHERE seq = ?", (int(position),))
        db.close()
    else:
        await vaultd.store._redis.xdel(audit_key("default"), position)  # type: ignore[attr-defined]


async def rewrite(vaultd: Vaultd, position: str, record: bytes) -> None:
    if vaultd.store.__class__.__name__ == "SqliteStore":
        db = sqlite3.connect(vaultd_db(vaultd))
        with db:
            db.execute("UPDATE audit_events SET record = ? WHERE seq = ?", (record, int(position)))
        db.close()
    else:
        # A stream entry cannot be edited in place: delete it and add the forgery at the end.
        redis = vaultd.store._redis  # type: ignore[attr-defined]
        await redis.xdel(audit_key("default"), position)
        await redis.xadd(audit_key("default"), {b"e": record})


async def test_an_untouched_trail_verifies(
    audited: tuple[Vaultd, list[str], str], capsys: pytest.CaptureFixture[str]
) -> None:
    _, args, _ = audited
    code, out = await cli(capsys, "audit", "verify", "--environment", "default", *args)
    assert code == 0 and out.startswith("default: ok, "), out


async def test_a_deleted_event_is_reported_at_its_place(
    audited: tuple[Vaultd, list[str], str], capsys: pytest.CaptureFixture[str]
) -> None:
    vaultd, args, _ = audited
    events = await stored(vaultd)
    assert len(events) >= 5
    victim = codec.decode_audit_event(events[2][1])
    await delete(vaultd, events[2][0])
    code, out = await cli(capsys, "audit", "verify", "--environment", "default", *args)
    assert code == 1
    assert out.startswith("default: BROKEN at position 3 ("), out
    assert f"events {victim.seq} to {victim.seq} of its chain are missing" in out
    # Nothing else changed: the other events are all still there, unaltered.
    assert [e for e in await stored(vaultd)] == events[:2] + events[3:]


async def test_an_edited_event_is_reported_at_its_place(
    audited: tuple[Vaultd, list[str], str], capsys: pytest.CaptureFixture[str]
) -> None:
    vaultd, args, kind = audited
    events = await stored(vaultd)
    original = codec.decode_audit_event(events[3][1])
    forged = dataclasses.replace(original, outcome="OBJECT_NOT_FOUND", actor_name="someone else")
    await rewrite(vaultd, events[3][0], codec.encode_audit_event(forged))
    code, out = await cli(capsys, "audit", "verify", "--environment", "default", *args)
    assert code == 1 and "its mac does not verify (edited)" in out, out
    position = 4 if kind == "sqlite" else len(events)  # redis: the forgery went to the end
    assert out.startswith(f"default: BROKEN at position {position} (event {original.id}"), out


async def test_context_values_are_stored_as_keyed_hashes(
    audited: tuple[Vaultd, list[str], str], capsys: pytest.CaptureFixture[str]
) -> None:
    vaultd, args, _ = audited
    raw = b"".join(record for _, record in await stored(vaultd))
    assert ORG.encode() not in raw, "a context value is stored in the clear"
    code, out = await cli(capsys, "audit", "hash", ORG, *args)
    hashed = out.strip()
    assert code == 0 and hashed.startswith("hmac-sha256:") and len(hashed) == 12 + 64
    page = await vaultd.store.read_audit_events("default", AuditQuery(limit=100))
    created = [e for e in page.events if e.type == "vault.data.created"]
    assert created and created[0].key_context == {"organization_id": hashed}


def test_events_written_before_chaining_still_read_and_are_reported_as_such() -> None:
    """The record format gained three fields; a 16-field record from an older vaultd reads
    as before and verifies as unchained, not broken."""
    from datetime import UTC, datetime

    from vaultd.core.auditchain import AuditKeys, verify
    from vaultd.storage.records import AuditEvent

    old = AuditEvent("event_1", "vault.data.read", datetime(2026, 1, 1, tzinfo=UTC), "default",
                     "key_1", "n", "success", "r")  # fmt: skip
    record = codec.encode_audit_event(old)
    assert len(codec._unframe(record[1:])) == 16
    assert codec.decode_audit_event(record) == old
    verdict = verify(AuditKeys.from_secret(bytes(32)), [old])
    assert (verdict.unchained, verdict.chains, verdict.broken) == (1, 0, None)
