"""API keys over a real gRPC socket, on both stores: who may call, and in which environment."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from testkit.auth import ALL_PERMISSIONS, add_api_key, bearer, channel
from testkit.grpc_errors import details_of, expect_error
from testkit.names import unique
from testkit.running import Running, settings_for
from vaultd.api.rpcs import RPCS
from vaultd.core.apikeys import new_secret, secret_hash
from vaultd.server import SERVICE_NAMES, start
from vaultd.storage import ApiKeyRecord
from vaultd.v1 import admin_service_pb2 as admin_pb
from vaultd.v1 import admin_service_pb2_grpc as admin_grpc
from vaultd.v1 import key_service_pb2 as key_pb
from vaultd.v1 import key_service_pb2_grpc as key_grpc
from vaultd.v1 import object_service_pb2 as pb
from vaultd.v1 import object_service_pb2_grpc as pb_grpc

MISSING_ID = "secret_01J9Z3K4ABCDEFGHJKMNPQRSTV"


async def key_for(
    running: Running,
    environment: str = "default",
    permissions: tuple[str, ...] = ALL_PERMISSIONS,
    name: str = "test key",
) -> tuple[str, ApiKeyRecord]:
    """A new key, made directly on the server's store (as `vaultd apikey create` does)."""
    secret = new_secret()
    return secret, await add_api_key(running.vaultd.store, secret, environment, permissions, name)


async def refused(call: Any, code: grpc.StatusCode, reason: str) -> str:
    """Await a call that must fail with `code` and `reason`; its message."""
    return str((await expect_error(call, code, reason)).message)


@pytest.fixture
async def anonymous(running: Running) -> AsyncIterator[grpc.aio.Channel]:
    """A channel that sends no key of its own."""
    plain = channel(running.target, None)
    yield plain
    await plain.close()


# --- authentication ------------------------------------------------------------------------


def test_every_rpc_of_every_service_has_a_permission_and_an_event() -> None:
    from vaultd.v1 import admin_service_pb2, key_service_pb2, object_service_pb2

    served = {
        f"/{service.full_name}/{method.name}"
        for module in (object_service_pb2, key_service_pb2, admin_service_pb2)
        for service in module.DESCRIPTOR.services_by_name.values()
        for method in service.methods
    }
    assert {name.split("/")[1] for name in served} == set(SERVICE_NAMES)
    assert served <= set(RPCS)
    assert all(RPCS[m].permission is not None for m in served)


async def test_calls_without_a_key_are_unauthenticated(
    running: Running, anonymous: grpc.aio.Channel
) -> None:
    calls = [
        pb_grpc.ObjectServiceStub(anonymous).GetObject(pb.GetObjectRequest(id=MISSING_ID)),
        pb_grpc.ObjectServiceStub(anonymous).CreateObject(
            pb.CreateObjectRequest(name="n", value=b"v", key_context={"a": "b"})
        ),
        key_grpc.KeyServiceStub(anonymous).CreateDataKey(
            key_pb.CreateDataKeyRequest(key_context={"a": "b"})
        ),
        admin_grpc.AdminServiceStub(anonymous).ListApiKeys(admin_pb.ListApiKeysRequest()),
    ]
    for call in calls:
        message = await refused(call, grpc.StatusCode.UNAUTHENTICATED, "API_KEY_MISSING")
        assert "authorization: Bearer" in message


async def test_unparseable_requests_of_unknown_callers_are_not_even_read(
    anonymous: grpc.aio.Channel,
) -> None:
    raw = anonymous.unary_unary("/vaultd.v1.ObjectService/GetObject")
    await refused(raw(b"\xff\xff not protobuf"), grpc.StatusCode.UNAUTHENTICATED, "API_KEY_MISSING")


@pytest.mark.parametrize(
    "authorization",
    [
        "sk_" + "A" * 43,  # no scheme
        "Basic dXNlcjpwYXNz",
        "Bearer",
        "Bearer ",
        "Bearer not-a-key",
        "Bearer sk_" + "A" * 42,
        "Bearer sk_" + "A" * 44,
        "Bearer sk_" + "A" * 42 + "!",
        "Bearer pk_" + "A" * 43,
    ],
)
async def test_malformed_keys_are_unauthenticated(running: Running, authorization: str) -> None:
    stub = pb_grpc.ObjectServiceStub(running.channel)
    call = stub.GetObject(
        pb.GetObjectRequest(id=MISSING_ID), metadata=[("authorization", authorization)]
    )
    await refused(call, grpc.StatusCode.UNAUTHENTICATED, "API_KEY_MALFORMED")


