"""VaultClient and AsyncVaultClient against a real vaultd on a real port, on both stores.

Every test that talks to vaultd runs once per client flavour (`vault` fixture): the async client
directly, the blocking one in a worker thread, because the server runs on this test's event loop
and a blocking call made on the loop itself would wait for a server that cannot answer.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import logging
import os
import re
import socket
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from ulid import ULID

from testkit.running import Running
from testkit.tls import make_pki
from tests.vectors.generate import Vector, load_vectors, plaintext_of, unb64
from vaultd.api.errors import to_status
from vaultd.client import (
    AsyncVaultClient,
    BackendUnavailable,
    DataKey,
    DeadlineExceeded,
    DecryptionFailed,
    InvalidArgument,
    InvalidKeyContext,
    NameTaken,
    ObjectDigest,
    ObjectNotFound,
    VaultClient,
    VaultdError,
    VersionConflict,
    _local,
    _rpc,
)
from vaultd.client.errors import from_core_error, from_rpc_error
from vaultd.core import errors as core_errors
from vaultd.core.blob import LocalBlob, open_local
from vaultd.core.envelope import EncryptedKeys, Purpose, unwrap_entry
from vaultd.core.objects import ObjectVault
from vaultd.v1 import key_service_pb2 as kpb
from vaultd.v1 import key_service_pb2_grpc as kpb_grpc
from vaultd.v1 import object_service_pb2

# The session's vaultd per store (sqlite, redis), shared with tests/server.

API_KEY = "sk_test_" + "k" * 24
KEY_ID = re.compile(r"kek_[0-9a-f]{32}\.v[1-9][0-9]*")
VECTORS = load_vectors()


class Either:
    """Either client behind awaitable methods, so one test body checks both flavours."""

    def __init__(self, client: VaultClient | AsyncVaultClient, api_key: str) -> None:
        self.client = client
        self.api_key = api_key
        self.flavour = "async" if isinstance(client, AsyncVaultClient) else "sync"

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        method = getattr(self.client, name)
        if isinstance(self.client, AsyncVaultClient):
            return method  # type: ignore[no-any-return]

        async def in_thread(*args: Any, **kwargs: Any) -> Any:
            return await asyncio.to_thread(method, *args, **kwargs)

        return in_thread

    async def list_all(self, **query: Any) -> list[ObjectDigest]:
        client = self.client
        if isinstance(client, AsyncVaultClient):
            return [d async for d in client.list_objects(**query)]
        return await asyncio.to_thread(lambda: list(client.list_objects(**query)))


def make_client(flavour: str, target: str, api_key: str = API_KEY, **options: Any) -> Either:
    cls = AsyncVaultClient if flavour == "async" else VaultClient
    return Either(cls(target, api_key, **options), api_key)


@pytest.fixture(params=["sync", "async"])
async def vault(request: pytest.FixtureRequest, running: Running) -> AsyncIterator[Either]:
    client = make_client(request.param, f"127.0.0.1:{running.vaultd.port}", running.api_key)
    yield client
    await client.close()


def tenant() -> dict[str, str]:
    # Every item unique: vaultd instances of other test modules share the session's Redis but
    # not its root key, so a KEK another instance made for a fixed item cannot be unwrapped here.
    return {"organization_id": f"org_{uuid.uuid4().hex[:12]}"}


def user() -> dict[str, str]:
    return {"user_id": f"user_{uuid.uuid4().hex[:12]}"}


def unique(prefix: str = "client-test") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def keys_stub(running: Running) -> kpb_grpc.KeyServiceStub:
    return kpb_grpc.KeyServiceStub(running.channel)  # type: ignore[no-untyped-call]


# --- ObjectService ----------------------------------------------------------------------------


async def test_object_lifecycle(vault: Either) -> None:
    name, context = unique(), tenant() | user()
    before = dt.datetime.now(dt.UTC)
    created = await vault.create_object(name, b"v1", context)
    assert created.id.startswith("secret_") and created.name == name
    assert dict(created.key_context) == context and created.environment_id == "default"
    assert len(created.key_ids) == 2 and all(KEY_ID.fullmatch(k) for k in created.key_ids)
    assert created.version_id.startswith("ver_")
    assert created.created_at.tzinfo is not None
    assert before - dt.timedelta(seconds=5) <= created.created_at <= dt.datetime.now(dt.UTC)
    # The actor is the API key that wrote the version ("anonymous" before keys are enforced).
    assert created.updated_by.id and created.updated_by.name

    fetched = await vault.get_object(created.id)
    assert (fetched.id, fetched.name, fetched.value) == (created.id, name, b"v1")
    assert fetched.metadata == created
    assert (await vault.get_object_by_name(name)).value == b"v1"
    assert await vault.describe_object(created.id) == created

    second = await vault.update_object(created.id, b"v2")
    assert second.version_id != created.version_id and second.created_at == created.created_at
    assert second.updated_at >= created.updated_at and second.updated_by == created.updated_by
    third = await vault.update_object(created.id, b"v3", version_check=second.version_id)
    with pytest.raises(VersionConflict) as conflict:
        await vault.update_object(created.id, b"lost", version_check=created.version_id)
    assert conflict.value.current_version_id == third.version_id
    assert (conflict.value.code, conflict.value.reason) == (
        grpc.StatusCode.ABORTED,
        "VERSION_CONFLICT",
    )
    assert (await vault.get_object(created.id)).value == b"v3"

    versions = await vault.list_object_versions(created.id)
    assert [v.id for v in versions] == [created.version_id, second.version_id, third.version_id]
    assert [v.version_number for v in versions] == [1, 2, 3]
    assert (created.version_number, second.version_number, third.version_number) == (1, 2, 3)
    assert [v.current_version for v in versions] == [False, False, True]
    assert [v.size for v in versions] == [2, 2, 2] and len({v.etag for v in versions}) == 3
    old = await vault.get_object_version(created.id, created.version_id)
    assert (old.value, old.metadata.version_id) == (b"v1", created.version_id)

    with pytest.raises(VersionConflict) as stale_delete:
        await vault.delete_object(created.id, version_check=second.version_id)
    assert stale_delete.value.current_version_id == third.version_id
    assert await vault.delete_object(created.id, version_check=third.version_id) is None
    for read in (vault.get_object, vault.describe_object, vault.list_object_versions):
        with pytest.raises(ObjectNotFound) as gone:
            await read(created.id)
        assert (gone.value.code, gone.value.reason) == (
            grpc.StatusCode.NOT_FOUND,
            "OBJECT_NOT_FOUND",
        )


async def test_delete_without_version_check(vault: Either) -> None:
    created = await vault.create_object(unique(), b"x", tenant())
    await vault.delete_object(created.id)
    with pytest.raises(ObjectNotFound):
        await vault.get_object(created.id)
    assert await vault.undelete_object(created.id) == created
    assert (await vault.get_object(created.id)).value == b"x"
    with pytest.raises(ObjectNotFound):
        await vault.undelete_object(created.id)  # live: nothing deleted to restore


async def test_a_taken_name_raises_name_taken(vault: Either) -> None:
    name = unique()
    await vault.create_object(name, b"first", tenant())
    with pytest.raises(NameTaken) as caught:
        await vault.create_object(name, b"second", tenant())
    assert (caught.value.code, caught.value.reason) == (
        grpc.StatusCode.ALREADY_EXISTS,
        "NAME_TAKEN",
    )
    assert (await vault.get_object_by_name(name)).value == b"first"


async def test_not_found_and_invalid_ids(vault: Either) -> None:
    missing = f"secret_{ULID()}"
    with pytest.raises(ObjectNotFound):
        await vault.get_object(missing)
    with pytest.raises(ObjectNotFound):
        await vault.get_object_by_name(unique("no-such-name"))
    created = await vault.create_object(unique(), b"x", tenant())
    with pytest.raises(ObjectNotFound) as caught:
        await vault.get_object_version(created.id, f"ver_{ULID()}")
    assert caught.value.metadata["object_id"] == created.id
    # A malformed id is a bad argument, not a missing object.
    with pytest.raises(InvalidArgument) as bad:
        await vault.get_object("not-an-id")
    assert not isinstance(bad.value, ObjectNotFound)
    assert (bad.value.reason, bad.value.violations[0][0]) == ("INVALID_ID", "id")


async def test_invalid_key_context(vault: Either) -> None:
    too_many = {f"k{i}": "v" for i in range(11)}
    for call in (
        vault.create_object(unique(), b"x", {}),
        vault.create_object(unique(), b"x", too_many),
        vault.create_data_key({"organization_id": ""}),
        vault.encrypt(b"x", {}),
    ):
        with pytest.raises(InvalidKeyContext) as caught:
            await call
        assert (caught.value.code, caught.value.reason) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_KEY_CONTEXT",
        )
        assert caught.value.violations and caught.value.violations[0][0].startswith("key_context")


async def test_list_objects_follows_cursors_once(
    vault: Either, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefix = unique("list")
    names = {}
    for i in range(5):
        names[(await vault.create_object(f"{prefix}-{i}", b"x", tenant())).id] = f"{prefix}-{i}"
    # The list order is the ids' (ULIDs: creation time to the millisecond, then random), so two
    # objects made within one millisecond may list in either order; expect the ids' order.
    made = sorted(names)
    cursors: list[str] = []
    original = ObjectVault.list_objects

    async def recording(self: ObjectVault, environment_id: str, query: Any, **options: Any) -> Any:
        if query.name_prefix == prefix:
            cursors.append(query.after)
        return await original(self, environment_id, query, **options)

    monkeypatch.setattr(ObjectVault, "list_objects", recording)

    listed = await vault.list_all(limit=2, order="asc", name_prefix=prefix)
    assert [d.id for d in listed] == made
    assert [d.name for d in listed] == [names[i] for i in made]
    # Three pages of 2, 2, 1: each fetched once, each from the previous page's last id.
    assert cursors == ["", made[1], made[3]]

    cursors.clear()
    assert [d.id for d in await vault.list_all(limit=3, name_prefix=prefix)] == made[::-1]
    assert cursors == ["", made[2]]
    resumed = await vault.list_all(limit=2, order="asc", name_prefix=prefix, after=made[2])
    assert [d.id for d in resumed] == made[3:]

    # updated_after keeps only versions written later than the given moment.
    last = max([(await vault.describe_object(i)).updated_at for i in made])
    await vault.update_object(made[1], b"y")
    await vault.update_object(made[3], b"y")
    recent = await vault.list_all(order="asc", name_prefix=prefix, updated_after=last)
    assert [d.id for d in recent] == [made[1], made[3]]
    assert all(d.updated_at > last for d in recent)
    assert await vault.list_all(name_prefix=unique("nothing")) == []


async def test_reads_and_lists_by_key_context(vault: Either) -> None:
    mine, theirs = tenant(), tenant()
    made = [await vault.create_object(unique(), b"v", ctx) for ctx in (mine, theirs, mine)]
    listed = await vault.list_all(key_context=mine, order="asc", limit=1)
    assert [d.id for d in listed] == [made[0].id, made[2].id]
    assert (await vault.get_object(made[0].id, key_context=mine)).value == b"v"
    assert (await vault.get_object_by_name(made[0].name, key_context=mine)).id == made[0].id
    with pytest.raises(ObjectNotFound):
        await vault.get_object(made[0].id, key_context=theirs)
    with pytest.raises(ObjectNotFound):
        await vault.get_object_by_name(made[0].name, key_context=theirs)


async def test_list_objects_rejects_an_unknown_order(vault: Either) -> None:
    with pytest.raises(ValueError, match="order"):
        await vault.list_all(order="sideways")


# --- KeyService and local encryption -----------------------------------------------------------


def assert_hidden(secret: bytes, *texts: str) -> None:
    forms = (
        repr(secret),
        secret.hex(),
        base64.b64encode(secret).decode(),
        secret.decode("latin-1"),
    )
    for text in texts:
        for form in forms:
            assert form not in text


async def test_data_key_round_trip_and_rekey(vault: Either) -> None:
    context = tenant() | user()
    created = await vault.create_data_key(context)
    assert len(created.key) == 32 and created.id
    assert dict(created.key_context or {}) == context and len(created.key_ids) == 2
    assert created.key not in created.encrypted_keys
    assert_hidden(created.key, repr(created), str(created))

    decrypted = await vault.decrypt_data_key(created.encrypted_keys)
    assert (decrypted.id, decrypted.key) == (created.id, created.key)
    assert decrypted.key_ids == created.key_ids and decrypted.key_context is None

    other = tenant()
    rekeyed = await vault.rekey_data_key(created.encrypted_keys, other)
    assert (rekeyed.id, rekeyed.key) == (created.id, created.key)
    assert dict(rekeyed.key_context or {}) == other
    assert len(rekeyed.key_ids) == 1 and rekeyed.key_ids[0] not in created.key_ids
    assert rekeyed.encrypted_keys != created.encrypted_keys
    assert (await vault.decrypt_data_key(rekeyed.encrypted_keys)).key == created.key


@pytest.mark.parametrize("aad", [None, b"row 42 of payments"])
async def test_local_encrypt_is_opened_by_server_decrypt(
    vault: Either, running: Running, aad: bytes | None
) -> None:
    blob = await vault.encrypt(b"card 4242", tenant(), aad)
    assert b"card 4242" not in blob
    parsed = LocalBlob.parse(blob)
    assert len(EncryptedKeys.parse(parsed.encrypted_keys).entries) == 1
    opened = await keys_stub(running).Decrypt(
        kpb.DecryptRequest(ciphertext=blob, associated_data=aad or b"")
    )
    assert opened.plaintext == b"card 4242"
    assert await vault.decrypt(blob, aad) == b"card 4242"


@pytest.mark.parametrize("aad", [None, b"row 7"])
async def test_server_encrypt_is_opened_by_local_decrypt(
    vault: Either, running: Running, aad: bytes | None
) -> None:
    sealed = await keys_stub(running).Encrypt(
        kpb.EncryptRequest(plaintext=b"from the server", key_context=tenant(), associated_data=aad)
    )
    assert await vault.decrypt(sealed.ciphertext, aad) == b"from the server"


async def test_what_does_not_authenticate_is_decryption_failed(vault: Either) -> None:
    blob = await vault.encrypt(b"secret text", tenant(), b"right")
    parsed = LocalBlob.parse(blob)
    ek_end = len(blob) - len(parsed.ciphertext)  # encrypted_keys ends with a wrapped DEK's tag
    broken = {
        "wrong associated data": (blob, b"wrong"),
        "missing associated data": (blob, None),
        "flipped tag": (bytes([*blob[:12], blob[12] ^ 1, *blob[13:]]), b"right"),
        "flipped ciphertext": (blob[:-1] + bytes([blob[-1] ^ 1]), b"right"),
        "flipped encrypted_keys": (
            blob[: ek_end - 1] + bytes([blob[ek_end - 1] ^ 1]) + blob[ek_end:],
            b"right",
        ),
        "truncated": (blob[:29], b"right"),
        "empty": (b"", None),
    }
    for what, (candidate, aad) in broken.items():
        with pytest.raises(DecryptionFailed) as caught:
            await vault.decrypt(candidate, aad)
        error = caught.value
        assert (error.code, error.reason) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "DECRYPTION_FAILED",
        ), what
        assert "secret text" not in str(error), what


async def test_encrypt_can_reuse_data_keys_per_context(running: Running) -> None:
    target = f"127.0.0.1:{running.vaultd.port}"
    context = tenant()
    async with AsyncVaultClient(target, running.api_key, data_key_cache_ttl=60) as cached:
        first, second = [await cached.encrypt(b"x", context) for _ in range(2)]
        other = await cached.encrypt(b"x", tenant())
        assert LocalBlob.parse(first).encrypted_keys == LocalBlob.parse(second).encrypted_keys
        assert LocalBlob.parse(first).iv != LocalBlob.parse(second).iv
        assert LocalBlob.parse(other).encrypted_keys != LocalBlob.parse(first).encrypted_keys
        assert await cached.decrypt(second) == b"x"
    async with AsyncVaultClient(target, running.api_key) as uncached:
        a, b = [await uncached.encrypt(b"x", context) for _ in range(2)]
        assert LocalBlob.parse(a).encrypted_keys != LocalBlob.parse(b).encrypted_keys


def test_data_key_cache_expires() -> None:
    now = [100.0]
    cache = _local.DataKeyCache(ttl=5, max_entries=2, clock=lambda: now[0])
    key = DataKey("dk", bytes(32), b"ek", {"a": "1"}, ())
    cache.put({"a": "1"}, key)
    assert cache.get({"a": "1"}) is key and cache.get({"a": "2"}) is None
    now[0] = 105.0
    assert cache.get({"a": "1"}) is None
    for i in range(3):
        cache.put({"a": str(i)}, key)
    assert len(cache) == 2 and cache.get({"a": "0"}) is None


def test_cached_encrypt_seals_under_the_cached_key_until_it_expires() -> None:
    now = [100.0]
    cache = _local.DataKeyCache(ttl=5, clock=lambda: now[0])
    assert _local.cached_encrypt(b"x", {"a": "1"}, None, cache) is None  # nothing cached yet
    key = DataKey("dk", os.urandom(32), b"encrypted keys", {"a": "1"}, ())
    cache.put({"a": "1"}, key)
    blob = _local.cached_encrypt(b"card 4242", {"a": "1"}, b"aad", cache)
    assert blob is not None
    parsed = LocalBlob.parse(blob)
    assert parsed.encrypted_keys == b"encrypted keys"
    assert open_local(key.key, parsed, b"aad") == b"card 4242"
    with pytest.raises(core_errors.DecryptionFailed):
        open_local(key.key, parsed, b"other aad")
    assert _local.cached_encrypt(b"x", {"a": "2"}, None, cache) is None  # another context
    now[0] = 105.0
    assert _local.cached_encrypt(b"x", {"a": "1"}, None, cache) is None  # expired
    assert _local.cached_encrypt(b"x", {"a": "1"}, None, None) is None  # no cache at all


async def test_secrets_stay_out_of_reprs_errors_and_logs(
    vault: Either, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    value = b"hunter2-" + uuid.uuid4().hex.encode()
    created = await vault.create_object(unique(), value, tenant())
    obj = await vault.get_object(created.id)
    key = await vault.create_data_key(tenant())
    with pytest.raises(DecryptionFailed) as caught:
        await vault.decrypt(await vault.encrypt(value, tenant(), b"a"), b"b")
    with pytest.raises(VaultdError) as bad_key:
        await vault.decrypt_data_key(key.encrypted_keys[:-1])
    texts = [repr(obj), str(obj), repr(key), repr(vault.client), str(caught.value)]
    texts += [str(bad_key.value), repr(bad_key.value.metadata), caplog.text]
    assert_hidden(value, *texts)
    assert_hidden(key.key, *texts)
    assert_hidden(vault.api_key.encode(), *texts)


async def test_closing_the_client_closes_its_channel(running: Running) -> None:
    target = f"127.0.0.1:{running.vaultd.port}"
    with VaultClient(target, running.api_key) as sync_client:
        await asyncio.to_thread(sync_client.create_data_key, tenant())
    with pytest.raises(ValueError, match="closed channel"):
        sync_client.create_data_key(tenant())
    async with AsyncVaultClient(target, running.api_key) as async_client:
        await async_client.create_data_key(tenant())
    with pytest.raises(grpc.aio.UsageError):
        await async_client.create_data_key(tenant())


# --- test vectors through the client's own decrypt steps ---------------------------------------


def play_server(vector: Vector, calls: list[str]) -> Callable[[_rpc.Call[Any]], Any]:
    """Answers DecryptDataKey as vaultd would, with the vector's KEKs in place of the store."""

    def invoke(call: _rpc.Call[Any]) -> Any:
        calls.append(call.method)
        assert (call.service, call.method) == ("keys", "DecryptDataKey")
        assert isinstance(call.request, kpb.DecryptDataKeyRequest)
        encrypted_keys = call.request.encrypted_keys
        if vector["valid"]:
            assert encrypted_keys == unb64(vector["encrypted_keys"])
        keks = {(k["kek_id"], k["version"]): unb64(k["key"]) for k in vector["keks"]}
        try:
            keys = EncryptedKeys.parse(encrypted_keys)
            for entry in keys.entries:
                kek = keks.get((entry.kek_id, entry.kek_version))
                try:
                    if kek is not None:
                        data_key = unwrap_entry(keys, entry, kek, Purpose.DATA_KEY)
                        break
                except core_errors.DecryptionFailed:
                    pass
            else:
                raise core_errors.DecryptionFailed("no entry authenticates")
        except core_errors.VaultError as exc:
            raise from_core_error(exc) from None
        if vector["valid"]:
            assert data_key == unb64(vector["data_key"])
        response = kpb.DecryptDataKeyResponse(
            id=str(ULID.from_bytes(keys.dek_id)), data_key=data_key
        )
        return call.parse(response)

    return invoke


