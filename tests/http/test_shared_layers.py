"""What the HTTP front door shares with gRPC: request ids, audit events, rate limits, metrics,
TLS and mTLS; plus Idempotency-Key on create, and how the listener is turned on.

Servers with special settings (a rate limit, metrics, TLS) are started here, on the embedded
store, each in its own directory.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import subprocess
import time
from pathlib import Path

import grpc
import pytest

from testkit.auth import BOOTSTRAP_API_KEY, bearer
from testkit.http_client import call, send
from testkit.http_server import HttpVaultd, http_vaultd
from testkit.serving import VAULTD, clean_env, free_port, scrape
from testkit.tls import make_pki
from vaultd.core.apikeys import secret_hash
from vaultd.settings import Settings
from vaultd.storage.records import AuditQuery
from vaultd.v1 import object_service_pb2 as opb
from vaultd.v1 import object_service_pb2_grpc as opb_grpc
from vaultd.workers import check

CONTEXT = {"organization_id": "org_layers"}


async def events_of(server: HttpVaultd, key: str, request_id: str) -> list:
    """The audit events the call with `request_id` left in the key's environment."""
    record = await server.vaultd.store.find_api_key(secret_hash(key))
    assert record is not None and server.vaultd.audit_log is not None
    await server.vaultd.audit_log.flush()
    page = await server.vaultd.audit_log.read(record.environment_id, AuditQuery(limit=1000))
    return [e for e in page.events if e.request_id == request_id]


async def test_request_ids_and_audit_events(http_server: HttpVaultd) -> None:
    key = await http_server.new_key()
    reply = await call(
        http_server.base_url,
        "POST",
        "/vault/v1/kv",
        api_key=key,
        body={"name": "audited", "value": "secret value", "key_context": CONTEXT},
        headers={"X-Request-ID": "req-http-create-1"},
    )
    assert reply.status == 201
    assert reply.headers["x-request-id"] == "req-http-create-1"
    events = await events_of(http_server, key, "req-http-create-1")
    # The KEK for the context's item was made just in time, by this call.
    assert sorted(e.type for e in events) == ["vault.data.created", "vault.kek.created"]
    [event] = [e for e in events if e.type == "vault.data.created"]
    assert event.outcome == "success"
    assert event.object_id == reply.json["id"] and event.object_name == "audited"
    assert event.method == "/vaultd.v1.ObjectService/CreateObject"
    assert event.peer.startswith("ipv4:127.0.0.1:")
    assert "secret value" not in repr(event)

    failed = await call(
        http_server.base_url,
        "GET",
        "/vault/v1/kv/secret_01J00000000000000000000000",
        api_key=key,
        headers={"X-Request-ID": "req-http-missing-1"},
    )
    assert failed.status == 404
    [miss] = await events_of(http_server, key, "req-http-missing-1")
    assert (miss.type, miss.outcome) == ("vault.data.read", "OBJECT_NOT_FOUND")

    # Without one, vaultd makes an id and returns it.
    made = await call(http_server.base_url, "GET", "/vault/v1/kv", api_key=key)
    assert len(made.headers["x-request-id"]) == 32


async def test_429_with_retry_after_from_the_shared_buckets(tmp_path: Path) -> None:
    settings = {"rate_limit": {"requests_per_second": 0.5, "burst": 2}}
    async with http_vaultd("sqlite", tmp_path, **settings) as server:
        key = await server.new_key()
        statuses = [
            (await call(server.base_url, "GET", "/vault/v1/kv", api_key=key)).status
            for _ in range(2)
        ]
        assert statuses == [200, 200]
        limited = await call(server.base_url, "GET", "/vault/v1/kv", api_key=key)
        assert limited.status == 429
        assert limited.json["code"] == "RATE_LIMITED"
        assert int(limited.headers["retry-after"]) >= 1
        # The bucket is the key's, whichever door it uses: gRPC is limited now too.
        async with grpc.aio.insecure_channel(server.grpc_target) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as rpc:
                await opb_grpc.ObjectServiceStub(channel).ListObjects(
                    opb.ListObjectsRequest(), metadata=bearer(key)
                )
        assert rpc.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_http_calls_are_counted_as_their_rpcs(tmp_path: Path) -> None:
    port = free_port()
    async with http_vaultd("sqlite", tmp_path, metrics_listen=f"127.0.0.1:{port}") as server:
        key = await server.new_key()
        for _ in range(3):
            assert (await call(server.base_url, "GET", "/vault/v1/kv", api_key=key)).status == 200
        await call(server.base_url, "GET", "/vault/v1/kv/name/nothing", api_key=key)
        samples = await asyncio.to_thread(scrape, port)
    listed = (
        "vaultd_rpc_handled_total",
        frozenset({("method", "vaultd.v1.ObjectService/ListObjects"), ("code", "OK")}),
    )
    missing = (
        "vaultd_rpc_handled_total",
        frozenset({("method", "vaultd.v1.ObjectService/GetObjectByName"), ("code", "NOT_FOUND")}),
    )
    assert samples[listed] == 3
    assert samples[missing] == 1


