"""Soft delete over a real gRPC socket (docs/API.md, "Deleted objects"): DeleteObject hides an
object at once and keeps its name; UndeleteObject brings back every version byte for byte
within the retention; the purge job (or AdminService.PurgeObject) then destroys every byte of
it; with a retention of 0, DeleteObject destroys it at once, as before soft delete.

The shared servers (tests/conftest.py `running`: embedded store, Redis, Redis Cluster) keep the
default 30-day retention; servers of this module's own, each on an embedded store or a private
redis-server, have a retention of seconds or none.
"""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest
import pytest_asyncio
from redis.asyncio import Redis

from testkit.auth import add_api_key, channel
from testkit.grpc_errors import expect_error
from testkit.names import unique
from testkit.redis_server import RedisServer
from testkit.running import Running, settings_for
from vaultd.core.records import AuditQuery
from vaultd.server import Vaultd, start
from vaultd.v1 import admin_service_pb2 as admin_pb
from vaultd.v1 import admin_service_pb2_grpc as admin_grpc
from vaultd.v1 import object_service_pb2 as pb
from vaultd.v1 import object_service_pb2_grpc as pb_grpc

Stub = pb_grpc.ObjectServiceStub
ORG = {"organization_id": "org_123"}
NOT_FOUND = (grpc.StatusCode.NOT_FOUND, "OBJECT_NOT_FOUND")
FAR_FUTURE = datetime(2999, 1, 1, tzinfo=UTC)


async def create(stub: Stub, name: str, value: bytes) -> pb.ObjectMetadata:
    request = pb.CreateObjectRequest(name=name, value=value, key_context=ORG)
    return (await stub.CreateObject(request)).metadata


async def _with_versions(objects: Stub, name: str) -> tuple[pb.ObjectMetadata, list[bytes]]:
    """An object with three versions of random bytes, and those values, oldest first."""
    values = [uuid.uuid4().bytes * 4 for _ in range(3)]
    meta = await create(objects, name, values[0])
    for value in values[1:]:
        meta = (
            await objects.UpdateObject(pb.UpdateObjectRequest(id=meta.id, value=value))
        ).metadata
    return meta, values


async def _every_version(objects: Stub, object_id: str) -> list[tuple[pb.ObjectVersion, bytes]]:
    listed = await objects.ListObjectVersions(pb.ListObjectVersionsRequest(id=object_id))
    found = []
    for version in listed.versions:
        got = await objects.GetObjectVersion(
            pb.GetObjectVersionRequest(id=object_id, version_id=version.id)
        )
        found.append((version, got.object.value))
    return found


async def _expect_gone(objects: Stub, meta: pb.ObjectMetadata) -> None:
    for call in (
        objects.GetObject(pb.GetObjectRequest(id=meta.id)),
        objects.GetObjectByName(pb.GetObjectByNameRequest(name=meta.name)),
        objects.DescribeObject(pb.DescribeObjectRequest(id=meta.id)),
        objects.ListObjectVersions(pb.ListObjectVersionsRequest(id=meta.id)),
        objects.GetObjectVersion(
            pb.GetObjectVersionRequest(id=meta.id, version_id=meta.version_id)
        ),
        objects.UpdateObject(pb.UpdateObjectRequest(id=meta.id, value=b"x")),
        objects.DeleteObject(pb.DeleteObjectRequest(id=meta.id)),
    ):
        await expect_error(call, *NOT_FOUND)
    listed = await objects.ListObjects(pb.ListObjectsRequest(name_prefix=meta.name, limit=100))
    assert list(listed.objects) == []


async def test_deleted_is_gone_at_once_and_undelete_restores_every_version(
    running: Running,
) -> None:
    objects = running.objects
    meta, values = await _with_versions(objects, unique("soft"))
    before = await _every_version(objects, meta.id)
    assert [value for _, value in before] == values

    await objects.DeleteObject(pb.DeleteObjectRequest(id=meta.id, version_check=meta.version_id))

    await _expect_gone(objects, meta)
    await expect_error(
        objects.CreateObject(pb.CreateObjectRequest(name=meta.name, value=b"x", key_context=ORG)),
        grpc.StatusCode.ALREADY_EXISTS,
        "NAME_TAKEN",
    )
    restored = await objects.UndeleteObject(pb.UndeleteObjectRequest(id=meta.id))
    assert restored.metadata == meta
    assert await _every_version(objects, meta.id) == before
    got = await objects.GetObjectByName(pb.GetObjectByNameRequest(name=meta.name))
    assert got.object.value == values[-1] and got.object.metadata == meta
    page = await admin_grpc.AdminServiceStub(running.channel).ListAuditEvents(
        admin_pb.ListAuditEventsRequest(type="vault.data.undeleted", limit=1000)
    )
    assert [e.outcome for e in page.events if e.object_id == meta.id] == ["success"]
    # Live now: a second undelete finds nothing deleted.
    await expect_error(objects.UndeleteObject(pb.UndeleteObjectRequest(id=meta.id)), *NOT_FOUND)


