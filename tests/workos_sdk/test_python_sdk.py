"""The official WorkOS Python SDK (`workos`, pinned in the dev extra) against vaultd over HTTP.

Every Vault call the SDK has, as documented, with only `base_url` pointing at vaultd, on the
embedded store and on Redis; the async client, so the loop that serves vaultd keeps serving.
What the SDK wrote is checked over gRPC too, and local encryption is proven both ways.
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from workos import AsyncWorkOSClient, WorkOSClient
from workos._errors import (
    AuthenticationError,
    AuthorizationError,
    ConflictError,
    NotFoundError,
    RateLimitExceededError,
    UnprocessableEntityError,
)

from testkit.auth import bearer
from testkit.http_server import HttpVaultd, http_vaultd
from vaultd.client import AsyncVaultClient
from vaultd.v1 import key_service_pb2 as kpb
from vaultd.v1 import key_service_pb2_grpc as kpb_grpc
from vaultd.v1 import object_service_pb2 as opb
from vaultd.v1 import object_service_pb2_grpc as opb_grpc


@pytest.fixture
async def sdk(http_server: HttpVaultd) -> AsyncIterator[tuple[AsyncWorkOSClient, str]]:
    api_key = await http_server.new_key()
    client = AsyncWorkOSClient(api_key=api_key, base_url=http_server.base_url, max_retries=0)
    yield client, api_key
    await client.close()


def run_context() -> dict[str, str]:
    return {"organization_id": f"org_{uuid.uuid4().hex[:12]}"}


async def test_objects_create_read_describe_update_versions_delete(
    sdk: tuple[AsyncWorkOSClient, str], http_server: HttpVaultd
) -> None:
    workos, api_key = sdk
    context = run_context()
    name = f"stripe/{uuid.uuid4().hex[:8]}/api_key"  # names may hold '/'

    created = await workos.vault.create_kv(name=name, value="sk_live_secret", key_context=context)
    assert created.id.startswith("secret_")
    assert created.context == context
    assert created.version_id and created.key_id and created.environment_id
    assert created.updated_at.tzinfo is not None
    assert created.updated_by.id and created.updated_by.name

    read = await workos.vault.get_kv(created.id)
    assert (read.name, read.value) == (name, "sk_live_secret")
    assert read.metadata.version_id == created.version_id
    by_name = await workos.vault.get_name(name)
    assert (by_name.id, by_name.value) == (created.id, "sk_live_secret")
    described = await workos.vault.list_kv_metadata(created.id)
    assert (described.id, described.name) == (created.id, name)
    assert described.metadata.version_id == created.version_id

    updated = await workos.vault.update_kv(
        created.id, value="sk_live_rotated", version_check=created.version_id
    )
    assert updated.metadata.version_id != created.version_id
    with pytest.raises(ConflictError) as stale:
        await workos.vault.update_kv(created.id, value="lost", version_check=created.version_id)
    assert stale.value.status_code == 409
    assert stale.value.code == "VERSION_CONFLICT"
    assert (await workos.vault.get_kv(created.id)).value == "sk_live_rotated"

    versions = await workos.vault.list_kv_versions(created.id)
    assert len(versions.data) == 2
    current = [v for v in versions.data if v.current_version]
    assert [v.id for v in current] == [updated.metadata.version_id]
    assert all(v.size == len(b"sk_live_secret") or v.current_version for v in versions.data)
    assert all(v.etag for v in versions.data)

    # A stale check on delete is a conflict too; then a delete without one.
    with pytest.raises(ConflictError):
        await workos.vault.delete_kv(created.id, version_check=created.version_id)
    await workos.vault.delete_kv(created.id, version_check=updated.metadata.version_id)
    with pytest.raises(NotFoundError) as gone:
        await workos.vault.get_kv(created.id)
    assert gone.value.code == "OBJECT_NOT_FOUND"

    # Over gRPC too: the SDK's delete removed it.
    async with grpc.aio.insecure_channel(http_server.grpc_target) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as rpc:
            await opb_grpc.ObjectServiceStub(channel).GetObjectByName(
                opb.GetObjectByNameRequest(name=name), metadata=bearer(api_key)
            )
        assert rpc.value.code() is grpc.StatusCode.NOT_FOUND


async def test_list_pages_in_both_orders(sdk: tuple[AsyncWorkOSClient, str]) -> None:
    workos, _ = sdk
    context = run_context()
    names = [f"page/{i}" for i in range(5)]
    for name in names:
        await workos.vault.create_kv(name=name, value="v", key_context=context)

    first = await workos.vault.list_kv(limit=2)
    assert len(first.data) == 2 and first.has_more()
    walked = [o.name async for o in first.auto_paging_iter()]
    assert walked == list(reversed(names))  # newest first by default
    ascending = await workos.vault.list_kv(limit=2, order="asc")
    assert [o.name async for o in ascending.auto_paging_iter()] == names
    assert all(o.updated_at is not None for o in first.data)
    # A page before the second one is the first one.
    second = await workos.vault.list_kv(limit=2, after=first.after)
    back = await workos.vault.list_kv(limit=2, before=second.before)
    assert [o.name for o in back.data] == [o.name for o in first.data]
    # `search` is a name prefix here (docs/HTTP.md).
    assert [o.name for o in (await workos.vault.list_kv(search="page/3")).data] == ["page/3"]


async def test_data_keys_and_local_encryption(
    sdk: tuple[AsyncWorkOSClient, str], http_server: HttpVaultd
) -> None:
    workos, api_key = sdk
    context = run_context()
    pair = await workos.vault.create_data_key(context=context)
    assert pair.context == context
    assert len(base64.b64decode(pair.data_key)) == 32
    decrypted = await workos.vault.create_decrypt(keys=pair.encrypted_keys)
    assert (decrypted.id, decrypted.data_key) == (pair.id, pair.data_key)

    # Rekey: the same data key, under a new context.
    other = run_context()
    rekeyed = await workos.vault.create_rekey(context=other, encrypted_keys=pair.encrypted_keys)
    assert rekeyed.context == other
    assert rekeyed.data_key == pair.data_key
    assert rekeyed.encrypted_keys != pair.encrypted_keys
    again = await workos.vault.create_decrypt(keys=rekeyed.encrypted_keys)
    assert again.data_key == pair.data_key

    blob = await workos.vault.encrypt(
        data="data from python", key_context=context, associated_data="aad"
    )
    assert (
        await workos.vault.decrypt(encrypted_data=blob, associated_data="aad") == "data from python"
    )
    async with grpc.aio.insecure_channel(http_server.grpc_target) as channel:
        keys = kpb_grpc.KeyServiceStub(channel)
        opened = await keys.Decrypt(
            kpb.DecryptRequest(ciphertext=base64.b64decode(blob), associated_data=b"aad"),
            metadata=bearer(api_key),
        )
        assert opened.plaintext == b"data from python"
        committing = await keys.Encrypt(
            kpb.EncryptRequest(plaintext=b"from vaultd", key_context=context),
            metadata=bearer(api_key),
        )
        compatible = await keys.Encrypt(
            kpb.EncryptRequest(
                plaintext=b"from vaultd's Encrypt", key_context=context, workos_compatible=True
            ),
            metadata=bearer(api_key),
        )
    # vaultd's Encrypt asked for the WorkOS layout: the SDK opens it.
    text = base64.b64encode(compatible.ciphertext).decode()
    assert await workos.vault.decrypt(encrypted_data=text) == "from vaultd's Encrypt"
    # vaultd's client in the WorkOS layout: the SDK opens it.
    async with AsyncVaultClient(
        http_server.grpc_target, api_key=api_key, key_commitment=False
    ) as vault:
        sealed = await vault.encrypt(b"from vaultd", context)
    text = base64.b64encode(sealed).decode()
    assert await workos.vault.decrypt(encrypted_data=text) == "from vaultd"
    # vaultd's default key-committing layout: the SDK cannot read it, and refuses it.
    with pytest.raises(Exception):  # noqa: B017  (whatever the SDK raises; never a plaintext)
        await workos.vault.decrypt(encrypted_data=base64.b64encode(committing.ciphertext).decode())


async def test_errors_as_the_sdk_raises_them(
    sdk: tuple[AsyncWorkOSClient, str], http_server: HttpVaultd
) -> None:
    workos, _ = sdk
    with pytest.raises(UnprocessableEntityError) as bad_context:
        await workos.vault.create_kv(name="bad", value="x", key_context={})
    assert bad_context.value.code == "INVALID_KEY_CONTEXT"
    assert bad_context.value.errors and bad_context.value.errors[0]["field"]
    with pytest.raises(NotFoundError):
        await workos.vault.get_name("no such name")
    taken = run_context()
    await workos.vault.create_kv(name="taken", value="x", key_context=taken)
    with pytest.raises(ConflictError) as conflict:
        await workos.vault.create_kv(name="taken", value="y", key_context=taken)
    assert conflict.value.code == "NAME_TAKEN"

    stranger = AsyncWorkOSClient(
        api_key="sk_" + "x" * 43, base_url=http_server.base_url, max_retries=0
    )
    with pytest.raises(AuthenticationError) as unauthenticated:
        await stranger.vault.list_kv()
    assert unauthenticated.value.code == "API_KEY_INVALID"
    assert unauthenticated.value.request_id  # X-Request-ID, joined to logs and audit
    await stranger.close()

    reader = AsyncWorkOSClient(
        api_key=await http_server.new_key(permissions=["objects:read"]),
        base_url=http_server.base_url,
        max_retries=0,
    )
    with pytest.raises(AuthorizationError) as denied:
        await reader.vault.create_data_key(context=run_context())
    assert denied.value.status_code == 403
    assert denied.value.code == "PERMISSION_DENIED"
    await reader.close()


async def test_rate_limit_as_the_sdk_raises_it(tmp_path: Path) -> None:
    async with http_vaultd(
        "sqlite", tmp_path, rate_limit={"requests_per_second": 0.2, "burst": 1}
    ) as server:
        workos = AsyncWorkOSClient(
            api_key=await server.new_key(), base_url=server.base_url, max_retries=0
        )
        await workos.vault.list_kv()
        with pytest.raises(RateLimitExceededError) as limited:
            await workos.vault.list_kv()
        assert limited.value.code == "RATE_LIMITED"
        assert limited.value.retry_after is not None and limited.value.retry_after >= 1
        await workos.close()


async def test_the_sync_client_as_the_quick_start_writes_it(http_server: HttpVaultd) -> None:
    """The documented (synchronous) WorkOSClient, in a thread so this loop keeps serving."""
    api_key = await http_server.new_key()
    base_url = http_server.base_url

    def quick_start() -> tuple[str, str, str]:
        workos = WorkOSClient(api_key=api_key, base_url=base_url)
        context = {"organization_id": "org_123"}
        created = workos.vault.create_kv(
            name="api_key_stripe", value="sk_live_quickstart", key_context=context
        )
        read = workos.vault.get_name("api_key_stripe")
        encrypted = workos.vault.encrypt(data="data", key_context=context, associated_data="aad")
        decrypted = workos.vault.decrypt(encrypted_data=encrypted, associated_data="aad")
        workos.close()
        return created.id, read.value, decrypted

    object_id, value, decrypted = await asyncio.to_thread(quick_start)
    assert object_id.startswith("secret_")
    assert (value, decrypted) == ("sk_live_quickstart", "data")