async def test_idempotency_key_replays_a_create(http_server: HttpVaultd) -> None:
    key = await http_server.new_key()
    body = {"name": "once", "value": "v", "key_context": CONTEXT}
    headers = {"Idempotency-Key": "create-once-1"}
    url = http_server.base_url
    first, second = await asyncio.gather(
        call(url, "POST", "/vault/v1/kv", api_key=key, body=body, headers=headers),
        call(url, "POST", "/vault/v1/kv", api_key=key, body=body, headers=headers),
    )
    assert (first.status, second.status) == (201, 201)
    assert first.json == second.json  # one object, answered twice
    again = await call(url, "POST", "/vault/v1/kv", api_key=key, body=body, headers=headers)
    assert again.json == first.json
    listing = await call(url, "GET", "/vault/v1/kv", api_key=key)
    assert [o["name"] for o in listing.json["data"]] == ["once"]
    # The same key with another body is refused; without a key, the name is taken.
    other = {**body, "value": "w"}
    reused = await call(url, "POST", "/vault/v1/kv", api_key=key, body=other, headers=headers)
    assert (reused.status, reused.json["code"]) == (422, "IDEMPOTENCY_KEY_REUSED")
    plain = await call(url, "POST", "/vault/v1/kv", api_key=key, body=body)
    assert (plain.status, plain.json["code"]) == (409, "NAME_TAKEN")
    # Another caller's identical key and body is not this caller's: it runs (and meets 409).
    stranger = await http_server.new_key(environment=None)
    theirs = await call(url, "POST", "/vault/v1/kv", api_key=stranger, body=body, headers=headers)
    assert theirs.status == 201 and theirs.json["id"] != first.json["id"]
    # A failed create is not kept: after it, the same key runs again.
    bad = {"name": "later", "value": "v", "key_context": {}}
    retry = {"Idempotency-Key": "create-later"}
    for _ in range(2):
        failed = await call(url, "POST", "/vault/v1/kv", api_key=key, body=bad, headers=retry)
        assert (failed.status, failed.json["code"]) == (422, "INVALID_KEY_CONTEXT")


async def test_tls_and_mutual_tls(tmp_path: Path) -> None:
    pki = make_pki()
    paths = pki.write(tmp_path / "pki")
    trusting = ssl.create_default_context(cadata=pki.ca.decode())
    async with http_vaultd(
        "sqlite",
        tmp_path / "tls",
        tls_cert_file=paths["server_cert"],
        tls_key_file=paths["server_key"],
    ) as server:
        assert server.base_url.startswith("https://")
        key = await server.new_key()
        reply = await call(server.base_url, "GET", "/vault/v1/kv", api_key=key, context=trusting)
        assert reply.status == 200
        with pytest.raises(Exception, match="CERTIFICATE_VERIFY_FAILED"):
            await call(server.base_url, "GET", "/vault/v1/kv", api_key=key)
    async with http_vaultd(
        "sqlite",
        tmp_path / "mtls",
        tls_cert_file=paths["server_cert"],
        tls_key_file=paths["server_key"],
        tls_client_ca_file=paths["ca"],
    ) as server:
        key = await server.new_key()
        with pytest.raises(Exception):  # noqa: B017  (the handshake fails; its error varies)
            await call(server.base_url, "GET", "/vault/v1/kv", api_key=key, context=trusting)
        with_cert = ssl.create_default_context(cadata=pki.ca.decode())
        with_cert.load_cert_chain(paths["client_cert"], paths["client_key"])
        reply = await call(server.base_url, "GET", "/vault/v1/kv", api_key=key, context=with_cert)
        assert reply.status == 200


