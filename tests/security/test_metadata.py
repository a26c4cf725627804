"""Class 2 attacks: a store writer edits the metadata that decides what a reader gets
(docs/SECURITY.md section 2): swaps two objects' names, moves the current-version pointer back
to an older version, relabels an object's key context. Each is refused, with an error-level
log line, on the SQLite file and on a real Redis, and nothing else changes.
"""

from __future__ import annotations

import json
import logging
import uuid

import grpc
import pytest

from testkit.crypto import ENV, STORES, RawStore, all_keks, refused
from testkit.running import Running
from vaultd.client import AsyncVaultClient, IntegrityViolation
from vaultd.storage.keys import Kind, key
from vaultd.v1 import admin_service_pb2_grpc as apb_grpc
from vaultd.v1 import object_service_pb2 as opb

DECRYPTION_FAILED = (grpc.StatusCode.INVALID_ARGUMENT, "DECRYPTION_FAILED")
INTEGRITY_VIOLATION = (grpc.StatusCode.DATA_LOSS, "INTEGRITY_VIOLATION")


def _tag() -> str:
    return uuid.uuid4().hex[:12]


async def _create(running: Running, name: str, value: bytes, org: str) -> opb.ObjectMetadata:
    made = await running.objects.CreateObject(
        opb.CreateObjectRequest(name=name, value=value, key_context={"org": org})
    )
    return made.metadata


def _errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


def _set_name(raw: RawStore, object_id: str, name: str) -> None:
    if raw.kind == "sqlite":
        raw.execute_sql(
            "UPDATE objects SET name = ? WHERE environment_id = ? AND id = ?", name, ENV, object_id
        )
    else:
        raw.redis.hset(key(ENV, Kind.OBJECT, object_id), "name", name)
        raw.redis.hset(key(ENV, Kind.NAMES), name, object_id)


def _set_field(raw: RawStore, object_id: str, column: str, field: str, value: str) -> None:
    if raw.kind == "sqlite":
        raw.execute_sql(
            f"UPDATE objects SET {column} = ? WHERE environment_id = ? AND id = ?",
            value,
            ENV,
            object_id,
        )
    else:
        raw.redis.hset(key(ENV, Kind.OBJECT, object_id), field, value)


async def _value(running: Running, object_id: str) -> bytes:
    got = await running.objects.GetObject(opb.GetObjectRequest(id=object_id))
    return bytes(got.object.value)


@STORES
async def test_swapped_names_are_refused(
    running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    tag = _tag()
    a = await _create(running, f"meta-a-{tag}", b"alpha", f"org_{tag}")
    b = await _create(running, f"meta-b-{tag}", b"beta", f"org_{tag}")
    raw = RawStore(running)
    try:
        # The reader asking for a's name would be served b's value.
        _set_name(raw, a.id, f"tmp-{tag}")
        _set_name(raw, b.id, a.name)
        _set_name(raw, a.id, b.name)
        caplog.clear()
        for call, request in (
            (running.objects.GetObjectByName, opb.GetObjectByNameRequest(name=a.name)),
            (running.objects.GetObjectByName, opb.GetObjectByNameRequest(name=b.name)),
            (running.objects.GetObject, opb.GetObjectRequest(id=a.id)),
            (running.objects.GetObject, opb.GetObjectRequest(id=b.id)),
        ):
            assert await refused(call, request) == DECRYPTION_FAILED
        assert any("does not authenticate" in m for m in _errors(caplog))

        if raw.kind == "redis":
            # Only the name index swapped: the object found carries the other name.
            _set_name(raw, a.id, a.name)
            _set_name(raw, b.id, b.name)
            raw.redis.hset(key(ENV, Kind.NAMES), a.name, b.id)
            caplog.clear()
            assert (
                await refused(
                    running.objects.GetObjectByName, opb.GetObjectByNameRequest(name=a.name)
                )
                == INTEGRITY_VIOLATION
            )
            assert any("name index" in m for m in _errors(caplog))
            raw.redis.hset(key(ENV, Kind.NAMES), a.name, a.id)

        # Put back, everything reads as before: nothing else was changed by the refusals.
        _set_name(raw, a.id, f"tmp-{tag}")
        _set_name(raw, b.id, b.name)
        _set_name(raw, a.id, a.name)
        if raw.kind == "redis":
            raw.redis.hdel(key(ENV, Kind.NAMES), f"tmp-{tag}")
        assert await _value(running, a.id) == b"alpha"
        assert await _value(running, b.id) == b"beta"
    finally:
        raw.close()


@STORES
async def test_rolled_back_current_pointer_is_refused(
    running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    tag = _tag()
    first = await _create(running, f"meta-ptr-{tag}", b"revoked password", f"org_{tag}")
    second = (
        await running.objects.UpdateObject(opb.UpdateObjectRequest(id=first.id, value=b"new"))
    ).metadata
    raw = RawStore(running)
    try:
        _set_field(raw, first.id, "current_version_id", "current", first.version_id)
        caplog.clear()
        for call, request in (
            (running.objects.GetObject, opb.GetObjectRequest(id=first.id)),
            (running.objects.GetObjectByName, opb.GetObjectByNameRequest(name=first.name)),
            (running.objects.UpdateObject, opb.UpdateObjectRequest(id=first.id, value=b"x")),
        ):
            assert await refused(call, request) == INTEGRITY_VIOLATION
        assert any("current-version pointer" in m for m in _errors(caplog))
        async with AsyncVaultClient(running.target, running.api_key) as client:
            with pytest.raises(IntegrityViolation):
                await client.get_object(first.id)
        # The refused update wrote nothing; put back, the newest value reads.
        versions = await running.objects.ListObjectVersions(
            opb.ListObjectVersionsRequest(id=first.id)
        )
        assert len(versions.versions) == 2
        _set_field(raw, first.id, "current_version_id", "current", second.version_id)
        assert await _value(running, first.id) == b"new"
    finally:
        raw.close()


@STORES
async def test_relabelled_key_context_is_refused(
    running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    tag = _tag()
    mine, theirs = f"org_{tag}", f"attacker_{tag}"
    meta = await _create(running, f"meta-ctx-{tag}", b"tenant secret", mine)
    admin = apb_grpc.AdminServiceStub(running.channel)
    raw = RawStore(running)
    try:
        # The next update would wrap under the KEK of an item the tenant does not own (escaping
        # its BYOK rule, or a shred of its own item).
        _set_field(raw, meta.id, "key_context", "ctx", json.dumps({"org": theirs}))
        caplog.clear()
        for call, request in (
            (running.objects.GetObject, opb.GetObjectRequest(id=meta.id)),
            (running.objects.UpdateObject, opb.UpdateObjectRequest(id=meta.id, value=b"x")),
        ):
            assert await refused(call, request) == DECRYPTION_FAILED
        assert any("does not authenticate" in m for m in _errors(caplog))
        # Nothing was wrapped for the attacker's item, and no version was written.
        keks = await all_keks(admin)
        assert not [k for k in keks if k.item_value == theirs]
        versions = await running.objects.ListObjectVersions(
            opb.ListObjectVersionsRequest(id=meta.id)
        )
        assert [v.id for v in versions.versions] == [meta.version_id]
        _set_field(raw, meta.id, "key_context", "ctx", json.dumps({"org": mine}))
        assert await _value(running, meta.id) == b"tenant secret"
    finally:
        raw.close()
