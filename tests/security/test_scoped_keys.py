"""Context-scoped API keys (issue 16.1), over real gRPC on the embedded store, Redis and Redis
Cluster: a key confined to org_A is refused every operation on org_B's objects, data keys and
blobs, each with its status and reason; a lying or spliced blob does not help; a prefix-scoped
key lists exactly its tenants; constraints are checked when a key is made."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable
from dataclasses import replace
from typing import Any

import grpc
import pytest

from testkit.grpc_errors import details_of
from testkit.running import Running
from tests.security.scoped_support import Client, fresh_admin, scoped_key
from vaultd.core.blob import LocalBlob
from vaultd.core.envelope import EncryptedKeys
from vaultd.v1 import admin_service_pb2 as apb
from vaultd.v1 import key_service_pb2 as kpb
from vaultd.v1 import object_service_pb2 as opb

ORG = "organization_id"
MISSING = "secret_01ARZ3NDEKTSV4RRFFQ69G5FAV"


async def refused(call: Awaitable[Any], code: grpc.StatusCode, reason: str) -> str:
    """The message of a call that must fail with this status and reason."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    details = details_of(caught.value)
    assert (details.code, details.reason) == (code, reason), details
    return details.message


def denied(call: Awaitable[Any]) -> Awaitable[str]:
    return refused(call, grpc.StatusCode.PERMISSION_DENIED, "CONTEXT_NOT_PERMITTED")


def not_found(call: Awaitable[Any]) -> Awaitable[str]:
    return refused(call, grpc.StatusCode.NOT_FOUND, "OBJECT_NOT_FOUND")


@pytest.fixture
async def orgs(running: Running) -> tuple[Client, Client, str, str]:
    """(an unscoped admin, a key scoped to org_A, org_A, org_B) in a fresh environment."""
    admin = await fresh_admin(running)
    a, b = f"org_A{uuid.uuid4().hex[:6]}", f"org_B{uuid.uuid4().hex[:6]}"
    return admin, await scoped_key(admin, running, [f"{ORG}={a}"]), a, b


async def test_objects_of_another_tenant_read_as_missing(
    orgs: tuple[Client, Client, str, str],
) -> None:
    admin, tenant, _, b = orgs
    theirs = (
        await admin.objects.CreateObject(
            opb.CreateObjectRequest(name=f"b-{b}", value=b"B's secret", key_context={ORG: b})
        )
    ).metadata
    oid, vid = theirs.id, theirs.version_id
    o = tenant.objects
    # Each answer is the one a missing object gets, word for word but for the id.
    missing = await not_found(o.GetObject(opb.GetObjectRequest(id=MISSING)))
    assert await not_found(o.GetObject(opb.GetObjectRequest(id=oid))) == missing.replace(
        MISSING, oid
    )
    assert await not_found(
        o.GetObjectByName(opb.GetObjectByNameRequest(name=f"b-{b}"))
    ) == await not_found(o.GetObjectByName(opb.GetObjectByNameRequest(name="no-such-name")))
    await not_found(o.DescribeObject(opb.DescribeObjectRequest(id=oid)))
    await not_found(o.UpdateObject(opb.UpdateObjectRequest(id=oid, value=b"overwritten")))
    await not_found(o.DeleteObject(opb.DeleteObjectRequest(id=oid)))
    await not_found(o.DeleteObject(opb.DeleteObjectRequest(id=oid, version_check=vid)))
    await not_found(o.ListObjectVersions(opb.ListObjectVersionsRequest(id=oid)))
    msg = await not_found(o.GetObjectVersion(opb.GetObjectVersionRequest(id=oid, version_id=vid)))
    assert "has no version" in msg
    listed = await o.ListObjects(opb.ListObjectsRequest(limit=100))
    assert oid not in [d.id for d in listed.objects]
    await denied(
        o.CreateObject(opb.CreateObjectRequest(name="mine?", value=b"v", key_context={ORG: b}))
    )
    # Nothing was changed or removed: B's object is as it was.
    after = await admin.objects.GetObject(opb.GetObjectRequest(id=oid))
    assert after.object.value == b"B's secret" and after.object.metadata.version_id == vid