async def test_two_authorization_entries_are_malformed(anonymous: grpc.aio.Channel) -> None:
    stub = pb_grpc.ObjectServiceStub(anonymous)
    two = [*bearer(new_secret()), *bearer(new_secret())]
    call = stub.GetObject(pb.GetObjectRequest(id=MISSING_ID), metadata=two)
    await refused(call, grpc.StatusCode.UNAUTHENTICATED, "API_KEY_MALFORMED")


async def test_an_unknown_key_is_unauthenticated(running: Running) -> None:
    stub = pb_grpc.ObjectServiceStub(running.channel)
    call = stub.GetObject(pb.GetObjectRequest(id=MISSING_ID), metadata=bearer(new_secret()))
    message = await refused(call, grpc.StatusCode.UNAUTHENTICATED, "API_KEY_INVALID")
    assert "sk_" not in message


async def test_the_scheme_is_case_insensitive(running: Running) -> None:
    secret, _ = await key_for(running)
    stub = pb_grpc.ObjectServiceStub(running.channel)
    for scheme in ("bearer", "BEARER"):
        meta = [("authorization", f"{scheme} {secret}")]
        await refused(
            stub.GetObject(pb.GetObjectRequest(id=MISSING_ID), metadata=meta),
            grpc.StatusCode.NOT_FOUND,
            "OBJECT_NOT_FOUND",
        )


async def test_a_revoked_key_is_unauthenticated_at_once(running: Running) -> None:
    admin = admin_grpc.AdminServiceStub(running.channel)
    made = await admin.CreateApiKey(
        admin_pb.CreateApiKeyRequest(name="short-lived", permissions=["objects:read"])
    )
    stub = pb_grpc.ObjectServiceStub(running.channel)
    listing = pb.ListObjectsRequest(limit=1)
    await stub.ListObjects(listing, metadata=bearer(made.api_key))  # cached as valid now

    revoked = await admin.RevokeApiKey(admin_pb.RevokeApiKeyRequest(id=made.metadata.id))
    assert revoked.metadata.HasField("revoked_at")
    await refused(
        stub.ListObjects(listing, metadata=bearer(made.api_key)),
        grpc.StatusCode.UNAUTHENTICATED,
        "API_KEY_INVALID",
    )


async def test_another_process_sees_a_revocation_within_its_cache_ttl(running: Running) -> None:
    """A second server on the same store, as another worker or host would be."""
    settings = settings_for(running.data_dir, running.redis_url, api_key_cache_seconds=0.3)
    other = await start(settings)
    try:
        secret, record = await key_for(running, permissions=("objects:read",))
        async with channel(f"127.0.0.1:{other.port}", secret) as to_other:
            stub = pb_grpc.ObjectServiceStub(to_other)
            await stub.ListObjects(pb.ListObjectsRequest(limit=1))
            admin = admin_grpc.AdminServiceStub(running.channel)
            await admin.RevokeApiKey(admin_pb.RevokeApiKeyRequest(id=record.id))
            await asyncio.sleep(0.4)
            await refused(
                stub.ListObjects(pb.ListObjectsRequest(limit=1)),
                grpc.StatusCode.UNAUTHENTICATED,
                "API_KEY_INVALID",
            )
    finally:
        await other.stop(None)


async def test_health_needs_no_key(anonymous: grpc.aio.Channel) -> None:
    health = health_pb2_grpc.HealthStub(anonymous)
    reply = await health.Check(health_pb2.HealthCheckRequest(service="vaultd.v1.AdminService"))
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


# --- permissions ---------------------------------------------------------------------------


async def test_each_permission_allows_its_rpcs_only(running: Running) -> None:
    objects = pb_grpc.ObjectServiceStub(running.channel)
    keys = key_grpc.KeyServiceStub(running.channel)
    admin = admin_grpc.AdminServiceStub(running.channel)
    context = {"organization_id": unique("org")}

    def calls(secret: str) -> dict[str, Any]:
        m = bearer(secret)
        return {
            "objects:read": objects.ListObjects(pb.ListObjectsRequest(limit=1), metadata=m),
            "objects:write": objects.CreateObject(
                pb.CreateObjectRequest(name=unique("perm"), value=b"v", key_context=context),
                metadata=m,
            ),
            "keys:use": keys.CreateDataKey(
                key_pb.CreateDataKeyRequest(key_context=context), metadata=m
            ),
            "admin": admin.ListApiKeys(admin_pb.ListApiKeysRequest(), metadata=m),
        }

    for granted in ALL_PERMISSIONS:
        secret, record = await key_for(running, permissions=(granted,))
        for needed, call in calls(secret).items():
            if granted in (needed, "admin"):
                await call
            else:
                message = await refused(
                    call, grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED"
                )
                assert needed in message and record.id in message


