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
import json
import logging
import os
import struct
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from providers import Binding, KeyUnavailableError, canonical_binding

log = logging.getLogger(__name__)

SCHEME = "internal"
DEFAULT_URI = "internal://root"
FORMAT = "vaultd-root-key/v1"
_WRAP_FORMAT = 1
_HEADER = struct.Struct(">BI")
_NONCE_BYTES = 12


@dataclass(frozen=True, slots=True)
class RootKeyFile:
    """The parsed root key file: every version, and which one wraps new KEKs."""

    primary: int
    keys: dict[int, bytes]

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
        return cls(primary, keys)

    @classmethod
    def create(cls, path: Path) -> RootKeyFile:
        """Write a new file with one random version, readable by its owner only."""
        path.parent.mkdir(parents=True, exist_ok=True)
        key = AESGCM.generate_key(bit_length=256)
        doc = {
            "format": FORMAT,
            "primary": 1,
            "versions": [
                {
                    "version": 1,
                    "key": base64.b64encode(key).decode(),
                    "created_at": datetime.now(UTC).isoformat(),
                }
            ],
        }
        # O_EXCL: two processes starting at once must not each write a different root key.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        return cls(1, {1: key})

    @classmethod
    def load_or_create(cls, path: Path) -> RootKeyFile:
        try:
            return cls.create(path)
        except FileExistsError:
            return cls.load(path)


class InternalProvider:
    """Wraps KEKs with AES-256-GCM under the root key file's primary version."""

    scheme = SCHEME

    def __init__(self, root: RootKeyFile) -> None:
        self._root = root
        self._aeads = {version: AESGCM(key) for version, key in root.keys.items()}

    async def wrap(self, key_uri: str, key: bytes, binding: Binding) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aeads[self._root.primary].encrypt(nonce, key, canonical_binding(binding))
        return _HEADER.pack(_WRAP_FORMAT, self._root.primary) + nonce + sealed

    async def unwrap(self, key_uri: str, wrapped: bytes, binding: Binding) -> bytes:
        if len(wrapped) < _HEADER.size + _NONCE_BYTES + 16:
            raise KeyUnavailableError(f"{key_uri}: wrapped key is truncated")
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

    async def verify(self, key_uri: str) -> None:
        probe = os.urandom(32)
        binding = {"vaultd:verify": "internal"}
        if await self.unwrap(key_uri, await self.wrap(key_uri, probe, binding), binding) != probe:
            raise KeyUnavailableError(f"{key_uri}: round trip returned a different key")
