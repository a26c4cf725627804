"""KEK rotation, retirement and shredding through the admin RPCs of a real vaultd."""

from __future__ import annotations

import uuid

import grpc

from testkit.auth import add_api_key, channel
from testkit.grpc_errors import refused
from testkit.lifecycle import item, items, new_org, wait_job
from testkit.running import Running
from vaultd.core.keyring import kek_id_for
from vaultd.storage import AuditQuery
from vaultd.v1 import admin_service_pb2 as apb
from vaultd.v1 import admin_service_pb2_grpc as apb_grpc
from vaultd.v1 import key_service_pb2 as kpb
from vaultd.v1 import object_service_pb2 as pb

FAILED, INVALID = grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.INVALID_ARGUMENT


async def create(lc: Running, context: dict[str, str], value: bytes) -> pb.ObjectMetadata:
    request = pb.CreateObjectRequest(name=f"o-{uuid.uuid4().hex}", value=value, key_context=context)
    return (await lc.objects.CreateObject(request)).metadata


async def value_of(lc: Running, object_id: str, version_id: str = "") -> bytes:
    if version_id:
        request = pb.GetObjectVersionRequest(id=object_id, version_id=version_id)
        return (await lc.objects.GetObjectVersion(request)).object.value
    return (await lc.objects.GetObject(pb.GetObjectRequest(id=object_id))).object.value


async def test_rotate_then_old_and_new_read_and_new_data_uses_the_new_version(
    lifecycle: Running,
) -> None:
    org = new_org()
    kek_id = kek_id_for("default", *next(iter(org.items())))
    old = await create(lifecycle, org, b"old")
    data_key = await lifecycle.keys.CreateDataKey(kpb.CreateDataKeyRequest(key_context=org))
    assert list(old.key_ids) == [f"{kek_id}.v1"]

    rotated = await lifecycle.admin.RotateKeks(apb.RotateKeksRequest(selector=items(org)))
    (kek,) = rotated.keks
    assert (kek.id, kek.item, [v.version for v in kek.versions]) == (kek_id, item(org), [1, 2])
    assert kek.min_decryption_version == 1 and kek.versions[1].key_uri == "internal://root"

    new = await create(lifecycle, org, b"new")
    updated = await lifecycle.objects.UpdateObject(pb.UpdateObjectRequest(id=old.id, value=b"old2"))
    assert list(new.key_ids) == list(updated.metadata.key_ids) == [f"{kek_id}.v2"]
    assert await value_of(lifecycle, old.id, old.version_id) == b"old"
    assert await value_of(lifecycle, old.id) == b"old2"
    assert await value_of(lifecycle, new.id) == b"new"
    opened = await lifecycle.keys.DecryptDataKey(
        kpb.DecryptDataKeyRequest(encrypted_keys=data_key.encrypted_keys)
    )
    assert opened.data_key == data_key.data_key
    listed = await lifecycle.admin.ListKeks(apb.ListKeksRequest())
    assert [len(k.versions) for k in listed.keks if k.id == kek_id] == [2]


async def test_rotate_by_pattern_and_first_version_for_a_named_item(lifecycle: Running) -> None:
    prefix = f"org_p{uuid.uuid4().hex[:8]}_"
    a, b = ({"organization_id": f"{prefix}{n}"} for n in "ab")
    for context in (a, b):
        await create(lifecycle, context, b"x")
    by_pattern = apb.KekSelector(items=[f"organization_id={prefix}*"])
    rotated = await lifecycle.admin.RotateKeks(apb.RotateKeksRequest(selector=by_pattern))
    assert sorted((k.item, len(k.versions)) for k in rotated.keks) == [
        (item(a), 2),
        (item(b), 2),
    ]
    fresh = new_org()
    (made,) = (await lifecycle.admin.RotateKeks(apb.RotateKeksRequest(selector=items(fresh)))).keks
    assert (made.item, len(made.versions)) == (item(fresh), 1)


async def test_selectors_and_items_are_checked(lifecycle: Running) -> None:
    bad = [
        apb.KekSelector(),
        apb.KekSelector(items=["organization_id=x"], all=True),
        apb.KekSelector(items=["no-equals-sign"]),
        apb.KekSelector(items=["=value"]),
    ]
    for selector in bad:
        await refused(
            lifecycle.admin.RotateKeks(apb.RotateKeksRequest(selector=selector)),
            INVALID,
            "INVALID_ARGUMENT" if selector.all or not selector.items else _reason(selector),
        )
    await refused(
        lifecycle.admin.GetRewrapJob(apb.GetRewrapJobRequest(id="rewrap_../../etc")),
        INVALID,
        "INVALID_ID",
    )
    await refused(
        lifecycle.admin.GetRewrapJob(
            apb.GetRewrapJobRequest(id="rewrap_01JD0000000000000000000000")
        ),
        grpc.StatusCode.NOT_FOUND,
        "REWRAP_JOB_NOT_FOUND",
    )
    await refused(
        lifecycle.admin.RetireKekVersions(
            apb.RetireKekVersionsRequest(item=item(new_org()), min_decryption_version=1)
        ),
        grpc.StatusCode.NOT_FOUND,
        "KEK_NOT_FOUND",
    )


def _reason(selector: apb.KekSelector) -> str:
    return "INVALID_ARGUMENT" if "=" not in selector.items[0] else "INVALID_KEY_CONTEXT"