# --- environments --------------------------------------------------------------------------


async def test_another_environments_objects_and_keys_are_out_of_reach(running: Running) -> None:
    """Same name and key context in two environments: neither reaches the other's."""
    objects = pb_grpc.ObjectServiceStub(running.channel)
    keys = key_grpc.KeyServiceStub(running.channel)
    theirs, _ = await key_for(running, environment=unique("env"))
    mine, _ = await key_for(running, environment=unique("env"))
    name, context = unique("shared-name"), {"organization_id": unique("org")}

    created = (
        await objects.CreateObject(
            pb.CreateObjectRequest(name=name, value=b"theirs", key_context=context),
            metadata=bearer(theirs),
        )
    ).metadata
    m = bearer(mine)
    by_id = pb.GetObjectRequest(id=created.id)
    for call in (
        objects.GetObject(by_id, metadata=m),
        objects.GetObjectByName(pb.GetObjectByNameRequest(name=name), metadata=m),
        objects.DescribeObject(pb.DescribeObjectRequest(id=created.id), metadata=m),
        objects.ListObjectVersions(pb.ListObjectVersionsRequest(id=created.id), metadata=m),
        objects.GetObjectVersion(
            pb.GetObjectVersionRequest(id=created.id, version_id=created.version_id), metadata=m
        ),
        objects.UpdateObject(pb.UpdateObjectRequest(id=created.id, value=b"x"), metadata=m),
        objects.DeleteObject(pb.DeleteObjectRequest(id=created.id), metadata=m),
    ):
        await refused(call, grpc.StatusCode.NOT_FOUND, "OBJECT_NOT_FOUND")
    listed = await objects.ListObjects(pb.ListObjectsRequest(limit=100), metadata=m)
    assert created.id not in {o.id for o in listed.objects}
    # The name is free in my environment, and my object gets KEKs of its own.
    own = (
        await objects.CreateObject(
            pb.CreateObjectRequest(name=name, value=b"mine", key_context=context), metadata=m
        )
    ).metadata
    assert set(own.key_ids).isdisjoint(created.key_ids)
    assert (await objects.GetObject(by_id, metadata=bearer(theirs))).object.value == b"theirs"

    data_key = await keys.CreateDataKey(
        key_pb.CreateDataKeyRequest(key_context=context), metadata=bearer(theirs)
    )
    sealed = await keys.Encrypt(
        key_pb.EncryptRequest(plaintext=b"p", key_context=context), metadata=bearer(theirs)
    )
    for call in (
        keys.DecryptDataKey(
            key_pb.DecryptDataKeyRequest(encrypted_keys=data_key.encrypted_keys), metadata=m
        ),
        keys.RekeyDataKey(
            key_pb.RekeyDataKeyRequest(encrypted_keys=data_key.encrypted_keys, key_context=context),
            metadata=m,
        ),
        keys.Decrypt(key_pb.DecryptRequest(ciphertext=sealed.ciphertext), metadata=m),
    ):
        await refused(call, grpc.StatusCode.INVALID_ARGUMENT, "DECRYPTION_FAILED")
    back = await keys.DecryptDataKey(
        key_pb.DecryptDataKeyRequest(encrypted_keys=data_key.encrypted_keys),
        metadata=bearer(theirs),
    )
    assert back.data_key == data_key.data_key


async def test_updated_by_carries_the_keys_id_and_name(running: Running) -> None:
    objects = pb_grpc.ObjectServiceStub(running.channel)
    writer, writer_record = await key_for(running, name="deploy bot ✓")
    editor, editor_record = await key_for(running, name="rotation job")
    created = (
        await objects.CreateObject(
            pb.CreateObjectRequest(
                name=unique("by"), value=b"v1", key_context={"organization_id": "org_by"}
            ),
            metadata=bearer(writer),
        )
    ).metadata
    assert (created.updated_by.id, created.updated_by.name) == (writer_record.id, "deploy bot ✓")
    updated = (
        await objects.UpdateObject(
            pb.UpdateObjectRequest(id=created.id, value=b"v2"), metadata=bearer(editor)
        )
    ).metadata
    assert (updated.updated_by.id, updated.updated_by.name) == (editor_record.id, "rotation job")
    got = await objects.GetObject(pb.GetObjectRequest(id=created.id), metadata=bearer(writer))
    assert got.object.metadata.updated_by == updated.updated_by


