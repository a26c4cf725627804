"""Files that hold keys or data: owner-only, never written through a planted symlink.

Three rules, against another account on the same host (docs/SECURITY.md section 8):
- the data directory is made 0700, set explicitly after mkdir so no umask can loosen it;
- a key file is created with O_CREAT | O_EXCL | O_NOFOLLOW, mode 0600, and a rewrite goes
  through a fresh temporary name with the same flags, so a symlink or file someone placed at a
  predictable path can neither receive the key nor be truncated;
- at start, a key file or data directory that group or others may use is refused with one line
  (InsecurePath) naming the path, its mode and the chmod that fixes it.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
# O_NOFOLLOW: the last path component must not be a symlink; O_EXCL: it must not exist at all.
NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class InsecurePath(ValueError):
    """A key file or data directory others could read or change; the message is one line."""


def private_dir(path: Path) -> None:
    """Make `path` (and missing parents) a directory; the ones made here end up 0700."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    path.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR_MODE)
    for made in missing:
        os.chmod(made, PRIVATE_DIR_MODE)  # mkdir's mode is masked by the umask; chmod's is not


def write_new(path: Path, data: bytes) -> None:
    """Create `path` with `data`, mode 0600; FileExistsError if anything (a symlink too) is
    there already."""
    fd = os.open(path, NEW_FILE_FLAGS, PRIVATE_FILE_MODE)
    try:
        os.fchmod(fd, PRIVATE_FILE_MODE)
        _write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def create_complete(path: Path, data: bytes) -> None:
    """Like write_new, but whoever sees `path` sees all of `data`: written under a fresh name,
    then hard-linked into place (FileExistsError if `path` exists, atomically), so a process
    starting at the same moment never reads a half-written file."""
    temporary = temporary_beside(path)
    write_new(temporary, data)
    try:
        os.link(temporary, path, follow_symlinks=False)
    finally:
        temporary.unlink()


def replace(path: Path, data: bytes) -> None:
    """Atomically make `path` hold `data` (mode 0600): written under a fresh, unpredictable
    name beside it, then renamed over it, and the directory synced."""
    temporary = temporary_beside(path)
    write_new(temporary, data)
    try:
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def temporary_beside(path: Path) -> Path:
    """A fresh name in `path`'s directory nobody can have guessed and planted in advance."""
    return path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")


def check_private_file(path: Path, what: str) -> None:
    """InsecurePath if group or others may read or write the file at `path` (when it exists)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return
    if stat.S_IMODE(mode) & 0o077:
        raise InsecurePath(
            f"{what} {path} is mode {stat.S_IMODE(mode):04o}, readable or writable by others: "
            f"run `chmod 600 {path}` (vaultd refuses to start)"
        )


def check_private_dir(path: Path, what: str) -> None:
    """InsecurePath if group or others may write in the directory at `path` (when it exists):
    they could plant files or symlinks where vaultd writes keys."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return
    if stat.S_IMODE(mode) & 0o022:
        raise InsecurePath(
            f"{what} {path} is mode {stat.S_IMODE(mode):04o}, writable by others: "
            f"run `chmod 700 {path}` (vaultd refuses to start)"
        )


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
