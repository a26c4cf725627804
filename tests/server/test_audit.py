"""Audit events over a real gRPC socket, on both stores: one per call, failures included."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import pytest
import redis.asyncio as aioredis
from google.protobuf.timestamp_pb2 import Timestamp

from testkit.at_rest import stored_bytes
from testkit.auth import ALL_PERMISSIONS, add_api_key, bearer, channel
from testkit.grpc_errors import details_of
from testkit.names import unique
from testkit.running import Running, settings_for
from vaultd.core.apikeys import new_secret, secret_hash
from vaultd.core.audit import event_json
from vaultd.logs import JsonFormatter
from vaultd.server import start
from vaultd.storage import SQLITE_FILE_NAME, AuditEvent, AuditQuery, StoreUnavailable, codec
from vaultd.v1 import admin_service_pb2 as admin_pb
from vaultd.v1 import admin_service_pb2_grpc as admin_grpc
from vaultd.v1 import key_service_pb2 as key_pb
from vaultd.v1 import key_service_pb2_grpc as key_grpc
from vaultd.v1 import object_service_pb2 as pb
from vaultd.v1 import object_service_pb2_grpc as pb_grpc

OBJECTS = "/vaultd.v1.ObjectService/"
KEYS = "/vaultd.v1.KeyService/"


class Tenant:
    """A fresh environment with an all-permissions key, so its audit trail is this test's."""

    def __init__(self, running: Running, secret: str, key_id: str, environment: str) -> None:
        self.running, self.secret, self.key_id, self.environment = (
            running,
            secret,
            key_id,
            environment,
        )
        self.m = bearer(secret)
        self.objects = pb_grpc.ObjectServiceStub(running.channel)
        self.keys = key_grpc.KeyServiceStub(running.channel)
        self.admin = admin_grpc.AdminServiceStub(running.channel)

    @classmethod
    async def make(cls, running: Running, name: str = "auditor") -> Tenant:
        environment, secret = unique("env"), new_secret()
        record = await add_api_key(running.vaultd.store, secret, environment, ALL_PERMISSIONS, name)
        return cls(running, secret, record.id, environment)

    async def events(self, **query: Any) -> list[admin_pb.AuditEvent]:
        """Every event of the environment so far, read page by page through the admin RPC."""
        found: list[admin_pb.AuditEvent] = []
        after = ""
        while True:
            page = await self.admin.ListAuditEvents(
                admin_pb.ListAuditEventsRequest(after=after, limit=7, **query), metadata=self.m
            )
            found += page.events
            if len(page.events) < 7:
                return [e for e in found if e.type != "vault.audit.read"]
            after = page.cursor


async def fails(call: Any) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return details_of(caught.value).reason


