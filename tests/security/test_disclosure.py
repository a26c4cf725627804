"""Class 9: least disclosure.

A tenant's CMK URI names its cloud account, region and key. A caller with a low-privilege key
whose tenant's CMK is revoked learns that the key is unavailable (FAILED_PRECONDITION,
KEY_UNAVAILABLE), not which key: not in the message, not in the ErrorInfo metadata. An admin
of the environment still sees the URI. The metrics endpoint binds to loopback when no host is
named.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from testkit.auth import BOOTSTRAP_API_KEY, add_api_key, channel
from testkit.grpc_errors import details_of
from testkit.serving import free_port, scrape
from testkit.standins.aws import AwsKmsStandIn
from vaultd.server import Vaultd, start
from vaultd.settings import ByokRuleSettings, Settings
from vaultd.v1 import admin_service_pb2 as apb
from vaultd.v1 import admin_service_pb2_grpc as apb_grpc
from vaultd.v1 import key_service_pb2 as kpb
from vaultd.v1 import key_service_pb2_grpc as kpb_grpc

USER_KEY = "sk_" + "security-disclosure-user-key".ljust(43, "0")
TENANT = "org_disclosure"


@pytest.fixture
async def byok_vaultd(
    aws_kms_standin: AwsKmsStandIn, tmp_path: Path
) -> AsyncIterator[tuple[Vaultd, str]]:
    key_uri = aws_kms_standin.create_key(f"disclosure-{uuid.uuid4().hex[:8]}")
    settings = Settings(
        listen="127.0.0.1:0",
        data_dir=tmp_path / "data",
        providers={"aws-kms": aws_kms_standin.provider_settings},
        byok=[ByokRuleSettings(match={"organization_id": f"{TENANT}*"}, key=key_uri)],
        bootstrap_api_key=BOOTSTRAP_API_KEY,
        kek_cache={"ttl_seconds": 0},
    )
    vaultd = await start(settings)
    await add_api_key(vaultd.store, USER_KEY, permissions=("keys:use", "objects:read"))
    try:
        yield vaultd, key_uri
    finally:
        aws_kms_standin.restore(key_uri)
        await vaultd.stop(None)


def _mentions(text: str, key_uri: str) -> bool:
    arn = key_uri.split("://", 1)[1]
    key_id = arn.rsplit("/", 1)[-1]
    return any(part in text for part in (key_uri, arn, key_id))


async def test_a_non_admin_caller_never_sees_the_tenants_cmk_uri(
    byok_vaultd: tuple[Vaultd, str], aws_kms_standin: AwsKmsStandIn
) -> None:
    vaultd, key_uri = byok_vaultd
    context = {"organization_id": f"{TENANT}_{uuid.uuid4().hex[:6]}"}
    target = f"127.0.0.1:{vaultd.port}"
    aws_kms_standin.revoke(key_uri)
    async with channel(target, USER_KEY) as user, channel(target) as admin:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await kpb_grpc.KeyServiceStub(user).CreateDataKey(
                kpb.CreateDataKeyRequest(key_context=context)
            )
        seen = details_of(raised.value)
        assert seen.code == grpc.StatusCode.FAILED_PRECONDITION
        assert seen.reason == "KEY_UNAVAILABLE" and seen.domain == "vaultd"
        assert "key_uri" not in seen.metadata
        everything = seen.message + repr(seen.metadata) + repr(raised.value.trailing_metadata())
        assert not _mentions(everything, key_uri), everything

        # The admin of the environment still gets the URI, to find the key to fix.
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await kpb_grpc.KeyServiceStub(admin).CreateDataKey(
                kpb.CreateDataKeyRequest(key_context=context)
            )
        shown = details_of(raised.value)
        assert shown.reason == "KEY_UNAVAILABLE" and shown.metadata.get("key_uri") == key_uri

        # Nothing else changed: the user's refused call is audited with its reason.
        events = await apb_grpc.AdminServiceStub(admin).ListAuditEvents(
            apb.ListAuditEventsRequest(type="vault.dek.read", limit=1000)
        )
        outcomes = [e.outcome for e in events.events]
        assert outcomes.count("KEY_UNAVAILABLE") == 2


def _local_addresses() -> list[str]:
    """This host's non-loopback IPv4 addresses (none on a host with only loopback)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # no packet is sent: this only picks a route
            address = s.getsockname()[0]
        except OSError:
            return []
    return [] if address.startswith("127.") else [address]


@pytest.mark.parametrize("listen", ["{port}", ":{port}"])
async def test_metrics_without_a_host_bind_to_loopback_only(tmp_path: Path, listen: str) -> None:
    port = free_port()
    settings = Settings(
        listen="127.0.0.1:0",
        data_dir=tmp_path / "data",
        bootstrap_api_key=BOOTSTRAP_API_KEY,
        metrics_listen=listen.format(port=port),
    )
    vaultd = await start(settings)
    try:
        assert vaultd.metrics_server is not None
        assert vaultd.metrics_server.host == "127.0.0.1"
        assert any(name == "vaultd_rpc_in_flight" for name, _ in scrape(port))
        for address in _local_addresses():
            with socket.socket() as s, pytest.raises(OSError):
                s.settimeout(2)
                s.connect((address, port))
    finally:
        await vaultd.stop(None)
