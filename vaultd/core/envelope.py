"""Envelope encryption: DEKs wrapped by KEKs into an `encrypted_keys` blob, data sealed by DEKs.

`encrypted_keys`, format versions 1 and 2 (docs/FORMAT.md is the byte-level specification):

    offset  size  field
    0       1     format version, 0x02 (0x01: written before domain separation, still read)
    1       16    DEK id (the 16 bytes of a ULID)
    17      1     entry count N, 1..10
    then N entries, each:
            1     KEK id length L, 1..64
            L     KEK id, ASCII
            4     KEK version, uint32 big-endian, >= 1
            12    nonce
            48    AES-256-GCM(KEK, nonce, DEK) with its 16-byte tag appended

Each entry's associated data is `label || \\0 || DEK id || KEK id || \\0 || KEK version`, so
an entry cannot be moved to another DEK id, another KEK or another KEK version. A KEK id is a
digest of (environment, context item), so the entry is bound to its context item too. Any one
entry recovers the DEK.

The label says what the DEK is for (Purpose): a data key handed to a caller, or the key of one
object version. Version 2 blobs carry no purpose byte; the reader supplies the purpose it expects,
so an object version's wrapped DEK does not authenticate as a data key and a data key does not
authenticate as an object's key. Version 1 blobs used one label for both; they are still read
(Purpose.LEGACY_V1) and the rewrap job moves stored object versions to version 2.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from vaultd.core.errors import DecryptionFailed, InvalidBlob

FORMAT_VERSION = 2
LEGACY_FORMAT_VERSION = 1
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


class Purpose(Enum):
    """What a DEK is for: each purpose has its own entry label (docs/FORMAT.md section 3.2)."""

    DATA_KEY = b"vaultd/data-key/v2"
    """CreateDataKey / RekeyDataKey / Encrypt: a key the caller (or Encrypt) holds."""
    OBJECT_VERSION = b"vaultd/object-dek/v2"
    """The DEK of one object version; never leaves vaultd. Its value's associated data binds
    the object's name and key context too (objects.py, docs/FORMAT.md section 3.2)."""
    MIGRATED_OBJECT_VERSION = b"vaultd/object-dek/v2-migrated"
    """The DEK of an object version written before domain separation and moved to format 2 by
    a rewrap job: its value was sealed with the older associated data (ids only), which the
    label tells the reader to use, since the data is never re-encrypted."""
    LEGACY_V1 = b"vaultd/dek/v1"
    """Format version 1, written by vaultd before domain separation for both purposes; read
    only (and written only by the test vectors that show it)."""

    @property
    def label(self) -> bytes:
        return bytes(self.value)

    @property
    def format_version(self) -> int:
        return LEGACY_FORMAT_VERSION if self is Purpose.LEGACY_V1 else FORMAT_VERSION


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
    format_version: int = FORMAT_VERSION

    @property
    def key_ids(self) -> tuple[str, ...]:
        """The KEK version of each entry, named as in key_ids."""
        return tuple(key_id(e.kek_id, e.kek_version) for e in self.entries)

    def to_bytes(self) -> bytes:
        out = bytearray((self.format_version,))
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
        format_version = reader.byte()
        if format_version not in (LEGACY_FORMAT_VERSION, FORMAT_VERSION):
            raise InvalidBlob(field, "has an unknown format version (expected 1 or 2)")
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
        return cls(dek_id, tuple(entries), format_version)


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


def _entry_aad(label: bytes, dek_id: bytes, kek_id: str, kek_version: int) -> bytes:
    return label + b"\0" + dek_id + kek_id.encode("ascii") + b"\0" + _U32.pack(kek_version)


def _label(keys: EncryptedKeys, purpose: Purpose) -> bytes:
    """The entry label a reader expecting `purpose` checks: version 1 has one label for all."""
    if keys.format_version == LEGACY_FORMAT_VERSION:
        return Purpose.LEGACY_V1.label
    if purpose is Purpose.LEGACY_V1:
        raise DecryptionFailed("encrypted_keys is not of the expected kind")
    return purpose.label


def new_dek() -> bytes:
    return AESGCM.generate_key(bit_length=256)


def wrap_dek(dek: bytes, dek_id: bytes, keks: Sequence[Kek], purpose: Purpose) -> EncryptedKeys:
    """Wrap one DEK under every given KEK, labelled with what it is for."""
    entries = []
    for kek in keks:
        nonce = os.urandom(NONCE_BYTES)
        aad = _entry_aad(purpose.label, dek_id, kek.kek_id, kek.version)
        wrapped = AESGCM(kek.key).encrypt(nonce, dek, aad)
        entries.append(WrappedEntry(kek.kek_id, kek.version, nonce, wrapped))
    return EncryptedKeys(dek_id, tuple(entries), purpose.format_version)


def unwrap_entry(
    keys: EncryptedKeys, entry: WrappedEntry, kek: bytes, purpose: Purpose = Purpose.LEGACY_V1
) -> bytes:
    """The DEK from one entry; DecryptionFailed if the entry was altered or moved, or was made
    for another purpose than `purpose` (which only version 2 blobs can tell)."""
    aad = _entry_aad(_label(keys, purpose), keys.dek_id, entry.kek_id, entry.kek_version)
    try:
        return AESGCM(kek).decrypt(entry.nonce, entry.wrapped_dek, aad)
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
