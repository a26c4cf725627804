"""ObjectService over a real gRPC socket, on the embedded (SQLite) and the Redis store."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from testkit.grpc_errors import details_of, expect_error
from testkit.names import unique
from testkit.objects import ORG, create
from testkit.running import Running
from vaultd.v1 import object_service_pb2 as pb
from vaultd.v1 import object_service_pb2_grpc as pb_grpc

Stub = pb_grpc.ObjectServiceStub


async def test_an_object_reads_back_by_id_name_and_version_until_deleted(objects: Stub) -> None:
    name = unique()
    created = await create(objects, name, b"v1-secret", {"organization_id": "org_1", "user": "u"})
    assert created.id.startswith("secret_") and created.name == name
    assert dict(created.key_context) == {"organization_id": "org_1", "user": "u"}
    assert len(created.key_ids) == 2 and all(k.startswith("kek_") for k in created.key_ids)
    assert created.version_id.startswith("ver_")
    assert created.environment_id == "default"

    got = (await objects.GetObject(pb.GetObjectRequest(id=created.id))).object
    assert (got.id, got.name, got.value) == (created.id, name, b"v1-secret")
    assert got.metadata == created

    by_name = (await objects.GetObjectByName(pb.GetObjectByNameRequest(name=name))).object
    assert by_name == got

    described = await objects.DescribeObject(pb.DescribeObjectRequest(id=created.id))
    assert described.metadata == created
    assert b"v1-secret" not in described.SerializeToString()

    v2 = (await objects.UpdateObject(pb.UpdateObjectRequest(id=created.id, value=b"v2"))).metadata
    assert v2.version_id != created.version_id and v2.created_at == created.created_at
    v3 = (
        await objects.UpdateObject(
            pb.UpdateObjectRequest(id=created.id, value=b"third!", version_check=v2.version_id)
        )
    ).metadata
    current = (await objects.GetObject(pb.GetObjectRequest(id=created.id))).object
    assert current.value == b"third!" and current.metadata.version_id == v3.version_id

    versions = (
        await objects.ListObjectVersions(pb.ListObjectVersionsRequest(id=created.id))
    ).versions
    assert [v.id for v in versions] == [created.version_id, v2.version_id, v3.version_id]
    assert [v.current_version for v in versions] == [False, False, True]
    assert [v.size for v in versions] == [9, 2, 6]
    assert len({v.etag for v in versions}) == 3 and all(v.etag for v in versions)

    old = (
        await objects.GetObjectVersion(
            pb.GetObjectVersionRequest(id=created.id, version_id=created.version_id)
        )
    ).object
    assert old.value == b"v1-secret" and old.metadata.version_id == created.version_id

    await objects.DeleteObject(pb.DeleteObjectRequest(id=created.id, version_check=v3.version_id))
    await expect_error(
        objects.GetObject(pb.GetObjectRequest(id=created.id)),
        grpc.StatusCode.NOT_FOUND,
        "OBJECT_NOT_FOUND",
    )
    await expect_error(
        objects.GetObjectByName(pb.GetObjectByNameRequest(name=name)),
        grpc.StatusCode.NOT_FOUND,
        "OBJECT_NOT_FOUND",
    )
    await expect_error(
        objects.ListObjectVersions(pb.ListObjectVersionsRequest(id=created.id)),
        grpc.StatusCode.NOT_FOUND,
        "OBJECT_NOT_FOUND",
    )
    listed = await objects.ListObjects(pb.ListObjectsRequest(name_prefix=name, limit=100))
    assert list(listed.objects) == []
    # The name stays reserved while the object can still be undeleted (tests/server/
    # test_soft_delete.py shows it freed by a purge).
    await expect_error(
        objects.CreateObject(pb.CreateObjectRequest(name=name, value=b"reborn", key_context=ORG)),
        grpc.StatusCode.ALREADY_EXISTS,
        "NAME_TAKEN",
    )


async def _page_all(stub: Stub, prefix: str, order: int, limit: int) -> list[str]:
    seen: list[str] = []
    after = ""
    while True:
        page = await stub.ListObjects(
            pb.ListObjectsRequest(limit=limit, after=after, order=order, name_prefix=prefix)
        )
        seen += [o.id for o in page.objects]
        assert len(page.objects) <= limit
        if not page.list_metadata.after:
            return seen
        after = page.list_metadata.after


async def test_list_pages_through_every_object_exactly_once(objects: Stub) -> None:
    prefix = unique("list")
    ids = []
    for i in range(23):
        ids.append((await create(objects, f"{prefix}/{i:02d}", b"x")).id)
        await asyncio.sleep(0.002)  # distinct milliseconds keep creation order unambiguous
    await create(objects, unique("other"), b"not in the prefix")

    ascending = await _page_all(objects, prefix, pb.LIST_ORDER_ASCENDING, 5)
    assert ascending == ids
    descending = await _page_all(objects, prefix, pb.LIST_ORDER_UNSPECIFIED, 7)
    assert descending == ids[::-1]

    # Walking back with `before` from the last page gives the same pages in reverse.
    last = await objects.ListObjects(
        pb.ListObjectsRequest(
            limit=5, order=pb.LIST_ORDER_ASCENDING, name_prefix=prefix, after=ids[17]
        )
    )
    assert [o.id for o in last.objects] == ids[18:23]
    assert last.list_metadata.after == "" and last.list_metadata.before == ids[18]
    back = await objects.ListObjects(
        pb.ListObjectsRequest(
            limit=5,
            order=pb.LIST_ORDER_ASCENDING,
            name_prefix=prefix,
            before=last.list_metadata.before,
        )
    )
    assert [o.id for o in back.objects] == ids[13:18]
    assert back.list_metadata.before == ids[13] and back.list_metadata.after == ids[17]
    first = await objects.ListObjects(
        pb.ListObjectsRequest(limit=5, order=pb.LIST_ORDER_ASCENDING, name_prefix=prefix)
    )
    assert first.list_metadata.before == "" and first.list_metadata.after == ids[4]

    # updated_after: only the objects touched after the mark.
    mark = datetime.now(UTC)
    await asyncio.sleep(0.01)
    await objects.UpdateObject(pb.UpdateObjectRequest(id=ids[3], value=b"new"))
    await objects.UpdateObject(pb.UpdateObjectRequest(id=ids[20], value=b"new"))
    ts = Timestamp()
    ts.FromDatetime(mark)
    recent = await objects.ListObjects(
        pb.ListObjectsRequest(name_prefix=prefix, updated_after=ts, limit=100)
    )
    assert [o.id for o in recent.objects] == [ids[20], ids[3]]
    assert all(o.name.startswith(prefix) for o in recent.objects)


@pytest.mark.parametrize(
    ("context", "field_part"),
    [
        ({}, "key_context"),
        ({f"k{i}": "v" for i in range(11)}, "key_context"),
        ({"": "v"}, "key_context"),
        ({"k": ""}, "key_context['k']"),
        ({"k" * 121: "v"}, "key_context["),
        ({"k": "v" * 501}, "key_context['k']"),
    ],
    ids=["0-items", "11-items", "empty-key", "empty-value", "key-121", "value-501"],
)
async def test_key_context_rules(objects: Stub, context: dict[str, str], field_part: str) -> None:
    details = await expect_error(
        objects.CreateObject(
            pb.CreateObjectRequest(name=unique(), value=b"x", key_context=context)
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_KEY_CONTEXT",
    )
    assert details.violations and details.violations[0][0].startswith(field_part)


async def test_key_context_limits_are_inclusive(objects: Stub) -> None:
    ten = {f"k{i}": "v" for i in range(9)} | {"k" * 120: "v" * 500}
    meta = await create(objects, unique(), b"x", ten)
    assert len(meta.key_ids) == 10


async def test_each_bad_object_call_is_refused_with_its_status_and_reason(
    objects: Stub, running: Running
) -> None:
    name = unique()
    meta = await create(objects, name, b"one")
    await expect_error(
        objects.CreateObject(pb.CreateObjectRequest(name=name, value=b"two", key_context=ORG)),
        grpc.StatusCode.ALREADY_EXISTS,
        "NAME_TAKEN",
    )
    newer = (await objects.UpdateObject(pb.UpdateObjectRequest(id=meta.id, value=b"2"))).metadata
    stale = await expect_error(
        objects.UpdateObject(
            pb.UpdateObjectRequest(id=meta.id, value=b"3", version_check=meta.version_id)
        ),
        grpc.StatusCode.ABORTED,
        "VERSION_CONFLICT",
    )
    assert stale.metadata["current_version_id"] == newer.version_id
    stale_delete = await expect_error(
        objects.DeleteObject(pb.DeleteObjectRequest(id=meta.id, version_check=meta.version_id)),
        grpc.StatusCode.ABORTED,
        "VERSION_CONFLICT",
    )
    assert stale_delete.metadata["current_version_id"] == newer.version_id
    missing = "secret_01JD0000000000000000000000"
    for call in (
        objects.GetObject(pb.GetObjectRequest(id=missing)),
        objects.DescribeObject(pb.DescribeObjectRequest(id=missing)),
        objects.UpdateObject(pb.UpdateObjectRequest(id=missing, value=b"x")),
        objects.DeleteObject(pb.DeleteObjectRequest(id=missing)),
        objects.GetObjectVersion(
            pb.GetObjectVersionRequest(id=meta.id, version_id="ver_01JD0000000000000000000000")
        ),
    ):
        await expect_error(call, grpc.StatusCode.NOT_FOUND, "OBJECT_NOT_FOUND")
    await expect_error(
        objects.GetObject(pb.GetObjectRequest(id="not-an-id")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_ID",
    )
    too_big = bytes(64 * 1024 + 1)
    details = await expect_error(
        objects.CreateObject(pb.CreateObjectRequest(name=unique(), value=too_big, key_context=ORG)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "VALUE_TOO_LARGE",
    )
    assert details.violations[0][0] == "value"
    await expect_error(
        objects.UpdateObject(pb.UpdateObjectRequest(id=meta.id, value=too_big)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "VALUE_TOO_LARGE",
    )
    for bad_name in ("", "a\nb", "x" * 513):
        await expect_error(
            objects.CreateObject(pb.CreateObjectRequest(name=bad_name, value=b"", key_context=ORG)),
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_NAME",
        )
    await expect_error(
        objects.ListObjects(pb.ListObjectsRequest(after="garbage")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_CURSOR",
    )
    await expect_error(
        objects.ListObjects(pb.ListObjectsRequest(limit=101)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_ARGUMENT",
    )
    # Bytes that are not a CreateObjectRequest at all: INVALID_ARGUMENT, not INTERNAL.
    raw = running.channel.unary_unary("/vaultd.v1.ObjectService/CreateObject")
    await expect_error(
        raw(b"\xff\xff\xff\xff"), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT"
    )


async def test_concurrent_updates_with_one_version_check(objects: Stub) -> None:
    meta = await create(objects, unique(), b"base")
    results = await asyncio.gather(
        *(
            objects.UpdateObject(
                pb.UpdateObjectRequest(
                    id=meta.id, value=f"writer {i}".encode(), version_check=meta.version_id
                )
            )
            for i in range(50)
        ),
        return_exceptions=True,
    )
    winners = [r for r in results if isinstance(r, pb.UpdateObjectResponse)]
    losers = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(winners) == 1 and len(losers) == 49
    for loser in losers:
        details = details_of(loser)
        assert (details.code, details.reason) == (grpc.StatusCode.ABORTED, "VERSION_CONFLICT")
        assert details.metadata["current_version_id"] == winners[0].metadata.version_id
    versions = (await objects.ListObjectVersions(pb.ListObjectVersionsRequest(id=meta.id))).versions
    assert len(versions) == 2
    got = (await objects.GetObject(pb.GetObjectRequest(id=meta.id))).object
    assert got.metadata.version_id == winners[0].metadata.version_id