async def test_a_scoped_key_works_on_its_own_tenant(orgs: tuple[Client, Client, str, str]) -> None:
    _, tenant, a, _ = orgs
    o = tenant.objects
    made = (
        await o.CreateObject(
            opb.CreateObjectRequest(name=f"a-{a}", value=b"v1", key_context={ORG: a, "x": "y"})
        )
    ).metadata
    assert (await o.GetObject(opb.GetObjectRequest(id=made.id))).object.value == b"v1"
    got = await o.GetObjectByName(opb.GetObjectByNameRequest(name=f"a-{a}"))
    assert got.object.metadata.id == made.id
    await o.UpdateObject(opb.UpdateObjectRequest(id=made.id, value=b"v2"))
    versions = await o.ListObjectVersions(opb.ListObjectVersionsRequest(id=made.id))
    assert len(versions.versions) == 2
    old = await o.GetObjectVersion(
        opb.GetObjectVersionRequest(id=made.id, version_id=made.version_id)
    )
    assert old.object.value == b"v1"
    listed = await o.ListObjects(opb.ListObjectsRequest())
    assert [d.id for d in listed.objects] == [made.id]
    await o.DeleteObject(opb.DeleteObjectRequest(id=made.id))
    await not_found(o.GetObject(opb.GetObjectRequest(id=made.id)))

    k = tenant.keys
    key = await k.CreateDataKey(kpb.CreateDataKeyRequest(key_context={ORG: a}))
    opened = await k.DecryptDataKey(kpb.DecryptDataKeyRequest(encrypted_keys=key.encrypted_keys))
    assert opened.data_key == key.data_key
    rekeyed = await k.RekeyDataKey(
        kpb.RekeyDataKeyRequest(encrypted_keys=key.encrypted_keys, key_context={ORG: a, "u": "1"})
    )
    assert rekeyed.data_key == key.data_key
    blob = await k.Encrypt(kpb.EncryptRequest(plaintext=b"p", key_context={ORG: a}))
    plain = await k.Decrypt(kpb.DecryptRequest(ciphertext=blob.ciphertext))
    assert plain.plaintext == b"p"


async def test_a_scoped_key_undeletes_only_its_own_tenants_objects(
    orgs: tuple[Client, Client, str, str],
) -> None:
    admin, tenant, a, b = orgs
    theirs = (
        await admin.objects.CreateObject(
            opb.CreateObjectRequest(name=f"del-{b}", value=b"B's", key_context={ORG: b})
        )
    ).metadata
    await admin.objects.DeleteObject(opb.DeleteObjectRequest(id=theirs.id))
    # Another tenant's deleted object answers as a missing one, and stays deleted.
    missing = await not_found(tenant.objects.UndeleteObject(opb.UndeleteObjectRequest(id=MISSING)))
    refused_msg = await not_found(
        tenant.objects.UndeleteObject(opb.UndeleteObjectRequest(id=theirs.id))
    )
    assert refused_msg == missing.replace(MISSING, theirs.id)
    await not_found(admin.objects.GetObject(opb.GetObjectRequest(id=theirs.id)))
    # Its own deleted object comes back, value and all.
    mine = (
        await tenant.objects.CreateObject(
            opb.CreateObjectRequest(name=f"del-{a}", value=b"A's", key_context={ORG: a})
        )
    ).metadata
    await tenant.objects.DeleteObject(opb.DeleteObjectRequest(id=mine.id))
    await tenant.objects.UndeleteObject(opb.UndeleteObjectRequest(id=mine.id))
    got = await tenant.objects.GetObject(opb.GetObjectRequest(id=mine.id))
    assert got.object.value == b"A's"
    # The unscoped admin still can restore B's.
    await admin.objects.UndeleteObject(opb.UndeleteObjectRequest(id=theirs.id))
    assert (
        await admin.objects.GetObject(opb.GetObjectRequest(id=theirs.id))
    ).object.value == b"B's"


