"""Envelope encryption: DEKs wrapped by KEKs into an `encrypted_keys` blob, data sealed by DEKs.

`encrypted_keys`, format version 1 (docs/FORMAT.md is the byte-level specification):

    offset  size  field
    0       1     format version, 0x01
    1       16    DEK id (the 16 bytes of a ULID)
    17      1     entry count N, 1..10
    then N entries, each:
            1     KEK id length L, 1..64
            L     KEK id, ASCII
            4     KEK version, uint32 big-endian, >= 1
            12    nonce
            48    AES-256-GCM(KEK, nonce, DEK) with its 16-byte tag appended

Each entry's associated data is `b"vaultd/dek/v1\\0" || DEK id || KEK id || \\0 || KEK version`,
so an entry cannot be moved to another DEK id, another KEK or another KEK version. A KEK id is a
digest of (environment, context item), so the entry is bound to its context item too. Any one
entry recovers the DEK.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from vaultd.core.errors import DecryptionFailed, InvalidBlob

FORMAT_VERSION = 1
DEK_BYTES = 32
DEK_ID_BYTES = 16
NONCE_BYTES = 12
TAG_BYTES = 16
MAX_ENTRIES = 10
MAX_KEK_ID_BYTES = 64
WRAPPED_DEK_BYTES = DEK_BYTES + TAG_BYTES
MAX_ENCRYPTED_KEYS_BYTES = (
    1
    + DEK_ID_BYTES
    + 1
    + MAX_ENTRIES * (1 + MAX_KEK_ID_BYTES + 4 + NONCE_BYTES + WRAPPED_DEK_BYTES)
)
_U32 = struct.Struct(">I")


def key_id(kek_id: str, version: int) -> str:
    """How a KEK version is named in ObjectMetadata.key_ids and audit events: kek_<hex>.v<n>."""
    return f"{kek_id}.v{version}"


@dataclass(frozen=True, slots=True)
class Kek:
    """An unwrapped key-encryption key: the newest version of one context item's KEK, or any."""

    kek_id: str
    version: int
    key: bytes
    stamp: str = ""
    """The stored version's stamp (storage KekVersion.stamp): writes of DEKs wrapped under this
    KEK carry it, so the store refuses them if it no longer holds this version as it was."""


@dataclass(frozen=True, slots=True)
class WrappedEntry:
    kek_id: str
    kek_version: int
    nonce: bytes
    wrapped_dek: bytes


@dataclass(frozen=True, slots=True)
class EncryptedKeys:
    """A parsed `encrypted_keys` blob."""

    dek_id: bytes
    entries: tuple[WrappedEntry, ...]

    @property
    def key_ids(self) -> tuple[str, ...]:
        """The KEK version of each entry, named as in key_ids."""
        return tuple(key_id(e.kek_id, e.kek_version) for e in self.entries)

    def to_bytes(self) -> bytes:
        out = bytearray((FORMAT_VERSION,))
        out += self.dek_id
        out.append(len(self.entries))
        for e in self.entries:
            kek_id = e.kek_id.encode("ascii")
            out.append(len(kek_id))
            out += kek_id + _U32.pack(e.kek_version) + e.nonce + e.wrapped_dek
        return bytes(out)

    @classmethod
    def parse(cls, blob: bytes, field: str = "encrypted_keys") -> EncryptedKeys:
        """Parse and bound-check a blob; every malformed blob is InvalidBlob, never a crash."""
        if len(blob) > MAX_ENCRYPTED_KEYS_BYTES:
            raise InvalidBlob(field, f"is longer than {MAX_ENCRYPTED_KEYS_BYTES} bytes")
        reader = _Reader(blob, field)
        if reader.byte() != FORMAT_VERSION:
            raise InvalidBlob(field, f"has an unknown format version (expected {FORMAT_VERSION})")
        dek_id = reader.take(DEK_ID_BYTES)
        count = reader.byte()
        if not 1 <= count <= MAX_ENTRIES:
            raise InvalidBlob(field, f"must have 1 to {MAX_ENTRIES} entries, has {count}")
        entries = []
        for _ in range(count):
            id_len = reader.byte()
            if not 1 <= id_len <= MAX_KEK_ID_BYTES:
                raise InvalidBlob(field, f"has a KEK id length out of range 1..{MAX_KEK_ID_BYTES}")
            raw_id = reader.take(id_len)
            if not raw_id.isascii():
                raise InvalidBlob(field, "has a KEK id that is not ASCII")
            (version,) = _U32.unpack(reader.take(4))
            if version == 0:
                raise InvalidBlob(field, "has KEK version 0")
            entries.append(
                WrappedEntry(
                    raw_id.decode("ascii"),
                    version,
                    reader.take(NONCE_BYTES),
                    reader.take(WRAPPED_DEK_BYTES),
                )
            )
        reader.finish()
        return cls(dek_id, tuple(entries))


class _Reader:
    """Reads a blob front to back; running past the end is InvalidBlob."""

    def __init__(self, blob: bytes, field: str) -> None:
        self._blob = memoryview(blob)
        self._at = 0
        self._field = field

    def take(self, n: int) -> bytes:
        if self._at + n > len(self._blob):
            raise InvalidBlob(self._field, "is truncated")
        chunk = bytes(self._blob[self._at : self._at + n])
        self._at += n
        return chunk

    def byte(self) -> int:
        return self.take(1)[0]

    def finish(self) -> None:
        if self._at != len(self._blob):
            raise InvalidBlob(self._field, "has trailing bytes")


def _entry_aad(dek_id: bytes, kek_id: str, kek_version: int) -> bytes:
    return b"vaultd/dek/v1\0" + dek_id + kek_id.encode("ascii") + b"\0" + _U32.pack(kek_version)


def new_dek() -> bytes:
    return AESGCM.generate_key(bit_length=256)


def wrap_dek(dek: bytes, dek_id: bytes, keks: Sequence[Kek]) -> EncryptedKeys:
    """Wrap one DEK under every given KEK."""
    entries = []
    for kek in keks:
        nonce = os.urandom(NONCE_BYTES)
        wrapped = AESGCM(kek.key).encrypt(nonce, dek, _entry_aad(dek_id, kek.kek_id, kek.version))
        entries.append(WrappedEntry(kek.kek_id, kek.version, nonce, wrapped))
    return EncryptedKeys(dek_id, tuple(entries))


def unwrap_entry(keys: EncryptedKeys, entry: WrappedEntry, kek: bytes) -> bytes:
    """The DEK from one entry; DecryptionFailed if the entry was altered or moved."""
    try:
        return AESGCM(kek).decrypt(
            entry.nonce, entry.wrapped_dek, _entry_aad(keys.dek_id, entry.kek_id, entry.kek_version)
        )
    except InvalidTag:
        raise DecryptionFailed("encrypted_keys does not authenticate") from None


def seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """`nonce || AES-256-GCM ciphertext || tag`."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def open_sealed(key: bytes, sealed: bytes, aad: bytes) -> bytes:
    if len(sealed) < NONCE_BYTES + TAG_BYTES:
        raise DecryptionFailed("ciphertext is truncated")
    try:
        return AESGCM(key).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], aad)
    except InvalidTag:
        raise DecryptionFailed("ciphertext or associated data does not authenticate") from None