async def test_retire_refuses_blobs_under_old_versions_with_a_clear_reason(
    lifecycle: Running,
) -> None:
    org = new_org()
    obj = await create(lifecycle, org, b"kept")
    old_key = await lifecycle.keys.CreateDataKey(kpb.CreateDataKeyRequest(key_context=org))
    await lifecycle.admin.RotateKeks(apb.RotateKeksRequest(selector=items(org)))
    job = (await lifecycle.admin.StartRewrap(apb.StartRewrapRequest(selector=items(org)))).job
    assert (await wait_job(lifecycle.admin, job.id)).state == apb.REWRAP_STATE_DONE

    for bad in (0, 3):
        await refused(
            lifecycle.admin.RetireKekVersions(
                apb.RetireKekVersionsRequest(item=item(org), min_decryption_version=bad)
            ),
            INVALID,
            "INVALID_ARGUMENT",
        )
    retired = await lifecycle.admin.RetireKekVersions(
        apb.RetireKekVersionsRequest(item=item(org), min_decryption_version=2)
    )
    assert retired.kek.min_decryption_version == 2
    assert await value_of(lifecycle, obj.id) == b"kept", "rewrapped: nothing breaks"
    decrypt = kpb.DecryptDataKeyRequest(encrypted_keys=old_key.encrypted_keys)
    message = await refused(lifecycle.keys.DecryptDataKey(decrypt), FAILED, "KEY_VERSION_RETIRED")
    assert ".v1 is retired" in message

    # Callers move their data-key blobs with RekeyDataKey while the old version still decrypts.
    await lifecycle.admin.RetireKekVersions(
        apb.RetireKekVersionsRequest(item=item(org), min_decryption_version=1)
    )
    rekeyed = await lifecycle.keys.RekeyDataKey(
        kpb.RekeyDataKeyRequest(encrypted_keys=old_key.encrypted_keys, key_context=org)
    )
    assert [k.rsplit(".", 1)[1] for k in rekeyed.key_ids] == ["v2"]
    await lifecycle.admin.RetireKekVersions(
        apb.RetireKekVersionsRequest(item=item(org), min_decryption_version=2)
    )
    opened = await lifecycle.keys.DecryptDataKey(
        kpb.DecryptDataKeyRequest(encrypted_keys=rekeyed.encrypted_keys)
    )
    assert opened.data_key == old_key.data_key


async def test_shred_locks_one_tenant_for_good_and_is_audited(lifecycle: Running) -> None:
    doomed, other = new_org(), new_org()
    gone = await create(lifecycle, doomed, b"doomed")
    kept = await create(lifecycle, other, b"other")
    gone_key = await lifecycle.keys.CreateDataKey(kpb.CreateDataKeyRequest(key_context=doomed))
    sealed = await lifecycle.keys.Encrypt(kpb.EncryptRequest(plaintext=b"p", key_context=doomed))

    request = apb.ShredKekRequest(item=item(doomed))
    await refused(lifecycle.admin.ShredKek(request), INVALID, "INVALID_ARGUMENT")
    assert await value_of(lifecycle, gone.id) == b"doomed", "unconfirmed: nothing happened"
    shredded = (
        await lifecycle.admin.ShredKek(apb.ShredKekRequest(item=item(doomed), confirm=True))
    ).kek
    assert shredded.HasField("shredded_at") and list(shredded.versions) == []

    for call in (
        lifecycle.objects.GetObject(pb.GetObjectRequest(id=gone.id)),
        lifecycle.keys.DecryptDataKey(
            kpb.DecryptDataKeyRequest(encrypted_keys=gone_key.encrypted_keys)
        ),
        lifecycle.keys.Decrypt(kpb.DecryptRequest(ciphertext=sealed.ciphertext)),
        lifecycle.objects.CreateObject(
            pb.CreateObjectRequest(name=f"o-{uuid.uuid4().hex}", value=b"v", key_context=doomed)
        ),
    ):
        await refused(call, FAILED, "KEY_SHREDDED")
    assert await value_of(lifecycle, kept.id) == b"other"
    again = await lifecycle.admin.ShredKek(apb.ShredKekRequest(item=item(doomed), confirm=True))
    assert again.kek.shredded_at == shredded.shredded_at, "the first shred's time stays"

    events = await lifecycle.vaultd.store.read_audit_events(
        "default", AuditQuery(type="vault.kek.shredded", limit=1000)
    )
    keys = lifecycle.vaultd.audit_log.keys  # type: ignore[union-attr]
    assert keys is not None  # context values are stored as keyed hashes
    mine = [
        e
        for e in events.events
        if dict(e.key_context) == {k: keys.field_hash(v) for k, v in doomed.items()}
    ]
    assert [(e.outcome, e.key_ids) for e in mine] == [
        ("INVALID_ARGUMENT", ()),
        ("success", (shredded.id,)),
        ("success", (shredded.id,)),
    ]
    assert mine[1].actor_name == "bootstrap"


async def test_lifecycle_rpcs_need_admin(lifecycle: Running) -> None:
    secret = f"sk_{uuid.uuid4().hex}{uuid.uuid4().hex[:11]}"
    await add_api_key(lifecycle.vaultd.store, secret, permissions=("objects:read", "keys:use"))
    async with channel(f"127.0.0.1:{lifecycle.vaultd.port}", secret) as chan:
        admin = apb_grpc.AdminServiceStub(chan)
        request = apb.ShredKekRequest(item=item(new_org()), confirm=True)
        await refused(
            admin.ShredKek(request), grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED"
        )
        await refused(
            admin.RotateKeks(apb.RotateKeksRequest(selector=apb.KekSelector(all=True))),
            grpc.StatusCode.PERMISSION_DENIED,
            "PERMISSION_DENIED",
        )