async def test_data_keys_and_blobs_of_another_tenant_are_refused(
    orgs: tuple[Client, Client, str, str],
) -> None:
    admin, tenant, a, b = orgs
    k = tenant.keys
    theirs = await admin.keys.CreateDataKey(kpb.CreateDataKeyRequest(key_context={ORG: b}))
    their_blob = await admin.keys.Encrypt(kpb.EncryptRequest(plaintext=b"B", key_context={ORG: b}))
    mine = await k.CreateDataKey(kpb.CreateDataKeyRequest(key_context={ORG: a}))

    await denied(k.CreateDataKey(kpb.CreateDataKeyRequest(key_context={ORG: b})))
    await denied(k.CreateDataKey(kpb.CreateDataKeyRequest(key_context={"other": "item"})))
    await denied(k.Encrypt(kpb.EncryptRequest(plaintext=b"p", key_context={ORG: b})))
    await denied(k.DecryptDataKey(kpb.DecryptDataKeyRequest(encrypted_keys=theirs.encrypted_keys)))
    await denied(k.Decrypt(kpb.DecryptRequest(ciphertext=their_blob.ciphertext)))
    # The lie: B's key, presented as A's. The context named in the request is where it would go,
    # never where it comes from: the source is judged by its own KEKs.
    await denied(
        k.RekeyDataKey(
            kpb.RekeyDataKeyRequest(encrypted_keys=theirs.encrypted_keys, key_context={ORG: a})
        )
    )
    # And A's own key may not be moved to B.
    await denied(
        k.RekeyDataKey(
            kpb.RekeyDataKeyRequest(encrypted_keys=mine.encrypted_keys, key_context={ORG: b})
        )
    )
    # The unscoped admin is unchanged: it opens both.
    opened = await admin.keys.DecryptDataKey(
        kpb.DecryptDataKeyRequest(encrypted_keys=theirs.encrypted_keys)
    )
    assert opened.data_key == theirs.data_key


async def test_a_blob_spliced_with_an_in_scope_entry_is_refused(
    orgs: tuple[Client, Client, str, str],
) -> None:
    """B's data key with one of A's entries added (and put first) still names B's KEK: refused,
    before anything is unwrapped, for the raw keys and inside a local-encryption blob."""
    admin, tenant, a, b = orgs
    theirs = await admin.keys.CreateDataKey(kpb.CreateDataKeyRequest(key_context={ORG: b}))
    mine = await tenant.keys.CreateDataKey(kpb.CreateDataKeyRequest(key_context={ORG: a}))
    their_keys = EncryptedKeys.parse(theirs.encrypted_keys)
    my_keys = EncryptedKeys.parse(mine.encrypted_keys)
    spliced = replace(their_keys, entries=(*my_keys.entries, *their_keys.entries)).to_bytes()
    await denied(tenant.keys.DecryptDataKey(kpb.DecryptDataKeyRequest(encrypted_keys=spliced)))
    their_blob = await admin.keys.Encrypt(kpb.EncryptRequest(plaintext=b"B", key_context={ORG: b}))
    parsed = LocalBlob.parse(their_blob.ciphertext)
    spliced_blob = replace(parsed, encrypted_keys=spliced).to_bytes()
    await denied(tenant.keys.Decrypt(kpb.DecryptRequest(ciphertext=spliced_blob)))
    # Only B's entries, under A's dek id, would not help either: the entries still name B.
    relabelled = replace(their_keys, dek_id=my_keys.dek_id).to_bytes()
    await denied(tenant.keys.DecryptDataKey(kpb.DecryptDataKeyRequest(encrypted_keys=relabelled)))


