"""Reads and lists by key context, and version numbers, over real gRPC on every store (the
`objects` fixture runs on the embedded store, Redis and Redis Cluster)."""

from __future__ import annotations

import uuid

import grpc

from testkit.grpc_errors import expect_error
from testkit.names import unique
from testkit.objects import create
from vaultd.v1 import object_service_pb2 as pb
from vaultd.v1 import object_service_pb2_grpc as pb_grpc

Stub = pb_grpc.ObjectServiceStub


def tenant() -> str:
    return f"org_{uuid.uuid4().hex[:10]}"


async def test_a_read_with_another_context_is_not_found(objects: Stub) -> None:
    org = tenant()
    context = {"organization_id": org, "region": "eu"}
    meta = await create(objects, unique(), b"tenant secret", context)

    for wanted in ({"organization_id": org}, context):
        got = await objects.GetObject(pb.GetObjectRequest(id=meta.id, key_context=wanted))
        assert got.object.value == b"tenant secret"
        by_name = await objects.GetObjectByName(
            pb.GetObjectByNameRequest(name=meta.name, key_context=wanted)
        )
        assert by_name.object.id == meta.id

    missing = await expect_error(
        objects.GetObject(pb.GetObjectRequest(id="secret_" + "0" * 26)),
        grpc.StatusCode.NOT_FOUND,
        "OBJECT_NOT_FOUND",
    )
    for wrong in (
        {"organization_id": tenant()},
        {"organization_id": org, "region": "us"},
        {"organization_id": org, "user_id": "u1"},
    ):
        refused = await expect_error(
            objects.GetObject(pb.GetObjectRequest(id=meta.id, key_context=wrong)),
            grpc.StatusCode.NOT_FOUND,
            "OBJECT_NOT_FOUND",
        )
        # The same answer as for an object that does not exist, bar the id it names.
        assert refused.message.replace(meta.id, "X") == missing.message.replace(
            "secret_" + "0" * 26, "X"
        )
        refused_by_name = await expect_error(
            objects.GetObjectByName(pb.GetObjectByNameRequest(name=meta.name, key_context=wrong)),
            grpc.StatusCode.NOT_FOUND,
            "OBJECT_NOT_FOUND",
        )
        assert meta.id not in refused_by_name.message


async def test_a_bad_context_filter_is_invalid_argument(objects: Stub) -> None:
    meta = await create(objects, unique(), b"v")
    for bad in ({"organization_id": ""}, {"": "x"}, {f"k{i}": "v" for i in range(11)}):
        await expect_error(
            objects.GetObject(pb.GetObjectRequest(id=meta.id, key_context=bad)),
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_KEY_CONTEXT",
        )
        await expect_error(
            objects.ListObjects(pb.ListObjectsRequest(key_context=bad)),
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_KEY_CONTEXT",
        )


async def list_all(objects: Stub, request: pb.ListObjectsRequest) -> list[str]:
    """Every id, page by page through `after` (on a copy: the request is left as given)."""
    request = pb.ListObjectsRequest.FromString(request.SerializeToString())
    ids: list[str] = []
    while True:
        reply = await objects.ListObjects(request)
        ids += [o.id for o in reply.objects]
        if not reply.list_metadata.after:
            return ids
        request.after = reply.list_metadata.after


async def test_a_list_by_context_returns_one_tenants_objects_paged(objects: Stub) -> None:
    mine, theirs = tenant(), tenant()
    made: dict[str, list[str]] = {mine: [], theirs: []}
    for n in range(8):
        org = mine if n % 3 else theirs
        meta = await create(objects, unique(), b"v", {"organization_id": org, "n": str(n % 2)})
        made[org].append(meta.id)

    asc = pb.ListObjectsRequest(
        limit=2, order=pb.LIST_ORDER_ASCENDING, key_context={"organization_id": mine}
    )
    assert await list_all(objects, asc) == made[mine]
    desc = pb.ListObjectsRequest(limit=3, key_context={"organization_id": mine})
    assert await list_all(objects, desc) == made[mine][::-1]
    both = pb.ListObjectsRequest(
        limit=100, order=pb.LIST_ORDER_ASCENDING, key_context={"organization_id": mine, "n": "1"}
    )
    first = await objects.ListObjects(both)
    assert len(first.objects) >= 1
    assert all(o.id in made[mine] for o in first.objects)

    # Back from the last page with `before`, as a client paging backwards does.
    last = made[mine][-1]
    back = await objects.ListObjects(
        pb.ListObjectsRequest(
            limit=2,
            order=pb.LIST_ORDER_ASCENDING,
            before=last,
            key_context={"organization_id": mine},
        )
    )
    assert [o.id for o in back.objects] == made[mine][-3:-1]
    assert back.list_metadata.before and back.list_metadata.after == made[mine][-2]

    await objects.DeleteObject(pb.DeleteObjectRequest(id=made[mine][0]))
    assert await list_all(objects, asc) == made[mine][1:]


async def test_version_numbers_count_from_one(objects: Stub) -> None:
    created = await create(objects, unique(), b"one")
    assert created.version_number == 1
    second = (
        await objects.UpdateObject(pb.UpdateObjectRequest(id=created.id, value=b"two"))
    ).metadata
    third = (
        await objects.UpdateObject(
            pb.UpdateObjectRequest(id=created.id, value=b"three", version_check=second.version_id)
        )
    ).metadata
    assert (second.version_number, third.version_number) == (2, 3)

    got = (await objects.GetObject(pb.GetObjectRequest(id=created.id))).object
    assert (got.value, got.metadata.version_number) == (b"three", 3)
    described = await objects.DescribeObject(pb.DescribeObjectRequest(id=created.id))
    assert described.metadata.version_number == 3
    versions = (
        await objects.ListObjectVersions(pb.ListObjectVersionsRequest(id=created.id))
    ).versions
    assert [(v.id, v.version_number, v.current_version) for v in versions] == [
        (created.version_id, 1, False),
        (second.version_id, 2, False),
        (third.version_id, 3, True),
    ]
    for meta, value in ((created, b"one"), (second, b"two")):
        old = await objects.GetObjectVersion(
            pb.GetObjectVersionRequest(id=created.id, version_id=meta.version_id)
        )
        assert (old.object.value, old.object.metadata.version_number) == (
            value,
            meta.version_number,
        )