async def test_off_by_default(tmp_path: Path) -> None:
    async with http_vaultd("sqlite", tmp_path, http_listen=None) as server:
        assert server.vaultd.http is None


def test_workers_need_a_fixed_http_port() -> None:
    settings = Settings(listen="127.0.0.1:5005", workers=2, http_listen="127.0.0.1:0")
    with pytest.raises(ValueError, match="http-listen"):
        check(settings)


def test_serve_with_http_listen_flag_and_variable(tmp_path: Path) -> None:
    """A real `vaultd serve`, as operators run it (a sync test: nothing here serves)."""
    for how in ("flag", "variable"):
        port = free_port()
        env = clean_env() | {
            "VAULTD_LISTEN": f"127.0.0.1:{free_port()}",
            "VAULTD_BOOTSTRAP_API_KEY": BOOTSTRAP_API_KEY,
            "VAULTD_DATA_DIR": str(tmp_path / how),
        }
        args = [str(VAULTD), "serve"]
        if how == "flag":
            args += ["--http-listen", f"127.0.0.1:{port}"]
        else:
            env["VAULTD_HTTP_LISTEN"] = f"127.0.0.1:{port}"
        log = tmp_path / f"{how}.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(args, env=env, stdout=out, stderr=out)
        try:
            reply = None
            for _ in range(100):
                try:
                    reply = send(
                        f"http://127.0.0.1:{port}/vault/v1/kv",
                        "GET",
                        None,
                        {"Authorization": f"Bearer {BOOTSTRAP_API_KEY}"},
                        None,
                    )
                    break
                except OSError:
                    time.sleep(0.1)
            assert reply is not None and reply.status == 200, log.read_text()[-2000:]
        finally:
            process.terminate()
            assert process.wait(15) == 0, log.read_text()[-2000:]
        assert "WorkOS-compatible HTTP API" in log.read_text()


async def test_a_taken_http_port_fails_the_start_with_one_line(tmp_path: Path) -> None:
    port = free_port()
    env = clean_env() | {
        "VAULTD_LISTEN": f"127.0.0.1:{free_port()}",
        "VAULTD_DATA_DIR": str(tmp_path),
        "VAULTD_BOOTSTRAP_API_KEY": BOOTSTRAP_API_KEY,
    }
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        done = await asyncio.to_thread(
            subprocess.run,
            [str(VAULTD), "serve", "--http-listen", f"127.0.0.1:{port}"],
            env=env,
            capture_output=True,
            timeout=60,
        )
    assert done.returncode != 0
    assert f"cannot listen for HTTP on 127.0.0.1:{port}" in done.stderr.decode()
    assert "Traceback" not in done.stderr.decode()
    assert os.environ.get("VAULTD_HTTP_LISTEN") is None


async def test_failed_authentications_share_the_peers_budget(tmp_path: Path) -> None:
    """Bad keys over HTTP spend the same per-address budget as over gRPC (port aside)."""
    limits = {"rate_limit": {"failed_auth_per_second": 0.1, "failed_auth_burst": 3}}
    async with http_vaultd("sqlite", tmp_path, **limits) as server:
        bad = "sk_" + "q" * 43
        good = await server.new_key()
        assert (await call(server.base_url, "GET", "/vault/v1/kv", api_key=good)).status == 200
        statuses = [
            (await call(server.base_url, "GET", "/vault/v1/kv", api_key=bad)).status
            for _ in range(3)
        ]
        assert statuses == [401, 401, 401]
        refused = await call(server.base_url, "GET", "/vault/v1/kv", api_key=bad)
        assert (refused.status, refused.json["code"]) == (429, "RATE_LIMITED")
        assert int(refused.headers["retry-after"]) >= 1
        async with grpc.aio.insecure_channel(server.grpc_target) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as rpc:
                await opb_grpc.ObjectServiceStub(channel).ListObjects(
                    opb.ListObjectsRequest(), metadata=bearer(bad)
                )
        assert rpc.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        # A key this process already knows to be good is still served from that address.
        assert (await call(server.base_url, "GET", "/vault/v1/kv", api_key=good)).status == 200
