"""Running vaultd as users do: the `vaultd serve` command, restarts, health, reflection, at rest."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from testkit.at_rest import stored_bytes
from testkit.auth import BOOTSTRAP_API_KEY
from testkit.auth import channel as authed_channel
from testkit.running import Running, settings_for
from vaultd.core.envelope import EncryptedKeys, Kek, Purpose, unwrap_entry
from vaultd.server import start
from vaultd.settings import load_settings
from vaultd.v1 import object_service_pb2 as pb
from vaultd.v1 import object_service_pb2_grpc as pb_grpc

VAULTD = Path(sys.executable).parent / "vaultd"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_defaults_are_the_embedded_store_on_localhost(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("VAULTD_"):
            monkeypatch.delenv(name)
    settings = load_settings()
    assert settings.listen == "127.0.0.1:50051"
    assert settings.redis_url is None
    assert settings.data_dir == Path("vaultd-data")
    assert settings.root_key_path == Path("vaultd-data/root.key")
    assert settings.max_value_bytes == 1024 * 1024


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], int, Path]]:
    """`vaultd serve` in a fresh directory, configured only by a VAULTD_* variable."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VAULTD_")}
    env["VAULTD_LISTEN"] = f"127.0.0.1:{port}"
    env["VAULTD_BOOTSTRAP_API_KEY"] = BOOTSTRAP_API_KEY
    proc = subprocess.Popen(
        [str(VAULTD), "serve"], cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True
    )
    yield proc, port, tmp_path
    if proc.poll() is None:
        proc.kill()
        proc.wait()


async def _wait_serving(port: int) -> grpc.aio.Channel:
    channel = authed_channel(f"127.0.0.1:{port}")
    health = health_pb2_grpc.HealthStub(channel)
    for _ in range(100):
        try:
            reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=1)
            if reply.status == health_pb2.HealthCheckResponse.SERVING:
                return channel
        except grpc.aio.AioRpcError:
            await asyncio.sleep(0.1)
    raise AssertionError("vaultd did not become healthy")


async def test_serve_command_runs_embedded_and_drains_on_sigterm(
    served: tuple[subprocess.Popen[str], int, Path],
) -> None:
    proc, port, cwd = served
    channel = await _wait_serving(port)
    stub = pb_grpc.ObjectServiceStub(channel)
    ctx = {"organization_id": "org_cli"}
    created = await stub.CreateObject(pb.CreateObjectRequest(name="n", value=b"v", key_context=ctx))
    root_key = cwd / "vaultd-data" / "root.key"
    assert stat.S_IMODE(root_key.stat().st_mode) == 0o600
    assert (cwd / "vaultd-data" / "vaultd.db").exists()

    # Calls in flight when SIGTERM arrives still complete; then the process exits 0. Holding the
    # store's write lock keeps them in flight (each waits to write its audit event) until after
    # SIGTERM: a call the server has not yet accepted when it stops is cancelled by gRPC, so
    # they are given time to be accepted first.
    lock = sqlite3.connect(cwd / "vaultd-data" / "vaultd.db", isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")
    calls = [
        asyncio.ensure_future(stub.GetObject(pb.GetObjectRequest(id=created.metadata.id)))
        for _ in range(20)
    ]
    await asyncio.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    await asyncio.sleep(0.2)
    assert not any(call.done() for call in calls)
    lock.execute("COMMIT")
    lock.close()
    replies = await asyncio.gather(*calls)
    assert all(r.object.value == b"v" for r in replies)
    await channel.close()
    assert await asyncio.to_thread(proc.wait, 30) == 0
    stderr = proc.stderr.read() if proc.stderr else ""
    assert "generated a new root key" in stderr and "production" in stderr


async def test_embedded_store_survives_restart(tmp_path: Path) -> None:
    first = await start(settings_for(tmp_path, None))
    async with authed_channel(f"127.0.0.1:{first.port}") as channel:
        stub = pb_grpc.ObjectServiceStub(channel)
        meta = (
            await stub.CreateObject(
                pb.CreateObjectRequest(name="durable", value=b"kept", key_context={"a": "b"})
            )
        ).metadata
    await first.stop(None)
    root_key = (tmp_path / "root.key").read_bytes()

    second = await start(settings_for(tmp_path, None))
    try:
        async with authed_channel(f"127.0.0.1:{second.port}") as channel:
            stub = pb_grpc.ObjectServiceStub(channel)
            got = (await stub.GetObjectByName(pb.GetObjectByNameRequest(name="durable"))).object
        assert got.value == b"kept" and got.metadata == meta
        assert (tmp_path / "root.key").read_bytes() == root_key
    finally:
        await second.stop(None)


async def test_health_and_reflection(running: Running) -> None:
    health = health_pb2_grpc.HealthStub(running.channel)
    for service in ("", "vaultd.v1.ObjectService"):
        reply = await health.Check(health_pb2.HealthCheckRequest(service=service))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    reflect = reflection_pb2_grpc.ServerReflectionStub(running.channel)
    responses = reflect.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")])
    )
    services = set()
    async for response in responses:
        services = {s.name for s in response.list_services_response.service}
    assert {"vaultd.v1.ObjectService", "grpc.health.v1.Health"} <= services


def _forms(secret: bytes) -> list[bytes]:
    return [secret, base64.b64encode(secret), secret.hex().encode()]


async def test_nothing_secret_at_rest(running: Running, objects: pb_grpc.ObjectServiceStub) -> None:
    marker = b"recognisable-plaintext-" + os.urandom(8).hex().encode()
    context = {"organization_id": "org_at_rest_" + os.urandom(4).hex()}
    meta = (
        await objects.CreateObject(
            pb.CreateObjectRequest(
                name="at-rest-" + marker[-8:].decode(), value=marker, key_context=context
            )
        )
    ).metadata
    await objects.UpdateObject(pb.UpdateObjectRequest(id=meta.id, value=marker + b"-v2"))

    # Recover the KEKs (from the server's cache) and each version's DEK to look for them too.
    keyring = running.vaultd.keyring
    keks = [entry[1] for key, entry in keyring.cache._entries.items() if key[0] == "version"]
    assert keks, "the KEK cache should hold the KEKs just used"
    deks: list[bytes] = []
    for version in (
        await objects.ListObjectVersions(pb.ListObjectVersionsRequest(id=meta.id))
    ).versions:
        stored = await running.vaultd.store.get_object_version("default", meta.id, version.id)
        assert stored is not None
        keys = EncryptedKeys.parse(stored.version.encrypted_keys)
        entry = keys.entries[0]
        kek = next(k for k in keks if isinstance(k, Kek) and k.kek_id == entry.kek_id)
        deks.append(unwrap_entry(keys, entry, kek.key, Purpose.OBJECT_VERSION))

    at_rest = await stored_bytes(running)
    assert meta.id.encode() in at_rest, "the scan must see the stored object"
    for secret in [marker, *(k.key for k in keks if isinstance(k, Kek)), *deks]:
        for form in _forms(secret):
            assert form not in at_rest
