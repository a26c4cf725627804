"""The local-encryption blob: what Encrypt returns and what clients write (docs/FORMAT.md).

    IV (12) || GCM tag (16) || uLEB128(len(encrypted_keys)) || encrypted_keys || ciphertext

AES-256-GCM under the data key, with the caller's associated data (if any) as the GCM AAD. It is
the layout the WorkOS SDKs use, so blobs move between them and vaultd's clients.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from vaultd.core.envelope import MAX_ENCRYPTED_KEYS_BYTES, NONCE_BYTES, TAG_BYTES
from vaultd.core.errors import DecryptionFailed, InvalidBlob

# The longest LEB128 a valid length needs: ceil(bit_length(MAX) / 7) bytes.
MAX_LENGTH_PREFIX_BYTES = -(-MAX_ENCRYPTED_KEYS_BYTES.bit_length() // 7)


def encode_uleb128(n: int) -> bytes:
    if n < 0:
        raise ValueError("uLEB128 encodes non-negative integers only")
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def decode_uleb128(data: bytes, at: int, field: str = "ciphertext") -> tuple[int, int]:
    """(value, offset after it). Refuses unterminated, overlong and out-of-range encodings."""
    value = shift = 0
    for i in range(MAX_LENGTH_PREFIX_BYTES):
        if at + i >= len(data):
            raise InvalidBlob(field, "is truncated inside the encrypted_keys length")
        byte = data[at + i]
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            if byte == 0 and i > 0:
                raise InvalidBlob(field, "has an overlong encrypted_keys length encoding")
            return value, at + i + 1
    raise InvalidBlob(field, "has an encrypted_keys length that is too long or unterminated")


@dataclass(frozen=True, slots=True)
class LocalBlob:
    iv: bytes
    tag: bytes
    encrypted_keys: bytes
    ciphertext: bytes

    def to_bytes(self) -> bytes:
        return b"".join(
            (
                self.iv,
                self.tag,
                encode_uleb128(len(self.encrypted_keys)),
                self.encrypted_keys,
                self.ciphertext,
            )
        )

    @classmethod
    def parse(cls, blob: bytes, field: str = "ciphertext") -> LocalBlob:
        header = NONCE_BYTES + TAG_BYTES
        if len(blob) < header:
            raise InvalidBlob(field, "is truncated before the end of the IV and tag")
        length, at = decode_uleb128(blob, header, field)
        if not 1 <= length <= MAX_ENCRYPTED_KEYS_BYTES:
            raise InvalidBlob(
                field, f"declares {length} bytes of encrypted_keys; 1..{MAX_ENCRYPTED_KEYS_BYTES}"
            )
        if at + length > len(blob):
            raise InvalidBlob(field, "is truncated inside encrypted_keys")
        return cls(
            blob[:NONCE_BYTES],
            blob[NONCE_BYTES:header],
            blob[at : at + length],
            blob[at + length :],
        )


class LocalSealer:
    """Seals blobs under one data key: the cipher and the encrypted_keys part (with its length
    prefix) are made once, so a client reusing a data key pays for the AES-GCM and little else.
    """

    __slots__ = ("_aead", "_keys_part")

    def __init__(self, data_key: bytes, encrypted_keys: bytes) -> None:
        self._aead = AESGCM(data_key)
        self._keys_part = encode_uleb128(len(encrypted_keys)) + encrypted_keys

    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        iv = os.urandom(NONCE_BYTES)
        sealed = memoryview(self._aead.encrypt(iv, plaintext, aad or None))
        # AESGCM returns ciphertext || tag; the blob puts the tag first. Views, not copies.
        return b"".join((iv, sealed[-TAG_BYTES:], self._keys_part, sealed[:-TAG_BYTES]))


def seal_local(data_key: bytes, encrypted_keys: bytes, plaintext: bytes, aad: bytes) -> bytes:
    return LocalSealer(data_key, encrypted_keys).seal(plaintext, aad)


def open_local(data_key: bytes, blob: LocalBlob, aad: bytes) -> bytes:
    try:
        return AESGCM(data_key).decrypt(blob.iv, blob.ciphertext + blob.tag, aad or None)
    except InvalidTag:
        raise DecryptionFailed("ciphertext or associated data does not authenticate") from None