# --- the admin service ---------------------------------------------------------------------


async def test_admin_creates_lists_and_revokes_keys_of_its_environment(running: Running) -> None:
    environment = unique("env")
    admin_secret, admin_record = await key_for(running, environment, ("admin",), "env admin")
    admin = admin_grpc.AdminServiceStub(running.channel)
    m = bearer(admin_secret)

    made = await admin.CreateApiKey(
        admin_pb.CreateApiKeyRequest(
            name="reader", permissions=["objects:read", "keys:use", "objects:read"]
        ),
        metadata=m,
    )
    assert made.api_key.startswith("sk_") and len(made.api_key) == 46
    meta = made.metadata
    assert meta.id.startswith("key_") and meta.name == "reader"
    assert (meta.environment_id, list(meta.permissions)) == (
        environment,
        ["objects:read", "keys:use"],
    )
    assert not meta.HasField("revoked_at")
    unnamed = await admin.CreateApiKey(
        admin_pb.CreateApiKeyRequest(environment_id=environment, permissions=["admin"]), metadata=m
    )
    assert unnamed.metadata.name == unnamed.metadata.id

    listed = await admin.ListApiKeys(admin_pb.ListApiKeysRequest(), metadata=m)
    assert [k.id for k in listed.api_keys] == [admin_record.id, meta.id, unnamed.metadata.id]
    wire = listed.SerializeToString()
    assert made.api_key.encode() not in wire
    assert secret_hash(made.api_key).encode() not in wire

    revoked = await admin.RevokeApiKey(admin_pb.RevokeApiKeyRequest(id=meta.id), metadata=m)
    again = await admin.RevokeApiKey(admin_pb.RevokeApiKeyRequest(id=meta.id), metadata=m)
    assert revoked.metadata.HasField("revoked_at") and again.metadata == revoked.metadata


async def test_admin_keys_stay_inside_their_environment(running: Running) -> None:
    admin = admin_grpc.AdminServiceStub(running.channel)
    _, outsider = await key_for(running, unique("env"), ("objects:read",))
    m = bearer((await key_for(running, unique("env"), ("admin",)))[0])

    await refused(
        admin.CreateApiKey(
            admin_pb.CreateApiKeyRequest(environment_id="default", permissions=["admin"]),
            metadata=m,
        ),
        grpc.StatusCode.PERMISSION_DENIED,
        "PERMISSION_DENIED",
    )
    await refused(
        admin.RevokeApiKey(admin_pb.RevokeApiKeyRequest(id=outsider.id), metadata=m),
        grpc.StatusCode.NOT_FOUND,
        "API_KEY_NOT_FOUND",
    )
    listed = await admin.ListApiKeys(admin_pb.ListApiKeysRequest(), metadata=m)
    assert outsider.id not in {k.id for k in listed.api_keys}
    assert await running.vaultd.store.get_api_key(outsider.id) == outsider  # not revoked


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [
        ({"permissions": []}, "permissions"),
        ({"permissions": ["objects:delete"]}, "permissions"),
        ({"permissions": ["admin"], "name": "a\nb"}, "name"),
        ({"permissions": ["admin"], "environment_id": "a:b"}, "environment_id"),
    ],
)
async def test_bad_key_requests_are_invalid_arguments(
    running: Running, request_fields: dict[str, Any], field: str
) -> None:
    admin = admin_grpc.AdminServiceStub(running.channel)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await admin.CreateApiKey(admin_pb.CreateApiKeyRequest(**request_fields))
    details = details_of(caught.value)
    assert details.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [f for f, _ in details.violations] == [field]


async def test_revoking_a_missing_or_malformed_id_is_refused(running: Running) -> None:
    admin = admin_grpc.AdminServiceStub(running.channel)
    await refused(
        admin.RevokeApiKey(admin_pb.RevokeApiKeyRequest(id="key_01J9Z3K4ABCDEFGHJKMNPQRSTV")),
        grpc.StatusCode.NOT_FOUND,
        "API_KEY_NOT_FOUND",
    )
    await refused(
        admin.RevokeApiKey(admin_pb.RevokeApiKeyRequest(id="key_:{@auth}")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_ARGUMENT",
    )
