"""`vaultd apikey ...`, `vaultd audit tail` and the bootstrap key, run as operators run them."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import uuid
from pathlib import Path

import grpc
import pytest

from testkit.auth import BOOTSTRAP_API_KEY, channel
from testkit.grpc_errors import details_of
from testkit.redis_server import RedisServer
from testkit.running import settings_for
from testkit.serving import VAULTD, clean_env, free_port, wait_serving
from vaultd.cli import main
from vaultd.core.apikeys import new_secret, secret_hash
from vaultd.server import start
from vaultd.storage import AuditQuery
from vaultd.v1 import admin_service_pb2 as admin_pb
from vaultd.v1 import admin_service_pb2_grpc as admin_grpc
from vaultd.v1 import object_service_pb2 as pb
from vaultd.v1 import object_service_pb2_grpc as pb_grpc

KEY = re.compile(r"sk_[A-Za-z0-9_-]{43}")


def vaultd(*args: str, store: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(VAULTD), *args, *store], capture_output=True, text=True, env=clean_env(), timeout=60
    )


def ok(*args: str, store: list[str]) -> str:
    done = vaultd(*args, store=store)
    assert done.returncode == 0, done.stderr
    return done.stdout


async def in_process(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """What `vaultd *args` prints, run in this process (in a thread: it runs its own loop)."""
    capsys.readouterr()
    assert await asyncio.to_thread(main, list(args)) == 0
    return capsys.readouterr().out


async def test_apikey_commands_on_a_data_dir_drive_a_server_on_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = ["--data-dir", str(tmp_path)]
    # Started first: it has nothing to print until the key below is used.
    follow = await asyncio.create_subprocess_exec(
        str(VAULTD), "audit", "tail", "--follow", "--environment", "ci", "--poll-seconds", "0.1",
        "--type", "vault.data.read", *store, stdout=subprocess.PIPE, env=clean_env(),
    )  # fmt: skip
    made = ok(
        "apikey", "create", "--environment", "ci", "--permissions", "objects:read,objects:write",
        "--name", "ci bot", store=store,
    )  # fmt: skip
    assert KEY.fullmatch(made.strip()) and made == made.strip() + "\n"  # the key, nothing else
    secret = made.strip()
    listed = ok("apikey", "list", store=store)
    header, row = listed.splitlines()
    assert header.split() == [
        "ID", "NAME", "ENVIRONMENT", "PERMISSIONS", "CREATED", "REVOKED", "CONTEXT"
    ]  # fmt: skip
    key_id = row.split()[0]
    assert row.split()[1:4] == ["ci", "bot", "ci"] and "objects:read,objects:write" in row
    assert secret not in listed and secret_hash(secret) not in listed

    vaultd_ = await start(settings_for(tmp_path, None, api_key_cache_seconds=0.2))
    try:
        async with channel(f"127.0.0.1:{vaultd_.port}", secret) as chan:
            objects = pb_grpc.ObjectServiceStub(chan)
            created = (
                await objects.CreateObject(
                    pb.CreateObjectRequest(name="n", value=b"v", key_context={"a": "b"})
                )
            ).metadata
            assert (created.environment_id, created.updated_by.id) == ("ci", key_id)
            await objects.GetObject(pb.GetObjectRequest(id=created.id))
            assert follow.stdout is not None
            followed = json.loads(await asyncio.wait_for(follow.stdout.readline(), 10))
            assert (followed["type"], followed["object_id"]) == ("vault.data.read", created.id)

            revoked = await asyncio.to_thread(ok, "apikey", "revoke", key_id, store=store)
            assert key_id in revoked
            await asyncio.sleep(0.3)  # the server's cache TTL: another process revoked it
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await objects.GetObject(pb.GetObjectRequest(id=created.id))
            assert details_of(caught.value).reason == "API_KEY_INVALID"
    finally:
        follow.terminate()
        await follow.wait()
        await vaultd_.stop(None)

    listed = await in_process(capsys, "apikey", "list", *store)
    stamp = r"\d{4}-\d\d-\d\dT\S+Z"
    assert re.search(rf"{key_id} .* {stamp} +{stamp} +-$", listed, re.M)
    tailed = await in_process(capsys, "audit", "tail", *store)
    trail = [json.loads(line) for line in tailed.splitlines()]
    ci = [(e["type"], e["outcome"], e["actor"]["id"]) for e in trail if e["environment_id"] == "ci"]
    assert ci == [
        ("vault.apikey.created", "success", "cli"),
        ("vault.kek.created", "success", key_id),
        ("vault.data.created", "success", key_id),
        ("vault.data.read", "success", key_id),
        ("vault.apikey.revoked", "success", "cli"),
        ("vault.data.read", "API_KEY_INVALID", key_id),
    ]
    assert trail[0]["api_key_id"] == key_id and "@" in trail[0]["actor"]["name"]
    assert [e["time"] for e in trail] == sorted(e["time"] for e in trail)
    since = trail[3]["time"]
    later = await in_process(
        capsys, "audit", "tail", "--environment", "ci", "--since", since, *store
    )
    assert [json.loads(line)["id"] for line in later.splitlines()] == [e["id"] for e in trail[3:]]
    assert secret not in json.dumps(trail)


# In process from here: the same `main` the command runs, without a process start each.


@pytest.mark.parametrize(
    "args",
    [
        ["--environment", "ci", "--permissions", "objects:delete"],
        ["--environment", "ci", "--permissions", ""],
        ["--environment", "a:b", "--permissions", "admin"],
    ],
)
def test_apikey_create_refuses_bad_input(
    tmp_path: Path, args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["apikey", "create", *args, "--data-dir", str(tmp_path)]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("vaultd: ")


def test_apikey_revoke_of_a_missing_key_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = "key_01J9Z3K4ABCDEFGHJKMNPQRSTV"
    assert main(["apikey", "revoke", missing, "--data-dir", str(tmp_path)]) == 1
    assert "no API key" in capsys.readouterr().err


def test_apikey_commands_on_redis(
    redis_server: RedisServer, capsys: pytest.CaptureFixture[str]
) -> None:
    environment = f"env-{uuid.uuid4().hex[:8]}"

    def run(*args: str) -> str:
        capsys.readouterr()
        assert main([*args, "--redis-url", redis_server.url]) == 0
        return capsys.readouterr().out

    made = run("apikey", "create", "--environment", environment, "--permissions", "keys:use")
    assert KEY.fullmatch(made.strip())
    [row] = run("apikey", "list", "--environment", environment).splitlines()[1:]
    key_id = row.split()[0]
    assert row.split()[-2:] == ["-", "-"]  # not revoked, not scoped
    run("apikey", "revoke", key_id)
    [row] = run("apikey", "list", "--environment", environment).splitlines()[1:]
    assert row.split()[-2] != "-" and row.split()[-1] == "-"
    [event] = [
        json.loads(line) for line in run("audit", "tail", "--environment", environment).splitlines()
    ][1:]
    assert (event["type"], event["api_key_id"]) == ("vault.apikey.revoked", key_id)


# --- the first admin key -------------------------------------------------------------------


async def test_bootstrap_key_from_the_setting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    vaultd_ = await start(settings_for(tmp_path, None))
    try:
        assert "sk_" not in capsys.readouterr().out  # supplied, so nothing to show
        async with channel(f"127.0.0.1:{vaultd_.port}", BOOTSTRAP_API_KEY) as chan:
            listed = await admin_grpc.AdminServiceStub(chan).ListApiKeys(
                admin_pb.ListApiKeysRequest()
            )
        [key] = listed.api_keys
        assert (key.name, key.environment_id, list(key.permissions)) == (
            "bootstrap",
            "default",
            ["admin"],
        )
        page = await vaultd_.store.read_audit_events("default", AuditQuery())
        first = page.events[0]
        assert (first.type, first.actor_id, first.api_key_id) == (
            "vault.apikey.created",
            "vaultd",
            key.id,
        )
    finally:
        await vaultd_.stop(None)


async def test_a_bootstrap_setting_is_ignored_once_the_store_has_keys(tmp_path: Path) -> None:
    first = await start(settings_for(tmp_path, None))
    await first.stop(None)
    other = new_secret()
    second = await start(settings_for(tmp_path, None, bootstrap_api_key=other))
    try:
        assert await second.store.find_api_key(secret_hash(other)) is None
        assert len(await second.store.list_api_keys()) == 1
    finally:
        await second.stop(None)


def test_a_malformed_bootstrap_key_stops_the_start_without_echoing_it(tmp_path: Path) -> None:
    env = clean_env() | {"VAULTD_BOOTSTRAP_API_KEY": "sk_hunter2-but-too-short"}
    done = subprocess.run(
        [str(VAULTD), "serve", "--data-dir", str(tmp_path), "--listen", "127.0.0.1:0"],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert "VAULTD_BOOTSTRAP_API_KEY must be sk_" in done.stderr
    assert "hunter2" not in done.stderr + done.stdout


async def test_a_generated_key_is_printed_once_and_never_logged(tmp_path: Path) -> None:
    def serve() -> subprocess.Popen[str]:
        env = clean_env() | {"VAULTD_LISTEN": f"127.0.0.1:{port}"}
        return subprocess.Popen(
            [str(VAULTD), "serve", "--data-dir", str(tmp_path)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip

    port = free_port()
    runs: list[tuple[str, str]] = []
    for _ in range(2):  # a fresh store, then the same store again
        proc = serve()
        try:
            chan = await wait_serving(f"127.0.0.1:{port}")
            await chan.close()
            if not runs:
                line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 10)  # type: ignore[union-attr]
                [secret] = KEY.findall(line)
                assert "shown" in line and "default" in line
                async with channel(f"127.0.0.1:{port}", secret) as authed:
                    admin = admin_grpc.AdminServiceStub(authed)
                    await admin.ListApiKeys(admin_pb.ListApiKeysRequest())
        finally:
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=30)
        runs.append((out, err))
    (first_out, first_err), (second_out, second_err) = runs
    assert KEY.findall(first_out) == []  # the line read above was the only one with a key
    assert KEY.findall(second_out) == []
    assert secret not in first_err + second_err


async def test_apikey_create_context_makes_a_scoped_key_that_list_shows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = ["--data-dir", str(tmp_path)]
    secret = await in_process(
        capsys, "apikey", "create", "--environment", "ci", "--permissions", "keys:use",
        "--context", "organization_id=org_1", "--context", "organization_id=org_2*", *store,
    )  # fmt: skip
    assert KEY.fullmatch(secret.strip())
    listed = await in_process(capsys, "apikey", "list", *store)
    assert listed.splitlines()[1].endswith(" organization_id=org_1,organization_id=org_2*")
    # Refused with the argument named, and no key made: an admin key cannot be scoped.
    refused = vaultd(
        "apikey", "create", "--environment", "ci", "--permissions", "admin",
        "--context", "organization_id=org_1", store=store,
    )  # fmt: skip
    assert refused.returncode == 1 and "context_constraints" in refused.stderr
    bad = vaultd(
        "apikey", "create", "--environment", "ci", "--permissions", "keys:use",
        "--context", "organization_id", store=store,
    )  # fmt: skip
    assert bad.returncode == 1 and "context_constraints[0]" in bad.stderr
    assert len((await in_process(capsys, "apikey", "list", *store)).splitlines()) == 2
