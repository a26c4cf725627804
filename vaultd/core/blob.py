"""The local-encryption blob: what Encrypt returns and what clients write (docs/FORMAT.md).

Two variants, told apart by the byte after the tag (docs/FORMAT.md section 4):

    WorkOS layout:  IV (12) || tag (16) || uLEB128(len(ek)) || ek || ciphertext
    committing:     IV (12) || tag (16) || 0x00 || 0x43 || uLEB128(len(ek)) || ek
                    || commitment (32) || ciphertext

The WorkOS layout is AES-256-GCM under the data key, the layout the WorkOS SDKs read and write,
so blobs move between them and vaultd's clients. GCM is not key-committing: an attacker who
knows two data keys can make one blob that opens, to different plaintexts, under both. The
committing variant seals with a key derived from the data key and carries a commitment to the
data key (both HMAC-SHA256 of it, under distinct labels); a reader checks the commitment before
it opens anything, so a blob opens under one data key only. A valid WorkOS-layout blob never
has 0x00 there (its length is at least 1 and written in its shortest form), and a WorkOS reader
refuses the committing variant as a zero length: neither can be read as the other.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from vaultd.core.envelope import MAX_ENCRYPTED_KEYS_BYTES, NONCE_BYTES, TAG_BYTES
from vaultd.core.errors import DecryptionFailed, InvalidBlob

# The longest LEB128 a valid length needs: ceil(bit_length(MAX) / 7) bytes.
MAX_LENGTH_PREFIX_BYTES = -(-MAX_ENCRYPTED_KEYS_BYTES.bit_length() // 7)

COMMITTING_MARKER = b"\x00C"
"""After IV and tag: a zero byte (no valid WorkOS-layout length), then 0x43 ("C", committing
scheme 1). Not 0x01: a WorkOS-layout blob with a zero length is followed by encrypted_keys,
whose first byte is 0x01 or 0x02, and the vectors keep refusing that one at the length."""
COMMITMENT_BYTES = 32
_ENCRYPTION_LABEL = b"vaultd/local-blob/v1/encryption-key"
_COMMITMENT_LABEL = b"vaultd/local-blob/v1/key-commitment"


def blob_key(data_key: bytes) -> bytes:
    """The AES-256-GCM key of a committing blob: HMAC-SHA256(data key, its label)."""
    return hmac.new(data_key, _ENCRYPTION_LABEL, hashlib.sha256).digest()


def key_commitment(data_key: bytes) -> bytes:
    """The commitment a committing blob carries: HMAC-SHA256(data key, its label). Two data
    keys with one commitment would be a SHA-256 collision."""
    return hmac.new(data_key, _COMMITMENT_LABEL, hashlib.sha256).digest()


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
    commitment: bytes | None = None
    """The committing variant's commitment; None for the WorkOS layout."""

    @property
    def committing(self) -> bool:
        return self.commitment is not None

    def to_bytes(self) -> bytes:
        return b"".join(
            (
                self.iv,
                self.tag,
                COMMITTING_MARKER if self.committing else b"",
                encode_uleb128(len(self.encrypted_keys)),
                self.encrypted_keys,
                self.commitment or b"",
                self.ciphertext,
            )
        )

    @classmethod
    def parse(cls, blob: bytes, field: str = "ciphertext") -> LocalBlob:
        header = NONCE_BYTES + TAG_BYTES
        if len(blob) < header:
            raise InvalidBlob(field, "is truncated before the end of the IV and tag")
        committing = blob[header : header + 1] == b"\x00"
        at = header
        if committing:
            if blob[header : header + 2] != COMMITTING_MARKER:
                raise InvalidBlob(field, "has an unknown variant or is truncated after the tag")
            at = header + len(COMMITTING_MARKER)
        length, at = decode_uleb128(blob, at, field)
        if not 1 <= length <= MAX_ENCRYPTED_KEYS_BYTES:
            raise InvalidBlob(
                field, f"declares {length} bytes of encrypted_keys; 1..{MAX_ENCRYPTED_KEYS_BYTES}"
            )
        if at + length > len(blob):
            raise InvalidBlob(field, "is truncated inside encrypted_keys")
        keys_end = at + length
        if not committing:
            return cls(
                blob[:NONCE_BYTES], blob[NONCE_BYTES:header], blob[at:keys_end], blob[keys_end:]
            )
        if keys_end + COMMITMENT_BYTES > len(blob):
            raise InvalidBlob(field, "is truncated inside the key commitment")
        return cls(
            blob[:NONCE_BYTES],
            blob[NONCE_BYTES:header],
            blob[at:keys_end],
            blob[keys_end + COMMITMENT_BYTES :],
            blob[keys_end : keys_end + COMMITMENT_BYTES],
        )


class LocalSealer:
    """Seals blobs under one data key: the cipher and the encrypted_keys part (with its length
    prefix, and the commitment) are made once, so a client reusing a data key pays for the
    AES-GCM and little else. Committing blobs unless `committing` is False (the WorkOS layout).
    """

    __slots__ = ("_aead", "_keys_part")

    def __init__(self, data_key: bytes, encrypted_keys: bytes, committing: bool = True) -> None:
        keys_part = encode_uleb128(len(encrypted_keys)) + encrypted_keys
        if committing:
            self._aead = AESGCM(blob_key(data_key))
            self._keys_part = COMMITTING_MARKER + keys_part + key_commitment(data_key)
        else:
            self._aead = AESGCM(data_key)
            self._keys_part = keys_part

    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        iv = os.urandom(NONCE_BYTES)
        sealed = memoryview(self._aead.encrypt(iv, plaintext, aad or None))
        # AESGCM returns ciphertext || tag; the blob puts the tag first. Views, not copies.
        return b"".join((iv, sealed[-TAG_BYTES:], self._keys_part, sealed[:-TAG_BYTES]))


def seal_local(
    data_key: bytes, encrypted_keys: bytes, plaintext: bytes, aad: bytes, committing: bool = True
) -> bytes:
    return LocalSealer(data_key, encrypted_keys, committing).seal(plaintext, aad)


def open_local(
    data_key: bytes, blob: LocalBlob, aad: bytes, require_commitment: bool = False
) -> bytes:
    """The plaintext; DecryptionFailed unless it authenticates (and, for a committing blob,
    unless the blob commits to this very data key, checked first)."""
    if blob.commitment is None:
        if require_commitment:
            raise DecryptionFailed("the blob is not key-committing, and commitment is required")
        key = data_key
    else:
        if not hmac.compare_digest(blob.commitment, key_commitment(data_key)):
            raise DecryptionFailed("the blob does not commit to this data key")
        key = blob_key(data_key)
    try:
        return AESGCM(key).decrypt(blob.iv, blob.ciphertext + blob.tag, aad or None)
    except InvalidTag:
        raise DecryptionFailed("ciphertext or associated data does not authenticate") from None
