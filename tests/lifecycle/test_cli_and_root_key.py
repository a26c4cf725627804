"""`vaultd root rotate|retire` and `vaultd kek ...` on a data dir that a running vaultd serves."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from pathlib import Path

import grpc
import pytest

from providers.internal import RootKeyFile
from testkit.auth import channel
from testkit.grpc_errors import refused
from testkit.lifecycle import CACHE_TTL, new_org
from testkit.running import settings_for
from vaultd.cli import main
from vaultd.server import start
from vaultd.v1 import object_service_pb2 as pb
from vaultd.v1 import object_service_pb2_grpc as pb_grpc


@pytest.fixture(autouse=True)
def short_kek_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """The commands' settings: a rewrap waits one KEK cache TTL after the newest rotation."""
    monkeypatch.setenv("VAULTD_KEK_CACHE__TTL_SECONDS", str(CACHE_TTL))


async def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """`vaultd *args` in this process (in a thread: it runs its own loop): code, out, err."""
    capsys.readouterr()
    code = await asyncio.to_thread(main, list(args))
    out, err = capsys.readouterr()
    return code, out, err


async def test_root_rotation_rewrap_and_retire_keep_every_object(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = ["--data-dir", str(tmp_path)]
    settings = settings_for(tmp_path, None, kek_cache={"ttl_seconds": CACHE_TTL})
    vaultd = await start(settings)
    orgs = [new_org(), new_org()]
    try:
        async with channel(f"127.0.0.1:{vaultd.port}") as chan:
            objects = pb_grpc.ObjectServiceStub(chan)
            made = [
                (
                    await objects.CreateObject(
                        pb.CreateObjectRequest(name=f"n{n}", value=b"v%d" % n, key_context=o)
                    )
                ).metadata.id
                for n, o in enumerate(orgs)
            ]
            code, out, _ = await run(capsys, "root", "rotate", *store)
            assert code == 0 and out.strip().endswith("versions 1, 2; primary 2")
            code, _, err = await run(capsys, "root", "retire", "--below", "2", *store)
            assert code == 1 and "2 KEK version(s) are still wrapped" in err, "not rewrapped yet"
            assert sorted(RootKeyFile.load(tmp_path / "root.key").keys) == [1, 2]
            code, out, err = await run(capsys, "kek", "rewrap", "--all", "--wait", *store)
            assert code == 0, err
            assert re.search(r"2/2 objects, 0 versions and 2 KEK versions rewrapped \(done\)", err)

            code, _, err = await run(capsys, "root", "retire", "--below", "3", *store)
            assert code == 1 and "primary" in err, "the primary version is never retired"
            code, out, _ = await run(capsys, "root", "retire", "--below", "2", *store)
            assert code == 0 and out.strip().endswith("versions 2; primary 2")
            assert sorted(RootKeyFile.load(tmp_path / "root.key").keys) == [2]

            vaultd.keyring.cache.clear()  # the server re-reads the changed root key file
            for n, object_id in enumerate(made):
                got = await objects.GetObject(pb.GetObjectRequest(id=object_id))
                assert got.object.value == b"v%d" % n
    finally:
        await vaultd.stop(None)


async def test_kek_commands_rotate_rewrap_shred_and_audit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = ["--data-dir", str(tmp_path)]
    vaultd = await start(settings_for(tmp_path, None, kek_cache={"ttl_seconds": CACHE_TTL}))
    org, other = new_org(), new_org()
    item = f"organization_id={org['organization_id']}"
    try:
        async with channel(f"127.0.0.1:{vaultd.port}") as chan:
            objects = pb_grpc.ObjectServiceStub(chan)
            ids = []
            for context in (org, org, other):
                request = pb.CreateObjectRequest(
                    name=f"o-{uuid.uuid4().hex}", value=b"x", key_context=context
                )
                ids.append((await objects.CreateObject(request)).metadata.id)

            code, out, err = await run(capsys, "kek", "rotate", "--item", item, *store)
            assert code == 0, err
            header, row = out.splitlines()
            assert header.split() == ["ID", "ITEM", "VERSIONS", "MIN", "KEY", "URI", "SHREDDED"]
            assert row.split()[1:5] == [item, "2", "1", "internal://root"]
            code, _, err = await run(capsys, "kek", "rewrap", "--item", item, "--wait", *store)
            assert code == 0, err
            assert re.search(r"3/3 objects, 2 versions and 0 KEK versions rewrapped \(done\)", err)
            code, out, _ = await run(capsys, "kek", "jobs", *store)
            assert re.search(r"^rewrap_\w{26} +done +3/3 +2 +0 ", out, re.M)
            code, out, _ = await run(capsys, "kek", "list", *store)
            assert len(out.splitlines()) == 3

            code, _, err = await run(capsys, "kek", "shred", "--item", item, *store)
            assert code == 2 and "--confirm" in err
            code, _, err = await run(
                capsys, "kek", "retire", "--item", item, "--min-version", "9", *store
            )
            assert code == 1 and "min_decryption_version" in err
            code, out, _ = await run(capsys, "kek", "shred", "--item", item, "--confirm", *store)
            assert code == 0 and item in out
            vaultd.keyring.cache.clear()  # another process shredded: this one's cache forgets
            for object_id in ids[:2]:
                await refused(
                    objects.GetObject(pb.GetObjectRequest(id=object_id)),
                    grpc.StatusCode.FAILED_PRECONDITION,
                    "KEY_SHREDDED",
                )
            got = await objects.GetObject(pb.GetObjectRequest(id=ids[2]))
            assert got.object.value == b"x"
    finally:
        await vaultd.stop(None)

    code, out, _ = await run(capsys, "audit", "tail", "--environment", "default", *store)
    trail = [json.loads(line) for line in out.splitlines()]
    cli = [(e["type"], e["method"]) for e in trail if e["actor"]["id"] == "cli"]
    assert cli == [  # the refused retire changed nothing, so left no event
        ("vault.kek.rotated", "vaultd kek rotate"),
        ("vault.kek.rewrap.started", "vaultd kek rewrap"),
        ("vault.kek.shredded", "vaultd kek shred"),
    ]
    finished = [e for e in trail if e["type"] == "vault.kek.rewrap.finished"]
    assert [(e["outcome"], e["actor"]["id"]) for e in finished] == [("success", "vaultd")]