async def test_a_prefix_scoped_key_lists_exactly_its_tenants(running: Running) -> None:
    admin = await fresh_admin(running)
    prefix = f"t{uuid.uuid4().hex[:6]}_"
    ours: list[str] = []
    for i in range(12):
        org = f"{prefix}{i}" if i % 3 else f"other{i}"
        made = await admin.objects.CreateObject(
            opb.CreateObjectRequest(name=f"n{i}", value=b"v", key_context={ORG: org})
        )
        if i % 3:
            ours.append(made.metadata.id)
    tenant = await scoped_key(admin, running, [f"{ORG}={prefix}*"])
    seen: list[str] = []
    after = ""
    while True:
        page = await tenant.objects.ListObjects(
            opb.ListObjectsRequest(limit=3, after=after, order=opb.LIST_ORDER_ASCENDING)
        )
        seen += [d.id for d in page.objects]
        after = page.list_metadata.after
        if not after:
            break
    assert seen == ours
    back = await tenant.objects.ListObjects(
        opb.ListObjectsRequest(limit=3, before=ours[-1], order=opb.LIST_ORDER_ASCENDING)
    )
    assert [d.id for d in back.objects] == ours[-4:-1]
    assert back.list_metadata.before == ours[-4] and back.list_metadata.after == ours[-2]
    everything = await admin.objects.ListObjects(opb.ListObjectsRequest(limit=100))
    assert len(everything.objects) == 12  # the unscoped key still sees every tenant


async def test_alternatives_on_one_key_and_all_keys_must_hold(running: Running) -> None:
    admin = await fresh_admin(running)
    tenant = await scoped_key(admin, running, [f"{ORG}=org_1", f"{ORG}=org_2", "region=eu*"])

    async def create(context: dict[str, str]) -> Any:
        name = f"n-{uuid.uuid4().hex}"
        return tenant.objects.CreateObject(
            opb.CreateObjectRequest(name=name, value=b"v", key_context=context)
        )

    await (await create({ORG: "org_1", "region": "eu-west"}))
    await (await create({ORG: "org_2", "region": "eu", "extra": "free"}))
    await denied(await create({ORG: "org_1"}))  # region missing
    await denied(await create({ORG: "org_3", "region": "eu"}))  # neither org
    await denied(await create({ORG: "org_1", "region": "us-east"}))  # region outside prefix
    await denied(await create({ORG: "org_10", "region": "eu"}))  # exact, not a prefix


@pytest.mark.parametrize(
    ("constraint", "problem"),
    [
        ("organization_id", "key=value"),
        ("=org_1", "empty key"),
        ("organization_id=", "empty"),
        ("organization_id=*", "empty"),
        ("organization_id=org_*_1", "one '*'"),
        ("organization_id=org**", "one '*'"),
        ("organization_id=org\x00", "control characters"),
    ],
)
async def test_bad_constraints_are_invalid_argument_naming_them(
    running: Running, constraint: str, problem: str
) -> None:
    admin = await fresh_admin(running)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await admin.admin.CreateApiKey(
            apb.CreateApiKeyRequest(
                permissions=["keys:use"], context_constraints=[f"{ORG}=fine", constraint]
            )
        )
    details = details_of(caught.value)
    assert (details.code, details.reason) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_CONTEXT_CONSTRAINT",
    )
    ((field, description),) = details.violations
    assert field.startswith("context_constraints[1]") and problem in description


async def test_an_admin_key_cannot_be_scoped_and_lists_show_constraints(running: Running) -> None:
    admin = await fresh_admin(running)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await admin.admin.CreateApiKey(
            apb.CreateApiKeyRequest(permissions=["admin"], context_constraints=[f"{ORG}=org_1"])
        )
    assert details_of(caught.value).reason == "INVALID_CONTEXT_CONSTRAINT"
    made = await scoped_key(admin, running, [f"{ORG}=org_1", f"{ORG}=org_1", "r=é*"])
    listed = await admin.admin.ListApiKeys(apb.ListApiKeysRequest())
    constraints = {k.name: list(k.context_constraints) for k in listed.api_keys}
    assert constraints["tenant key"] == [f"{ORG}=org_1", "r=é*"]
    assert constraints["scoped-admin"] == []
    await made.channel.close()