def decrypt_steps(vector: Vector) -> _local.Flow[bytes]:
    aad = vector["associated_data"]
    return _local.decrypt(unb64(vector["blob"]), None if aad is None else unb64(aad))


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
async def test_vector_through_local_decrypt(vector: Vector) -> None:
    sync_calls: list[str] = []
    async_calls: list[str] = []
    play = play_server(vector, sync_calls)
    play_async = play_server(vector, async_calls)

    async def invoke_async(call: _rpc.Call[Any]) -> Any:
        return play_async(call)

    if vector["valid"]:
        expected = plaintext_of(vector)
        assert _local.run(decrypt_steps(vector), play) == expected
        assert await _local.run_async(decrypt_steps(vector), invoke_async) == expected
    else:
        with pytest.raises(DecryptionFailed) as caught:
            _local.run(decrypt_steps(vector), play)
        assert caught.value.reason == vector["error_reason"]
        assert caught.value.code.name == vector["error_code"]
        with pytest.raises(DecryptionFailed):
            await _local.run_async(decrypt_steps(vector), invoke_async)
    # A blob that does not parse is refused before any call; anything else costs exactly one.
    expected_calls = [] if vector.get("fails_at") == "blob" else ["DecryptDataKey"]
    assert sync_calls == async_calls == expected_calls


