"""Class 8: files on disk, attacked by another account on the same host.

- A permissive umask (0) must not leave the data directory, root key or store file open.
- A symlink planted where `vaultd root rotate` writes its temporary file must not receive the
  root key (on main the temporary name was fixed and followed symlinks).
- A root key file or data directory others can read or write is refused at start with one
  line naming the path, its mode and the fix, and nothing is created or changed.
"""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from providers.internal import InternalProvider, RootKeyFile
from testkit.running import settings_for
from testkit.serving import VAULTD, clean_env, free_port
from vaultd.server import start


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


async def test_a_permissive_umask_leaves_no_file_or_directory_open(tmp_path: Path) -> None:
    data = tmp_path / "deep" / "data"
    previous = os.umask(0)
    try:
        vaultd = await start(settings_for(data, None))
    finally:
        os.umask(previous)
    try:
        assert mode(data) == 0o700, f"data dir is {mode(data):o}"
        assert mode(tmp_path / "deep") == 0o700, "a parent made on the way is private too"
        assert mode(data / "root.key") == 0o600
        assert mode(data / "vaultd.db") == 0o600
        assert mode(data / "audit.key") == 0o600
    finally:
        await vaultd.stop(None)


def _rotate(data: Path) -> tuple[int, str]:
    result = subprocess.run(
        [str(VAULTD), "root", "rotate", "--data-dir", str(data)],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result.returncode, result.stderr


async def test_a_symlink_planted_at_the_temporary_path_gets_no_root_key(tmp_path: Path) -> None:
    data = tmp_path / "data"
    RootKeyFile.create(data / "root.key")
    original = RootKeyFile.load(data / "root.key")
    loot = tmp_path / "attacker" / "loot"
    loot.parent.mkdir()
    # Where main wrote the new file before renaming it over the old one, and every name a
    # guess at a pattern might pick.
    planted = [data / "root.key.new", data / "root.key.tmp", data / ".root.key.tmp"]
    for link in planted:
        link.symlink_to(loot)

    code, err = await asyncio.to_thread(_rotate, data)

    assert code == 0, err
    assert not loot.exists(), "the root key was written through a planted symlink"
    rotated = RootKeyFile.load(data / "root.key")
    assert sorted(rotated.keys) == [1, 2] and rotated.keys[1] == original.keys[1]
    assert not (data / "root.key").is_symlink() and mode(data / "root.key") == 0o600
    for link in planted:  # left alone: neither followed nor replaced
        assert link.is_symlink() and os.readlink(link) == str(loot)
    leftovers = [p.name for p in data.iterdir() if p.name.endswith(".tmp") and p not in planted]
    assert leftovers == []


def _serve(data: Path) -> subprocess.CompletedProcess[str]:
    """`vaultd serve` as an operator runs it; on a refusal it exits at once."""
    env = clean_env() | {
        "VAULTD_LISTEN": f"127.0.0.1:{free_port()}",
        "VAULTD_DATA_DIR": str(data),
        "VAULTD_BOOTSTRAP_API_KEY": "sk_" + "security-files-admin".ljust(43, "0"),
    }
    process = subprocess.Popen(
        [str(VAULTD), "serve"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        out, err = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        pytest.fail(f"vaultd started on a data dir it should refuse:\n{err[-2000:]}")
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


@pytest.mark.parametrize(
    ("target", "loose", "fix"),
    [
        ("root.key", 0o644, "chmod 600"),
        ("root.key", 0o660, "chmod 600"),
        (".", 0o777, "chmod 700"),
        (".", 0o757, "chmod 700"),
    ],
)
async def test_start_refuses_a_key_or_directory_others_can_use(
    tmp_path: Path, target: str, loose: int, fix: str
) -> None:
    data = tmp_path / "data"
    RootKeyFile.create(data / "root.key")
    before = (data / "root.key").read_bytes()
    path = (data / target).resolve()
    os.chmod(path, loose)
    try:
        result = await asyncio.to_thread(_serve, data)
    finally:
        os.chmod(data, 0o700)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(path) in lines[0] and f"{loose:04o}" in lines[0] and fix in lines[0]
    assert "Traceback" not in result.stderr and result.stdout == ""
    # Nothing else changed: no store made, the key untouched, no admin key printed.
    assert sorted(p.name for p in data.iterdir()) == ["root.key"]
    assert (data / "root.key").read_bytes() == before


async def test_the_in_process_start_refuses_too(tmp_path: Path) -> None:
    data = tmp_path / "data"
    RootKeyFile.create(data / "root.key")
    os.chmod(data / "root.key", 0o640)
    with pytest.raises(ValueError, match=r"root key file .* is mode 0640"):  # InsecurePath
        await start(settings_for(data, None))


async def test_a_store_file_others_can_read_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    (data / "vaultd.db").touch()
    os.chmod(data / "vaultd.db", 0o644)
    result = await asyncio.to_thread(_serve, data)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert "store file" in lines[0] and "0644" in lines[0] and "chmod 600" in lines[0]
    assert sorted(p.name for p in data.iterdir()) == ["vaultd.db"], "no root key made"


_RACE = """
import sys, time
from pathlib import Path
from providers.internal import InternalProvider
while time.time() < float(sys.argv[2]):
    pass
print(sorted(InternalProvider.from_file(Path(sys.argv[1])).fingerprints())[0])
"""


@pytest.mark.parametrize("round_", range(3))
def test_processes_starting_together_on_a_new_data_dir_share_one_complete_root_key(
    tmp_path: Path, round_: int
) -> None:
    # A server and a CLI started at once on an empty data dir: the loser of the O_EXCL race
    # used to read the winner's file half-written and die on the JSON.
    path = tmp_path / "data" / "root.key"
    go_at = str(time.time() + 1.5)
    command = [sys.executable, "-c", _RACE, str(path), go_at]
    racers = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(12)
    ]
    results = [racer.communicate(timeout=60) for racer in racers]
    assert [racer.returncode for racer in racers] == [0] * 12, [err for _, err in results]
    on_disk = sorted(InternalProvider(RootKeyFile.load(path)).fingerprints())[0]
    assert {out.strip() for out, _ in results} == {on_disk}