async def test_one_event_per_call_with_its_type_actor_and_outcome(running: Running) -> None:
    t = await Tenant.make(running)
    org, other_org = {"organization_id": unique("org")}, {"organization_id": unique("org")}
    name = unique("audited")
    o, k, m = t.objects, t.keys, t.m

    created = (
        await o.CreateObject(
            pb.CreateObjectRequest(name=name, value=b"v1", key_context=org), metadata=m
        )
    ).metadata
    await o.GetObject(
        pb.GetObjectRequest(id=created.id), metadata=[*m, ("x-request-id", "audit-req-1")]
    )
    await o.GetObjectByName(pb.GetObjectByNameRequest(name=name), metadata=m)
    await o.DescribeObject(pb.DescribeObjectRequest(id=created.id), metadata=m)
    await o.ListObjectVersions(pb.ListObjectVersionsRequest(id=created.id), metadata=m)
    await o.ListObjects(pb.ListObjectsRequest(), metadata=m)
    await o.UpdateObject(pb.UpdateObjectRequest(id=created.id, value=b"v2"), metadata=m)
    await o.GetObjectVersion(
        pb.GetObjectVersionRequest(id=created.id, version_id=created.version_id), metadata=m
    )
    await o.DeleteObject(pb.DeleteObjectRequest(id=created.id), metadata=m)
    assert await fails(o.GetObject(pb.GetObjectRequest(id=created.id), metadata=m)) == (
        "OBJECT_NOT_FOUND"
    )
    data_key = await k.CreateDataKey(key_pb.CreateDataKeyRequest(key_context=other_org), metadata=m)
    await k.DecryptDataKey(
        key_pb.DecryptDataKeyRequest(encrypted_keys=data_key.encrypted_keys), metadata=m
    )
    rekeyed = await k.RekeyDataKey(
        key_pb.RekeyDataKeyRequest(encrypted_keys=data_key.encrypted_keys, key_context=org),
        metadata=m,
    )
    sealed = await k.Encrypt(key_pb.EncryptRequest(plaintext=b"p", key_context=org), metadata=m)
    await k.Decrypt(key_pb.DecryptRequest(ciphertext=sealed.ciphertext), metadata=m)
    assert await fails(k.Decrypt(key_pb.DecryptRequest(ciphertext=b"junk"), metadata=m)) == (
        "DECRYPTION_FAILED"
    )
    # A key of the same environment without the permission, and a revoked one.
    reader_secret = new_secret()
    reader = await add_api_key(
        running.vaultd.store, reader_secret, t.environment, ("objects:read",), "reader"
    )
    denied = o.CreateObject(
        pb.CreateObjectRequest(name=unique("denied"), value=b"x", key_context=org),
        metadata=bearer(reader_secret),
    )
    assert await fails(denied) == "PERMISSION_DENIED"
    gone_secret = new_secret()
    gone = await add_api_key(running.vaultd.store, gone_secret, t.environment, ("objects:read",))
    await running.vaultd.store.revoke_api_key(gone.id, datetime.now(UTC))
    assert await fails(o.ListObjects(pb.ListObjectsRequest(), metadata=bearer(gone_secret))) == (
        "API_KEY_INVALID"
    )

    events = await t.events()
    me, ok = t.key_id, "success"
    assert [(e.type, e.outcome, e.actor.id, e.method.rpartition("/")[2]) for e in events] == [
        ("vault.kek.created", ok, me, "CreateObject"),
        ("vault.data.created", ok, me, "CreateObject"),
        ("vault.data.read", ok, me, "GetObject"),
        ("vault.data.read", ok, me, "GetObjectByName"),
        ("vault.metadata.read", ok, me, "DescribeObject"),
        ("vault.metadata.read", ok, me, "ListObjectVersions"),
        ("vault.names.listed", ok, me, "ListObjects"),
        ("vault.data.updated", ok, me, "UpdateObject"),
        ("vault.data.read", ok, me, "GetObjectVersion"),
        ("vault.data.deleted", ok, me, "DeleteObject"),
        ("vault.data.read", "OBJECT_NOT_FOUND", me, "GetObject"),
        ("vault.kek.created", ok, me, "CreateDataKey"),
        ("vault.dek.read", ok, me, "CreateDataKey"),
        ("vault.dek.decrypted", ok, me, "DecryptDataKey"),
        ("vault.dek.rekeyed", ok, me, "RekeyDataKey"),
        ("vault.dek.read", ok, me, "Encrypt"),
        ("vault.dek.decrypted", ok, me, "Decrypt"),
        ("vault.dek.decrypted", "DECRYPTION_FAILED", me, "Decrypt"),
        ("vault.data.created", "PERMISSION_DENIED", reader.id, "CreateObject"),
        ("vault.names.listed", "API_KEY_INVALID", gone.id, "ListObjects"),
    ]
    assert all(e.environment_id == t.environment and e.peer for e in events)
    assert events[1].actor.name == "auditor" and events[-2].actor.name == "reader"
    assert len({e.id for e in events}) == len(events)
    assert [e.time.ToDatetime() for e in events] == sorted(e.time.ToDatetime() for e in events)

    kek, made, read = events[0], events[1], events[2]
    # Context values are stored as keyed hashes (docs/SECURITY.md section 7).
    keys = t.running.vaultd.audit_log.keys  # type: ignore[union-attr]
    assert keys is not None
    org_hashed = {k: keys.field_hash(v) for k, v in org.items()}
    other_org_hashed = {k: keys.field_hash(v) for k, v in other_org.items()}
    assert (made.object_id, made.object_name) == (created.id, name)
    assert list(made.key_ids) == list(created.key_ids) and dict(made.key_context) == org_hashed
    assert list(kek.key_ids) == list(created.key_ids) and dict(kek.key_context) == org_hashed
    assert (read.object_id, read.object_name, read.request_id) == (created.id, name, "audit-req-1")
    assert events[10].object_id == created.id  # the failed read names what it asked for
    # A KEK made during a call shares the call's request id; every call has its own.
    assert kek.request_id == made.request_id and events[11].request_id == events[12].request_id
    assert len({e.request_id for e in events if e.type != "vault.kek.created"}) == 18
    dek_read, dek_decrypted, dek_rekeyed = events[12], events[13], events[14]
    assert dek_read.data_key_id == dek_decrypted.data_key_id == data_key.id
    assert list(dek_read.key_ids) == list(data_key.key_ids)
    assert dict(dek_read.key_context) == other_org_hashed
    assert set(dek_rekeyed.key_ids) == {*data_key.key_ids, *rekeyed.key_ids}
    assert events[15].data_key_id == events[16].data_key_id != ""
    assert events[19].api_key_id == gone.id

    # Reading the trail is itself on the trail.
    page = await t.admin.ListAuditEvents(admin_pb.ListAuditEventsRequest(), metadata=m)
    assert page.events[-1].type == "vault.audit.read"


