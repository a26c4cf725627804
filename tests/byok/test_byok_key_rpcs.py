"""BYOK keys added at run time (AdminService *ByokKey RPCs), per provider stand-in, over gRPC.

No `byok:` rule names these tenants: their key is registered while vaultd runs, verified
through the real provider first, used for new KEKs at once, and revocable like any BYOK key.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from testkit.auth import BOOTSTRAP_API_KEY
from testkit.auth import channel as authed_channel
from testkit.byok import STANDINS, Clock, providers_for
from testkit.grpc_errors import details_of, refused
from testkit.standins import StandIn
from vaultd.server import Vaultd, start
from vaultd.settings import ByokRuleSettings, Settings
from vaultd.v1 import admin_service_pb2 as apb
from vaultd.v1 import admin_service_pb2_grpc as apb_grpc
from vaultd.v1 import object_service_pb2 as pb
from vaultd.v1 import object_service_pb2_grpc as pb_grpc

CONFIGURED_PREFIX = "org_yaml_"


@dataclass
class Runtime:
    standin: StandIn
    vaultd: Vaultd
    channel: grpc.aio.Channel
    data_dir: Path

    @property
    def admin(self) -> apb_grpc.AdminServiceStub:
        return apb_grpc.AdminServiceStub(self.channel)

    @property
    def objects(self) -> pb_grpc.ObjectServiceStub:
        return pb_grpc.ObjectServiceStub(self.channel)

    async def register(self, pattern: str, key_uri: str) -> apb.ByokKey:
        reply = await self.admin.CreateByokKey(
            apb.CreateByokKeyRequest(match={"organization_id": pattern}, key_uri=key_uri)
        )
        return reply.byok_key


@pytest.fixture(scope="module", params=sorted(STANDINS))
async def runtime(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Runtime]:
    standin: StandIn = request.getfixturevalue(STANDINS[request.param])
    configured, injected = providers_for(standin)
    data_dir = tmp_path_factory.mktemp(f"runtime-{request.param}")
    settings = Settings(
        listen="127.0.0.1:0",
        data_dir=data_dir,
        kek_cache={"ttl_seconds": 60, "max_entries": 1000},
        providers=configured,
        byok=[
            ByokRuleSettings(
                match={"organization_id": f"{CONFIGURED_PREFIX}*"},
                key=standin.create_key(f"yaml-{uuid.uuid4().hex[:8]}"),
            )
        ],
        bootstrap_api_key=BOOTSTRAP_API_KEY,
    )
    vaultd = await start(settings, injected)
    channel = authed_channel(f"127.0.0.1:{vaultd.port}")
    yield Runtime(standin, vaultd, channel, data_dir)
    await channel.close()
    await vaultd.stop(None)


async def test_a_key_registered_at_run_time_wraps_the_tenants_keks_at_once(
    runtime: Runtime,
) -> None:
    key_uri = runtime.standin.create_key(f"rt-{uuid.uuid4().hex[:8]}")
    tenant = f"org_rt_{uuid.uuid4().hex[:8]}"
    registered = await runtime.register(f"{tenant}*", key_uri)
    assert registered.id.startswith("byok_") and registered.verified, registered
    assert (registered.item_key, registered.pattern, registered.key_uri) == (
        "organization_id",
        f"{tenant}*",
        key_uri,
    )
    wraps = runtime.standin.calls["wrap"]
    created = await runtime.objects.CreateObject(
        pb.CreateObjectRequest(
            name=f"rt-{uuid.uuid4().hex}", value=b"v", key_context={"organization_id": tenant}
        )
    )
    assert runtime.standin.calls["wrap"] == wraps + 1, "the new KEK is wrapped by the new key"
    got = await runtime.objects.GetObject(pb.GetObjectRequest(id=created.metadata.id))
    assert got.object.value == b"v"

    listed = await runtime.admin.ListByokKeys(apb.ListByokKeysRequest())
    assert registered.id in [k.id for k in listed.byok_keys]
    got_key = await runtime.admin.GetByokKey(apb.GetByokKeyRequest(id=registered.id))
    assert got_key.byok_key == registered

    # Revoked: a new tenant under it cannot get a KEK, and VerifyByokKey records why.
    runtime.standin.revoke(key_uri)
    try:
        await refused(
            runtime.objects.CreateObject(
                pb.CreateObjectRequest(
                    name=f"rt-{uuid.uuid4().hex}",
                    value=b"v",
                    key_context={"organization_id": f"{tenant}-second"},
                )
            ),
            grpc.StatusCode.FAILED_PRECONDITION,
            "KEY_UNAVAILABLE",
        )
        checked = await runtime.admin.VerifyByokKey(apb.VerifyByokKeyRequest(id=registered.id))
        assert not checked.byok_key.verified and checked.byok_key.verification_error
    finally:
        runtime.standin.restore(key_uri)
    checked = await runtime.admin.VerifyByokKey(apb.VerifyByokKeyRequest(id=registered.id))
    assert checked.byok_key.verified and not checked.byok_key.verification_error

    events = await runtime.admin.ListAuditEvents(
        apb.ListAuditEventsRequest(type="vault.byok_key.verification_completed", limit=1000)
    )
    mine = [e for e in events.events if registered.id in e.key_ids]
    assert len(mine) == 3, "the registration and two verifications"

    removed = await runtime.admin.DeleteByokKey(apb.DeleteByokKeyRequest(id=registered.id))
    assert removed.byok_key.id == registered.id
    for call in (
        runtime.admin.GetByokKey(apb.GetByokKeyRequest(id=registered.id)),
        runtime.admin.DeleteByokKey(apb.DeleteByokKeyRequest(id=registered.id)),
    ):
        await refused(call, grpc.StatusCode.NOT_FOUND, "BYOK_KEY_NOT_FOUND")
    deleted = await runtime.admin.ListAuditEvents(
        apb.ListAuditEventsRequest(type="vault.byok_key.deleted", limit=1000)
    )
    assert any(registered.id in e.key_ids for e in deleted.events)
    # Its KEK still names the key: the tenant's data stays readable through it.
    got = await runtime.objects.GetObject(pb.GetObjectRequest(id=created.metadata.id))
    assert got.object.value == b"v"


async def test_a_key_that_does_not_verify_is_not_registered(runtime: Runtime) -> None:
    key_uri = runtime.standin.create_key(f"bad-{uuid.uuid4().hex[:8]}")
    runtime.standin.revoke(key_uri)
    pattern = f"org_bad_{uuid.uuid4().hex[:8]}"
    try:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await runtime.register(pattern, key_uri)
    finally:
        runtime.standin.restore(key_uri)
    details = details_of(caught.value)
    assert (details.code, details.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "BYOK_KEY_VERIFICATION_FAILED",
    ), details
    assert details.metadata["key_uri"] == key_uri
    listed = await runtime.admin.ListByokKeys(apb.ListByokKeysRequest())
    assert pattern not in [k.pattern for k in listed.byok_keys]


async def test_clashes_and_bad_input_are_refused_naming_the_rule(runtime: Runtime) -> None:
    key_uri = runtime.standin.create_key(f"clash-{uuid.uuid4().hex[:8]}")
    pattern = f"org_clash_{uuid.uuid4().hex[:8]}"
    first = await runtime.register(pattern, key_uri)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await runtime.register(pattern, key_uri)
    details = details_of(caught.value)
    assert (details.code, details.reason) == (
        grpc.StatusCode.ALREADY_EXISTS,
        "BYOK_KEY_CONFLICT",
    )
    assert details.metadata["conflicts_with"] == first.id

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await runtime.register(f"{CONFIGURED_PREFIX}*", key_uri)
    details = details_of(caught.value)
    assert details.reason == "BYOK_KEY_CONFLICT"
    assert "byok rule 1" in details.metadata["conflicts_with"], details

    bad = {
        "two items": apb.CreateByokKeyRequest(
            match={"organization_id": "a", "user_id": "b"}, key_uri=key_uri
        ),
        "no item": apb.CreateByokKeyRequest(key_uri=key_uri),
        "inner star": apb.CreateByokKeyRequest(match={"organization_id": "a*b*"}, key_uri=key_uri),
        "unconfigured provider": apb.CreateByokKeyRequest(
            match={"organization_id": "x"}, key_uri="nope://key"
        ),
        "not a uri": apb.CreateByokKeyRequest(match={"organization_id": "x"}, key_uri="key"),
    }
    for case, request in bad.items():
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await runtime.admin.CreateByokKey(request)
        details = details_of(caught.value)
        assert (details.code, details.reason) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_ARGUMENT",
        ), case
        assert details.violations, case
    await refused(
        runtime.admin.GetByokKey(apb.GetByokKeyRequest(id="byok_nope")),
        grpc.StatusCode.NOT_FOUND,
        "BYOK_KEY_NOT_FOUND",
    )


async def test_another_process_on_the_same_store_uses_the_key_within_one_ttl(
    runtime: Runtime, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Two vaultd on one SQLite file: a key registered through the first governs the second's
    new KEKs once the second's view of the environment's keys is a TTL old, without a restart."""
    configured, injected = providers_for(runtime.standin)
    data_dir = runtime.data_dir
    second = await start(
        Settings(
            listen="127.0.0.1:0",
            data_dir=data_dir,
            kek_cache={"ttl_seconds": 60, "max_entries": 1000},
            providers=configured,
            bootstrap_api_key=BOOTSTRAP_API_KEY,
        ),
        injected,
    )
    assert second.byok_keys is not None
    clock = Clock()
    second.byok_keys.cache.clock = clock
    channel = authed_channel(f"127.0.0.1:{second.port}")
    try:
        objects = pb_grpc.ObjectServiceStub(channel)
        tenant = f"org_two_{uuid.uuid4().hex[:8]}"
        # The second process reads the environment's keys now (none for this tenant yet).
        await objects.CreateObject(
            pb.CreateObjectRequest(
                name=f"two-{uuid.uuid4().hex}", value=b"x", key_context={"organization_id": "o"}
            )
        )
        key_uri = runtime.standin.create_key(f"two-{uuid.uuid4().hex[:8]}")
        await runtime.register(f"{tenant}*", key_uri)

        async def wraps_for(suffix: str) -> int:
            before = runtime.standin.calls["wrap"]
            await objects.CreateObject(
                pb.CreateObjectRequest(
                    name=f"two-{uuid.uuid4().hex}",
                    value=b"x",
                    key_context={"organization_id": f"{tenant}{suffix}"},
                )
            )
            return runtime.standin.calls["wrap"] - before

        assert await wraps_for("-early") == 0, "inside the TTL: still the old rules"
        clock.now += 61
        assert await wraps_for("-late") == 1, "after one TTL: the new KEK is the customer's"
    finally:
        await channel.close()
        await second.stop(None)


async def test_oversized_input_is_refused_without_echoing_it(runtime: Runtime) -> None:
    cases = {
        "long key": ({"k" * 5000: "v"}, "hcvault://x", "INVALID_KEY_CONTEXT"),
        "long value": ({"organization_id": "😀" * 5000}, "hcvault://x", "INVALID_KEY_CONTEXT"),
        "long uri": ({"organization_id": "o"}, "hcvault://" + "x" * 5000, "INVALID_ARGUMENT"),
    }
    for case, (match, key_uri, reason) in cases.items():
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await runtime.admin.CreateByokKey(
                apb.CreateByokKeyRequest(match=match, key_uri=key_uri)
            )
        details = details_of(caught.value)
        assert (details.code, details.reason) == (grpc.StatusCode.INVALID_ARGUMENT, reason), case
        assert len(details.message) < 1000, case
