"""The internal provider: KEKs wrapped by a root key that vaultd keeps in a local file.

The root key file is JSON holding every root key version, so a new version can be added and old
ones retired without losing what they wrapped:

    {"format": "vaultd-root-key/v1", "primary": 1,
     "versions": [{"version": 1, "key": "<base64 of 32 bytes>", "created_at": "..."}]}

A wrapped key is `0x01 || root version (uint32 BE) || nonce (12) || AES-256-GCM(key) || tag`,
with the canonical binding as associated data.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import hmac
import json
import logging
import os
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from providers import Binding, KeyUnavailableError, canonical_binding
from vaultd import securefiles

log = logging.getLogger(__name__)

SCHEME = "internal"
DEFAULT_URI = "internal://root"
FORMAT = "vaultd-root-key/v1"
_WRAP_FORMAT = 1
_HEADER = struct.Struct(">BI")
_NONCE_BYTES = 12
_FINGERPRINT_LABEL = b"vaultd/root-key-fingerprint/v1"


@dataclass(frozen=True, slots=True)
class RootKeyFile:
    """The parsed root key file: every version, and which one wraps new KEKs."""

    primary: int
    keys: dict[int, bytes]
    created: dict[int, str] = field(default_factory=dict)
    """Each version's creation time as written (ISO 8601), kept when the file is rewritten."""

    @classmethod
    def load(cls, path: Path) -> RootKeyFile:
        doc = json.loads(path.read_text())
        if doc.get("format") != FORMAT:
            raise ValueError(f"{path}: not a vaultd root key file (format {FORMAT} expected)")
        keys = {int(v["version"]): base64.b64decode(v["key"]) for v in doc["versions"]}
        if any(len(k) != 32 for k in keys.values()):
            raise ValueError(f"{path}: every root key must be 32 bytes")
        primary = int(doc["primary"])
        if primary not in keys:
            raise ValueError(f"{path}: primary version {primary} is not in the file")
        created = {int(v["version"]): str(v.get("created_at", "")) for v in doc["versions"]}
        return cls(primary, keys, created)

    @classmethod
    def create(cls, path: Path) -> RootKeyFile:
        """Write a new file with one random version, readable by its owner only."""
        securefiles.private_dir(path.parent)
        root = cls(1, {1: AESGCM.generate_key(bit_length=256)}, {1: _now()})
        # Complete or absent (FileExistsError): two processes starting at once must neither
        # each write a different root key nor read half of the other's.
        securefiles.create_complete(path, root._text().encode())
        return root

    @classmethod
    def rotate(cls, path: Path) -> RootKeyFile:
        """Add a new random version and make it primary; older versions still unwrap."""
        with _locked(path):
            old = cls.load(path)
            version = max(old.keys) + 1
            new = cls(
                version,
                {**old.keys, version: AESGCM.generate_key(bit_length=256)},
                {**old.created, version: _now()},
            )
            securefiles.replace(path, new._text().encode())
        return new

    @classmethod
    def retire(cls, path: Path, below: int) -> RootKeyFile:
        """Delete every version older than `below`; never the primary one."""
        with _locked(path):
            old = cls.load(path)
            if below > old.primary:
                raise ValueError(f"version {old.primary} is primary: rotate before retiring it")
            kept = {v: k for v, k in old.keys.items() if v >= below}
            new = cls(old.primary, kept, {v: old.created.get(v, "") for v in kept})
            securefiles.replace(path, new._text().encode())
        return new

    def _text(self) -> str:
        doc = {
            "format": FORMAT,
            "primary": self.primary,
            "versions": [
                {
                    "version": v,
                    "key": base64.b64encode(self.keys[v]).decode(),
                    "created_at": self.created.get(v, ""),
                }
                for v in sorted(self.keys)
            ],
        }
        return json.dumps(doc, indent=2)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One rotate or retire at a time per file, across processes."""
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _now() -> str:
    return datetime.now(UTC).isoformat()


class InternalProvider:
    """Wraps KEKs with AES-256-GCM under the root key file's primary version.

    Given the file's path, it re-reads the file when it changed (a `vaultd root rotate` or
    `retire` run beside a running server), so every process of a deployment moves to a new
    root key version without a restart. A stat per provider call is cheap: calls happen on KEK
    cache misses only.
    """

    scheme = SCHEME

    def __init__(self, root: RootKeyFile, path: Path | None = None) -> None:
        self._path = path
        self._seen: tuple[int, int, int] | None = None
        self._use(root)
        if path is not None:
            self._seen = _signature(path)

    @classmethod
    def from_file(cls, path: Path) -> InternalProvider:
        """The provider of the root key file at `path`, which is made if it does not exist."""
        try:
            return cls(RootKeyFile.create(path), path)
        except FileExistsError:
            return cls(RootKeyFile.load(path), path)

    def _use(self, root: RootKeyFile) -> None:
        self._root = root
        self._aeads = {version: AESGCM(key) for version, key in root.keys.items()}

    def _refresh(self) -> None:
        if self._path is None:
            return
        seen = _signature(self._path)
        if seen != self._seen:
            self._use(RootKeyFile.load(self._path))
            self._seen = seen

    async def wrap(self, key_uri: str, key: bytes, binding: Binding) -> bytes:
        self._refresh()
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aeads[self._root.primary].encrypt(nonce, key, canonical_binding(binding))
        return _HEADER.pack(_WRAP_FORMAT, self._root.primary) + nonce + sealed

    async def unwrap(self, key_uri: str, wrapped: bytes, binding: Binding) -> bytes:
        if len(wrapped) < _HEADER.size + _NONCE_BYTES + 16:
            raise KeyUnavailableError(f"{key_uri}: wrapped key is truncated")
        self._refresh()
        fmt, version = _HEADER.unpack_from(wrapped)
        aead = self._aeads.get(version)
        if fmt != _WRAP_FORMAT or aead is None:
            raise KeyUnavailableError(f"{key_uri}: root key version {version} is not available")
        nonce = wrapped[_HEADER.size : _HEADER.size + _NONCE_BYTES]
        try:
            sealed = wrapped[_HEADER.size + _NONCE_BYTES :]
            return aead.decrypt(nonce, sealed, canonical_binding(binding))
        except InvalidTag:
            raise KeyUnavailableError(f"{key_uri}: wrapped key does not authenticate") from None

    def fingerprints(self) -> frozenset[str]:
        """One fingerprint per root key version: an HMAC of a fixed label under the key, which
        names the key without revealing anything of it. A store records those that served it."""
        self._refresh()
        return frozenset(
            hmac.new(key, _FINGERPRINT_LABEL, hashlib.sha256).hexdigest()[:32]
            for key in self._root.keys.values()
        )

    def needs_rewrap(self, key_uri: str, wrapped: bytes) -> bool:
        """True when `wrapped` is under an older root key version than the primary one."""
        self._refresh()
        return root_version(wrapped) != self._root.primary

    async def verify(self, key_uri: str) -> None:
        probe = os.urandom(32)
        binding = {"vaultd:verify": "internal"}
        if await self.unwrap(key_uri, await self.wrap(key_uri, probe, binding), binding) != probe:
            raise KeyUnavailableError(f"{key_uri}: round trip returned a different key")


def root_version(wrapped: bytes) -> int | None:
    """The root key version that wrapped `wrapped`; None if it is no internal wrapped key."""
    if len(wrapped) < _HEADER.size:
        return None
    fmt, version = _HEADER.unpack_from(wrapped)
    return int(version) if fmt == _WRAP_FORMAT else None


def _signature(path: Path) -> tuple[int, int, int]:
    """What changes when the file is replaced or rewritten."""
    st = path.stat()
    return st.st_ino, st.st_mtime_ns, st.st_size