async def test_calls_that_fail_authentication_are_audited_apart(running: Running) -> None:
    anonymous = channel(running.target, None)
    stub = pb_grpc.ObjectServiceStub(anonymous)
    unknown, missing = unique("unknown-key"), unique("no-key")
    try:
        meta = [*bearer(new_secret()), ("x-request-id", unknown)]
        assert await fails(
            stub.DescribeObject(pb.DescribeObjectRequest(id="x"), metadata=meta)
        ) == ("API_KEY_INVALID")
        meta = [("x-request-id", missing)]
        assert await fails(stub.ListObjects(pb.ListObjectsRequest(), metadata=meta)) == (
            "API_KEY_MISSING"
        )
    finally:
        await anonymous.close()
    page = await running.vaultd.store.read_audit_events("", AuditQuery(limit=100_000))
    by_request = {e.request_id: e for e in page.events}
    for request_id, kind, outcome in [
        (unknown, "vault.metadata.read", "API_KEY_INVALID"),
        (missing, "vault.names.listed", "API_KEY_MISSING"),
    ]:
        event = by_request[request_id]
        assert (event.type, event.outcome, event.environment_id) == (kind, outcome, "")
        assert (event.actor_id, event.actor_name, event.object_id) == ("", "", "")


async def test_unparseable_requests_are_refused_after_authentication_and_audited(
    running: Running,
) -> None:
    t = await Tenant.make(running)
    reader_secret = new_secret()
    await add_api_key(running.vaultd.store, reader_secret, t.environment, ("objects:read",))
    raw = running.channel.unary_unary(f"{OBJECTS}CreateObject")
    garbage = b"\xff\xff not protobuf"
    assert await fails(raw(garbage, metadata=t.m)) == "INVALID_ARGUMENT"
    # Permission comes before the request's shape.
    assert await fails(raw(garbage, metadata=bearer(reader_secret))) == "PERMISSION_DENIED"
    assert [(e.type, e.outcome) for e in await t.events()] == [
        ("vault.data.created", "INVALID_ARGUMENT"),
        ("vault.data.created", "PERMISSION_DENIED"),
    ]


async def test_audit_events_filter_page_and_stay_in_their_environment(running: Running) -> None:
    t, stranger = await Tenant.make(running), await Tenant.make(running)
    for n in range(5):
        await t.objects.ListObjects(pb.ListObjectsRequest(), metadata=t.m)
        if n == 2:
            middle = datetime.now(UTC)
        await t.keys.CreateDataKey(
            key_pb.CreateDataKeyRequest(key_context={"organization_id": "org_paging"}),
            metadata=t.m,
        )
    listed = await t.events(type="vault.names.listed")
    assert len(listed) == 5 and {e.type for e in listed} == {"vault.names.listed"}
    since = Timestamp()
    since.FromDatetime(middle)
    later = await t.events(type="vault.names.listed", since=since)
    assert later == listed[3:]
    assert await stranger.events() == []

    for request, reason in [
        (admin_pb.ListAuditEventsRequest(after="no-such-cursor"), "INVALID_CURSOR"),
        (admin_pb.ListAuditEventsRequest(limit=1001), "INVALID_ARGUMENT"),
    ]:
        assert await fails(t.admin.ListAuditEvents(request, metadata=t.m)) == reason


def _forms(secret: bytes) -> list[bytes]:
    return [
        secret,
        base64.b64encode(secret),
        base64.urlsafe_b64encode(secret),
        secret.hex().encode(),
    ]


async def _audit_at_rest(running: Running) -> bytes:
    """Every audit record as stored: each entry of each audit stream, or the audit table."""
    if running.redis_url:
        chunks: list[bytes] = []
        for url in running.redis_node_urls():
            client = aioredis.from_url(url)
            async for key in client.scan_iter(match="*:audit"):
                for _, fields in await client.xrange(key):
                    chunks += fields.values()
            await client.aclose()
        return b"\n".join(chunks)
    with sqlite3.connect(running.data_dir / SQLITE_FILE_NAME) as db:
        return b"\n".join(row[0] for row in db.execute("SELECT record FROM audit_events"))