# --- retries, deadlines, credentials, TLS: against a stand-in server ---------------------------


class StandIn(grpc.GenericRpcHandler):  # type: ignore[misc]
    """Answers every method: UNAVAILABLE on the first attempt (when `flaky`), then NOT_FOUND
    with vaultd's ErrorInfo; records each attempt's metadata."""

    def __init__(self, *, flaky: bool = True, delay: float = 0.0) -> None:
        self.flaky = flaky
        self.delay = delay
        self.attempts: Counter[str] = Counter()
        self.metadata: list[dict[str, str]] = []

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        method = details.method.rsplit("/", 1)[-1]

        async def handle(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            self.attempts[method] += 1
            self.metadata.append({k: v for k, v in context.invocation_metadata()})
            await asyncio.sleep(self.delay)
            if self.flaky and self.attempts[method] == 1:
                await context.abort(grpc.StatusCode.UNAVAILABLE, "stand-in: try again")
            status = to_status(core_errors.ObjectNotFound("stand-in: nothing here"))
            await context.abort(status.code, status.details, status.trailing_metadata)
            raise AssertionError("abort returned")

        return grpc.unary_unary_rpc_method_handler(handle)


async def start_stand_in(
    handler: StandIn, credentials: grpc.ServerCredentials | None = None
) -> tuple[grpc.aio.Server, int]:
    # No SO_REUSEPORT (gRPC's default): with it, port 0 can land on a port another process on
    # this host is serving, and calls would be shared between the two servers.
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    server.add_generic_rpc_handlers((handler,))
    if credentials is None:
        port = server.add_insecure_port("127.0.0.1:0")
    else:
        port = server.add_secure_port("127.0.0.1:0", credentials)
    await server.start()
    return server, port


VALID_BLOB = unb64(VECTORS[0]["blob"])
CONTEXT = {"organization_id": "org_retry"}
OBJECT_ID = f"secret_{ULID()}"
RETRIED = {
    "GetObject": lambda v: v.get_object(OBJECT_ID),
    "GetObjectByName": lambda v: v.get_object_by_name("n"),
    "DescribeObject": lambda v: v.describe_object(OBJECT_ID),
    "ListObjects": lambda v: v.list_all(),
    "ListObjectVersions": lambda v: v.list_object_versions(OBJECT_ID),
    "GetObjectVersion": lambda v: v.get_object_version(OBJECT_ID, f"ver_{ULID()}"),
    "DecryptDataKey": lambda v: v.decrypt_data_key(b"ek"),
    "DecryptDataKey-by-decrypt": lambda v: v.decrypt(VALID_BLOB),
}
NOT_RETRIED = {
    "CreateObject": lambda v: v.create_object("n", b"x", CONTEXT),
    "UpdateObject": lambda v: v.update_object(OBJECT_ID, b"x"),
    "DeleteObject": lambda v: v.delete_object(OBJECT_ID),
    # Not idempotent: a retry after a lost reply would find the object live, and NOT_FOUND.
    "UndeleteObject": lambda v: v.undelete_object(OBJECT_ID),
    "CreateDataKey": lambda v: v.create_data_key(CONTEXT),
    "RekeyDataKey": lambda v: v.rekey_data_key(b"ek", CONTEXT),
    "CreateDataKey-by-encrypt": lambda v: v.encrypt(b"x", CONTEXT),
}


@pytest.fixture
async def stand_in() -> AsyncIterator[tuple[StandIn, int]]:
    handler = StandIn()
    server, port = await start_stand_in(handler)
    yield handler, port
    await server.stop(None)


@pytest.mark.parametrize("flavour", ["sync", "async"])
@pytest.mark.parametrize("label", [*RETRIED, *NOT_RETRIED])
async def test_only_idempotent_calls_are_retried_on_unavailable(
    stand_in: tuple[StandIn, int], flavour: str, label: str
) -> None:
    handler, port = stand_in
    vault = make_client(flavour, f"127.0.0.1:{port}")
    method = label.split("-by-")[0]
    try:
        if label in RETRIED:
            # The second attempt's answer arrives: gRPC retried inside the one call.
            with pytest.raises(ObjectNotFound):
                await RETRIED[label](vault)
            assert handler.attempts == {method: 2}
            assert handler.metadata[1].get("grpc-previous-rpc-attempts") == "1"
        else:
            with pytest.raises(BackendUnavailable) as caught:
                await NOT_RETRIED[label](vault)
            assert caught.value.code == grpc.StatusCode.UNAVAILABLE
            assert handler.attempts == {method: 1}
        assert all(m["authorization"] == f"Bearer {API_KEY}" for m in handler.metadata)
    finally:
        await vault.close()


def test_the_service_config_names_real_methods() -> None:
    services = {
        s.full_name: {m.name for m in s.methods}
        for module in (object_service_pb2, kpb)
        for s in module.DESCRIPTOR.services_by_name.values()
    }
    for service, methods in _rpc.RETRIED_METHODS.items():
        assert set(methods) <= services[service]
    assert "CreateObject" not in _rpc.RETRIED_METHODS[_rpc.OBJECT_SERVICE]
    assert '"retryableStatusCodes": ["UNAVAILABLE"]' in _rpc.service_config()


@pytest.mark.parametrize("flavour", ["sync", "async"])
async def test_nothing_listening_is_backend_unavailable(flavour: str) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    vault = make_client(flavour, f"127.0.0.1:{port}", timeout=5)
    try:
        with pytest.raises(BackendUnavailable) as caught:
            await vault.create_object("n", b"x", CONTEXT)
        assert caught.value.reason == ""  # no ErrorInfo: the transport failed, not vaultd
    finally:
        await vault.close()


@pytest.mark.parametrize("flavour", ["sync", "async"])
async def test_every_call_has_a_deadline(flavour: str) -> None:
    handler = StandIn(flaky=False, delay=1.0)
    server, port = await start_stand_in(handler)
    vault = make_client(flavour, f"127.0.0.1:{port}", timeout=0.2)
    try:
        started = asyncio.get_running_loop().time()
        with pytest.raises(DeadlineExceeded) as caught:
            await vault.create_data_key(CONTEXT)
        assert caught.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
        assert asyncio.get_running_loop().time() - started < 0.9
    finally:
        await vault.close()
        await server.stop(None)


def test_the_constructor_refuses_contradictory_options() -> None:
    with pytest.raises(ValueError, match="timeout"):
        VaultClient("127.0.0.1:1", timeout=0)
    with pytest.raises(ValueError, match="go together"):
        VaultClient("127.0.0.1:1", private_key=b"k")
    with pytest.raises(ValueError, match="tls=False"):
        VaultClient("127.0.0.1:1", root_certificates=b"ca", tls=False)


@pytest.fixture(scope="module")
def pki() -> dict[str, bytes]:
    made = make_pki()
    return {
        name: getattr(made, name)
        for name in ("ca", "server_key", "server_cert", "client_key", "client_cert")
    }


@pytest.mark.parametrize("flavour", ["sync", "async"])
async def test_mutual_tls_admits_only_a_client_with_a_trusted_certificate(
    flavour: str, pki: dict[str, bytes]
) -> None:
    handler = StandIn(flaky=False)
    credentials = grpc.ssl_server_credentials(
        [(pki["server_key"], pki["server_cert"])],
        root_certificates=pki["ca"],
        require_client_auth=True,
    )
    server, port = await start_stand_in(handler, credentials)
    target = f"127.0.0.1:{port}"
    trusted = make_client(
        flavour, target, root_certificates=pki["ca"], private_key=pki["client_key"],
        certificate_chain=pki["client_cert"],
    )  # fmt: skip
    untrusting = make_client(flavour, target, tls=True, timeout=2)  # system roots only
    anonymous = make_client(flavour, target, root_certificates=pki["ca"], timeout=2)
    try:
        with pytest.raises(ObjectNotFound):  # the stand-in's answer, over mutual TLS
            await trusted.get_object(OBJECT_ID)
        assert handler.metadata[0]["authorization"] == f"Bearer {API_KEY}"
        for refused in (untrusting, anonymous):
            with pytest.raises(BackendUnavailable):
                await refused.create_data_key(CONTEXT)
        assert handler.attempts == {"GetObject": 1}
    finally:
        for client in (trusted, untrusting, anonymous):
            await client.close()
        await server.stop(None)


# --- error mapping ------------------------------------------------------------------------------


class FakeRpcError(grpc.RpcError):  # type: ignore[misc]
    def __init__(self, code: grpc.StatusCode, trailing: tuple[tuple[str, Any], ...]) -> None:
        self._code, self._trailing = code, trailing

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return "message"

    def trailing_metadata(self) -> tuple[tuple[str, Any], ...]:
        return self._trailing


def _error_from(error: core_errors.VaultError) -> VaultdError:
    """What the client makes of the status vaultd's own interceptor sends for `error`."""
    status = to_status(error)
    return from_rpc_error(FakeRpcError(status.code, tuple(status.trailing_metadata)))


def _foreign(code: grpc.StatusCode, reason: str) -> VaultdError:
    """A status whose ErrorInfo comes from some other domain (a proxy, another service)."""
    packed = any_pb2.Any()
    packed.Pack(error_details_pb2.ErrorInfo(reason=reason, domain="proxy.example"))
    status = status_pb2.Status(code=code.value[0], message="m", details=[packed])
    trailer = (("grpc-status-details-bin", status.SerializeToString()),)
    return from_rpc_error(FakeRpcError(code, trailer))


def test_errors_map_reason_first_then_code() -> None:
    conflict = _error_from(core_errors.VersionConflict("secret_x", "ver_current"))
    assert isinstance(conflict, VersionConflict) and conflict.current_version_id == "ver_current"
    blob = _error_from(core_errors.InvalidBlob("ciphertext", "is truncated"))
    assert isinstance(blob, DecryptionFailed)
    assert blob.violations == (("ciphertext", "is truncated"),)
    # An ErrorInfo from another domain does not choose the class; the status code does.
    foreign = _foreign(grpc.StatusCode.INVALID_ARGUMENT, "DECRYPTION_FAILED")
    assert type(foreign) is InvalidArgument and foreign.reason == "DECRYPTION_FAILED"
    bare = from_rpc_error(FakeRpcError(grpc.StatusCode.INTERNAL, ()))
    assert type(bare) is VaultdError and bare.reason == "" and "INTERNAL" in str(bare)
    garbled = from_rpc_error(
        FakeRpcError(grpc.StatusCode.NOT_FOUND, (("grpc-status-details-bin", b"\xff\xff"),))
    )
    assert type(garbled) is ObjectNotFound