async def test_purge_object_destroys_only_deleted_objects(running: Running) -> None:
    objects = running.objects
    admin = admin_grpc.AdminServiceStub(running.channel)
    meta = await create(objects, unique("purge"), b"to be purged")

    details = await expect_error(
        admin.PurgeObject(admin_pb.PurgeObjectRequest(id=meta.id)),
        grpc.StatusCode.FAILED_PRECONDITION,
        "OBJECT_NOT_DELETED",
    )
    assert details.metadata["object_id"] == meta.id
    assert (await objects.GetObject(pb.GetObjectRequest(id=meta.id))).object.value
    await objects.DeleteObject(pb.DeleteObjectRequest(id=meta.id))
    await admin.PurgeObject(admin_pb.PurgeObjectRequest(id=meta.id))

    await expect_error(objects.UndeleteObject(pb.UndeleteObjectRequest(id=meta.id)), *NOT_FOUND)
    await expect_error(admin.PurgeObject(admin_pb.PurgeObjectRequest(id=meta.id)), *NOT_FOUND)
    again = await create(objects, meta.name, b"reborn")  # the name is free once purged
    assert again.id != meta.id
    for call in (
        objects.UndeleteObject(pb.UndeleteObjectRequest(id="not-an-id")),
        admin.PurgeObject(admin_pb.PurgeObjectRequest(id="")),
    ):
        await expect_error(call, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ID")

    page = await admin.ListAuditEvents(
        admin_pb.ListAuditEventsRequest(type="vault.data.purged", limit=1000)
    )
    outcomes = [e.outcome for e in page.events if e.object_id == meta.id]
    assert outcomes == ["OBJECT_NOT_DELETED", "success", "OBJECT_NOT_FOUND"]


async def test_undelete_needs_objects_write_and_purge_needs_admin(running: Running) -> None:
    meta = await create(running.objects, unique("perm"), b"x")
    await running.objects.DeleteObject(pb.DeleteObjectRequest(id=meta.id))
    secret = "sk_" + secrets.token_urlsafe(32)
    await add_api_key(running.vaultd.store, secret, permissions=("objects:read",))
    reader = channel(running.target, secret)
    try:
        await expect_error(
            Stub(reader).UndeleteObject(pb.UndeleteObjectRequest(id=meta.id)),
            grpc.StatusCode.PERMISSION_DENIED,
            "PERMISSION_DENIED",
        )
        await expect_error(
            admin_grpc.AdminServiceStub(reader).PurgeObject(
                admin_pb.PurgeObjectRequest(id=meta.id)
            ),
            grpc.StatusCode.PERMISSION_DENIED,
            "PERMISSION_DENIED",
        )
    finally:
        await reader.close()
    await running.objects.UndeleteObject(pb.UndeleteObjectRequest(id=meta.id))


RETENTION_SECONDS = 3.0


@pytest_asyncio.fixture(params=["sqlite", "redis"])
async def short_lived(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[Vaultd, Redis | None]]:
    """A server whose deleted objects are purged RETENTION_SECONDS after their delete (its job
    looks every 0.2 s), on an embedded store or a private redis-server."""
    redis = RedisServer(tmp_path / "redis") if request.param == "redis" else None
    if redis is not None:
        redis.start()
    settings = settings_for(
        tmp_path / "data",
        redis.url if redis else None,
        deleted_retention_seconds=RETENTION_SECONDS,
        purge_interval_seconds=0.2,
    )
    vaultd = await start(settings)
    client = Redis.from_url(redis.url) if redis else None
    try:
        yield vaultd, client
    finally:
        await vaultd.stop(None)
        if client is not None:
            await client.aclose()
        if redis is not None:
            redis.stop()


async def _stored_bytes(vaultd: Vaultd, redis: Redis | None) -> bytes:
    """Everything the store holds, as bytes: every key's values, or the SQLite files."""
    if redis is None:
        db = vaultd.app.settings.data_dir / "vaultd.db"
        wal = db.with_name(db.name + "-wal")
        return db.read_bytes() + (wal.read_bytes() if wal.exists() else b"")
    return b"".join([await _raw_values(redis, name) async for name in redis.scan_iter(count=1000)])


async def _raw_values(redis: Redis, name: bytes) -> bytes:
    """Every value a key holds, uncompressed (DUMP compresses long strings)."""
    kind = await redis.type(name)
    if kind == b"hash":
        return b"".join(k + v for k, v in (await redis.hgetall(name)).items())
    if kind == b"list":
        return b"".join(await redis.lrange(name, 0, -1))
    if kind in (b"set", b"zset"):
        members = await (redis.smembers(name) if kind == b"set" else redis.zrange(name, 0, -1))
        return b"".join(members)
    if kind == b"stream":
        entries = await redis.xrange(name)
        return b"".join(k + v for _, fields in entries for k, v in fields.items())
    return await redis.get(name) or b""


async def _holds_records_of(vaultd: Vaultd, redis: Redis | None, object_id: str) -> bool:
    """Whether any key (Redis) or any row of objects or versions (SQLite) is the object's.
    Its audit events name it, as they should: they outlive it on purpose."""
    if redis is not None:
        return bool([name async for name in redis.scan_iter(f"*{object_id}*", count=1000)])
    with closing(sqlite3.connect(vaultd.app.settings.data_dir / "vaultd.db")) as db:
        rows = db.execute(
            "SELECT (SELECT COUNT(*) FROM objects WHERE id = ?)"
            " + (SELECT COUNT(*) FROM versions WHERE object_id = ?)",
            (object_id, object_id),
        ).fetchone()
    return bool(rows[0])


async def test_the_purge_job_destroys_every_byte_after_the_retention(
    short_lived: tuple[Vaultd, Redis | None],
) -> None:
    vaultd, redis = short_lived
    objects = Stub(channel(f"127.0.0.1:{vaultd.port}"))
    meta, _ = await _with_versions(objects, unique("due"))
    kept, _ = await _with_versions(objects, unique("kept"))
    stored = await vaultd.store.list_versions("default", meta.id)
    assert stored is not None
    ciphertexts = []
    for info in stored[0]:
        version = await vaultd.store.get_object_version("default", meta.id, info.version_id)
        assert version is not None
        ciphertexts.append(version.version.ciphertext)
    before = await _stored_bytes(vaultd, redis)
    assert all(c in before for c in ciphertexts)
    assert await _holds_records_of(vaultd, redis, meta.id)

    await objects.DeleteObject(pb.DeleteObjectRequest(id=meta.id))
    started = time.monotonic()
    while await vaultd.store.due_for_purge("default", FAR_FUTURE, 10):
        assert time.monotonic() - started < RETENTION_SECONDS + 10, "never purged"
        await asyncio.sleep(0.1)
    assert time.monotonic() - started >= RETENTION_SECONDS - 0.5  # not before the retention

    left = await _stored_bytes(vaultd, redis)
    assert not any(c in left for c in ciphertexts)
    assert not await _holds_records_of(vaultd, redis, meta.id)
    await expect_error(objects.UndeleteObject(pb.UndeleteObjectRequest(id=meta.id)), *NOT_FOUND)
    assert (await create(objects, meta.name, b"reborn")).id != meta.id
    assert (await objects.GetObject(pb.GetObjectRequest(id=kept.id))).object.metadata == kept
    purged = await vaultd.audit_log.read(
        "default", AuditQuery(type="vault.data.purged", limit=1000)
    )
    mine = [e for e in purged.events if e.object_id == meta.id]
    assert [(e.actor_id, e.actor_name, e.outcome) for e in mine] == [("vaultd", "purge", "success")]


async def test_undelete_after_the_retention_is_not_found(
    short_lived: tuple[Vaultd, Redis | None],
) -> None:
    vaultd, _ = short_lived
    objects = Stub(channel(f"127.0.0.1:{vaultd.port}"))
    meta = await create(objects, unique("late"), b"x")
    await objects.DeleteObject(pb.DeleteObjectRequest(id=meta.id))
    await objects.UndeleteObject(pb.UndeleteObjectRequest(id=meta.id))  # within: restored
    await objects.DeleteObject(pb.DeleteObjectRequest(id=meta.id))
    await asyncio.sleep(RETENTION_SECONDS + 0.2)
    await expect_error(objects.UndeleteObject(pb.UndeleteObjectRequest(id=meta.id)), *NOT_FOUND)


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
async def test_with_no_retention_delete_destroys_at_once(kind: str, tmp_path: Path) -> None:
    redis = RedisServer(tmp_path / "redis") if kind == "redis" else None
    if redis is not None:
        redis.start()
    settings = settings_for(
        tmp_path / "data", redis.url if redis else None, deleted_retention_days=0
    )
    vaultd = await start(settings)
    client = Redis.from_url(redis.url) if redis else None
    try:
        objects = Stub(channel(f"127.0.0.1:{vaultd.port}"))
        meta, _ = await _with_versions(objects, unique("now"))
        await objects.DeleteObject(pb.DeleteObjectRequest(id=meta.id))

        assert not await _holds_records_of(vaultd, client, meta.id)
        await _expect_gone(objects, meta)
        await expect_error(objects.UndeleteObject(pb.UndeleteObjectRequest(id=meta.id)), *NOT_FOUND)
        assert (await create(objects, meta.name, b"reborn")).id != meta.id
    finally:
        await vaultd.stop(None)
        if client is not None:
            await client.aclose()
        if redis is not None:
            redis.stop()