async def test_no_value_plaintext_data_key_or_api_key_in_audit_data_or_logs(
    running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    t = await Tenant.make(running)
    marker = b"audit-plaintext-" + os.urandom(8).hex().encode()
    org = {"organization_id": unique("org")}
    created = (
        await t.objects.CreateObject(
            pb.CreateObjectRequest(name=unique("scan"), value=marker, key_context=org),
            metadata=t.m,
        )
    ).metadata
    await t.objects.GetObject(pb.GetObjectRequest(id=created.id), metadata=t.m)
    await t.objects.UpdateObject(
        pb.UpdateObjectRequest(id=created.id, value=marker + b"2"), metadata=t.m
    )
    data_key = await t.keys.CreateDataKey(
        key_pb.CreateDataKeyRequest(key_context=org), metadata=t.m
    )
    await t.keys.DecryptDataKey(
        key_pb.DecryptDataKeyRequest(encrypted_keys=data_key.encrypted_keys), metadata=t.m
    )
    sealed = await t.keys.Encrypt(
        key_pb.EncryptRequest(plaintext=marker + b"3", key_context=org), metadata=t.m
    )
    await t.keys.Decrypt(key_pb.DecryptRequest(ciphertext=sealed.ciphertext), metadata=t.m)
    made = await t.admin.CreateApiKey(
        admin_pb.CreateApiKeyRequest(name="scanned", permissions=["admin"]), metadata=t.m
    )
    await t.admin.ListApiKeys(admin_pb.ListApiKeysRequest(), metadata=bearer(made.api_key))
    await t.admin.RevokeApiKey(admin_pb.RevokeApiKeyRequest(id=made.metadata.id), metadata=t.m)
    await fails(t.admin.ListApiKeys(admin_pb.ListApiKeysRequest(), metadata=bearer(made.api_key)))
    anonymous = channel(running.target, None)
    bad_key = "sk_" + base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")
    await fails(
        pb_grpc.ObjectServiceStub(anonymous).GetObject(
            pb.GetObjectRequest(id=created.id), metadata=bearer(bad_key)
        )
    )
    await anonymous.close()

    events = await t.events()
    assert {"vault.data.created", "vault.dek.decrypted", "vault.apikey.revoked"} <= {
        e.type for e in events
    }
    formatter = JsonFormatter()
    logs = "\n".join(formatter.format(r) for r in caplog.records).encode()
    audit_data = b"\n".join(
        [await _audit_at_rest(running), *(e.SerializeToString() for e in events)]
    )
    assert created.id.encode() in audit_data and b"ObjectService/GetObject" in logs
    at_rest = await stored_bytes(running)
    secrets = [marker, data_key.data_key, *(k.encode() for k in (t.secret, made.api_key, bad_key))]
    for secret in secrets:
        for form in _forms(secret):
            assert form not in audit_data
            assert form not in logs
    for api_key in (t.secret, made.api_key, bad_key):
        assert api_key.encode() not in at_rest
    assert secret_hash(made.api_key).encode() in at_rest  # the scan sees the key records


async def test_a_result_is_withheld_when_its_event_cannot_be_stored(tmp_path: Path) -> None:
    vaultd = await start(settings_for(tmp_path, None))
    try:
        async with channel(f"127.0.0.1:{vaultd.port}") as chan:
            objects = pb_grpc.ObjectServiceStub(chan)
            created = (
                await objects.CreateObject(
                    pb.CreateObjectRequest(name="n", value=b"secret", key_context={"a": "b"})
                )
            ).metadata

            async def broken(events: Sequence[AuditEvent], keep_after: datetime) -> None:
                raise StoreUnavailable("audit store down")

            vaultd.store.append_audit_events = broken  # type: ignore[method-assign]
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await objects.GetObject(pb.GetObjectRequest(id=created.id))
            assert details_of(caught.value).reason == "BACKEND_UNAVAILABLE"
            assert b"secret" not in repr(caught.value).encode()
            missing = objects.GetObject(pb.GetObjectRequest(id="secret_01J9Z3K4ABCDEFGHJKMNPQRSTV"))
            assert await fails(missing) == "OBJECT_NOT_FOUND"  # a failure keeps its own error
    finally:
        await vaultd.stop(None)


async def test_events_older_than_the_retention_are_trimmed(tmp_path: Path) -> None:
    vaultd = await start(settings_for(tmp_path, None, audit_retention_days=0.3 / 86400))
    try:
        async with channel(f"127.0.0.1:{vaultd.port}") as chan:
            objects = pb_grpc.ObjectServiceStub(chan)
            await objects.ListObjects(pb.ListObjectsRequest())
            await asyncio.sleep(0.4)
            await objects.ListObjects(pb.ListObjectsRequest(), metadata=[("x-request-id", "last")])
        page = await vaultd.store.read_audit_events("default", AuditQuery())
        assert [e.request_id for e in page.events] == ["last"]
    finally:
        await vaultd.stop(None)


def test_event_json_has_every_field_and_nothing_else() -> None:
    event = AuditEvent(
        id="event_1",
        type="vault.data.read",
        time=datetime(2030, 1, 1, tzinfo=UTC),
        environment_id="default",
        actor_id="key_1",
        actor_name="n",
        outcome="success",
        request_id="r",
    )
    assert codec.decode_audit_event(codec.encode_audit_event(event)) == event
    assert set(event_json(event)) == set(admin_pb.AuditEvent.DESCRIPTOR.fields_by_name)
    assert event_json(event)["time"] == "2030-01-01T00:00:00Z"
