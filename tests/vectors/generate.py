"""Test vectors for docs/FORMAT.md, made by vaultd's own code.

    .venv/bin/python tests/vectors/generate.py           # rewrite tests/vectors/*.json
    .venv/bin/python tests/vectors/generate.py --check   # exit 1 unless the files are what it makes

The blobs come from `vaultd.core.envelope.wrap_dek` and `vaultd.core.blob.seal_local` themselves,
so the vectors show what vaultd really writes rather than what a second implementation thinks it
writes. Every input is fixed: KEKs derive from their KEK id and version, data keys, DEK ids,
nonces and IVs from the vector's name (the two modules' `os.urandom` is swapped for a
deterministic stand-in while a vector is made). Generating twice therefore gives identical files,
and `--check` compares the committed files with a fresh run byte for byte.

Negative vectors are positive ones with one thing broken. Each names the step of the reading
procedure in docs/FORMAT.md ("Test vectors") that must refuse it: `blob`, `encrypted_keys`,
`entry` or `data`. tests/vectors/test_vectors.py proves every claim against vaultd.core.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from vaultd.core import blob as blob_module
from vaultd.core import envelope
from vaultd.core.blob import (
    COMMITTING_MARKER,
    LocalBlob,
    blob_key,
    encode_uleb128,
    key_commitment,
    seal_local,
)
from vaultd.core.envelope import EncryptedKeys, Kek, Purpose, WrappedEntry, key_id, wrap_dek
from vaultd.core.keyring import kek_id_for

HERE = Path(__file__).resolve().parent
ENVIRONMENT_ID = "env_test_vectors"
ERROR_CODE = "INVALID_ARGUMENT"
ERROR_REASON = "DECRYPTION_FAILED"
STAGES = ("blob", "encrypted_keys", "entry", "data")
ONE_MIB = 1024 * 1024
# 2025-01-01T00:00:00Z in milliseconds: DEK ids are ULIDs, whose first 6 bytes are a timestamp.
_DEK_ID_EPOCH_MS = 1_735_689_600_000
_HEADER = envelope.NONCE_BYTES + envelope.TAG_BYTES

Vector = dict[str, Any]


def derive(label: str, size: int) -> bytes:
    """`size` fixed pseudo-random bytes named by `label` (SHA-256 in counter mode)."""
    out = b""
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"vaultd test vectors\0{label}\0{counter}".encode()).digest()
        counter += 1
    return out[:size]


class _FixedRandom:
    """Stands in for the `os` module of envelope and blob, whose only use of it is urandom."""

    def __init__(self, seed: str) -> None:
        self._seed = seed
        self._calls = 0

    def urandom(self, size: int) -> bytes:
        self._calls += 1
        return derive(f"{self._seed}/random/{self._calls}", size)


@contextmanager
def _fixed_randomness(seed: str) -> Iterator[None]:
    fixed = _FixedRandom(seed)
    with mock.patch.object(envelope, "os", fixed), mock.patch.object(blob_module, "os", fixed):
        yield


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def plaintext_of(vector: Vector) -> bytes:
    """A positive vector's plaintext: base64, or {"repeat_hex", "length"} for the large ones."""
    spec = vector["plaintext"]
    if isinstance(spec, str):
        return unb64(spec)
    pattern = bytes.fromhex(spec["repeat_hex"])
    length: int = spec["length"]
    return (pattern * (length // len(pattern) + 1))[:length]


def kek_key(kek_id: str, version: int) -> bytes:
    """One KEK per (id, version), the same in every vector, as one item has one KEK in vaultd."""
    return derive(f"kek/{kek_id}/v{version}", 32)


# --- two keys, one ciphertext ----------------------------------------------------------------

# One AES-GCM ciphertext that authenticates under two keys: why the WorkOS blob layout is not
# key-committing, and what the committing variant (docs/FORMAT.md section 4.4) stops.
#
# GCM's tag is E_K(J0) xor GHASH_H(A, C), with H = E_K(0). For a one-block ciphertext X and no
# associated data, GHASH is X·H² xor L·H (L the lengths block), linear in X. Equating the tags
# under keys K1 and K2 and solving for X in GF(2^128) gives a ciphertext and tag that open under
# both keys, to two different plaintexts (the "invisible salamanders" construction of Dodis et
# al., Len et al.). Test-only code: it forges nothing without both keys.

_R = 0xE1 << 120


def _mul(x: int, y: int) -> int:
    """Multiplication in GCM's GF(2^128), bit-reflected as NIST SP 800-38D defines it."""
    z, v = 0, y
    for i in range(127, -1, -1):
        if (x >> i) & 1:
            z ^= v
        v = (v >> 1) ^ _R if v & 1 else v >> 1
    return z


def _inverse(x: int) -> int:
    """x^(2^128 - 2) = x^-1."""
    result, power, exponent = 1 << 127, x, (1 << 128) - 2  # 1 << 127 is the field's one
    while exponent:
        if exponent & 1:
            result = _mul(result, power)
        power = _mul(power, power)
        exponent >>= 1
    return result


def _aes(key: bytes, block: bytes) -> int:
    encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return int.from_bytes(encryptor.update(block) + encryptor.finalize(), "big")


def two_key_ciphertext(key1: bytes, key2: bytes, iv: bytes) -> tuple[bytes, bytes]:
    """(16-byte ciphertext, tag) that AES-256-GCM opens, with no associated data, under both
    `key1` and `key2` with nonce `iv` (12 bytes)."""
    j0 = iv + b"\x00\x00\x00\x01"
    h1, h2 = _aes(key1, bytes(16)), _aes(key2, bytes(16))
    e1, e2 = _aes(key1, j0), _aes(key2, j0)
    lengths = (0 << 64) | 128  # no associated data, 128 bits of ciphertext
    rhs = e1 ^ e2 ^ _mul(lengths, h1) ^ _mul(lengths, h2)
    x = _mul(rhs, _inverse(_mul(h1, h1) ^ _mul(h2, h2)))
    tag = e1 ^ _mul(x, _mul(h1, h1)) ^ _mul(lengths, h1)
    return x.to_bytes(16, "big"), tag.to_bytes(16, "big")


# --- positive vectors -------------------------------------------------------------------------


@dataclass(frozen=True)
class Positive:
    name: str
    description: str
    key_context: dict[str, str]
    plaintext: bytes = b""
    associated_data: bytes | None = None
    # KEK version per context item, in item order (sorted by key); 1 where not given.
    versions: tuple[int, ...] = ()
    # Synthetic KEK ids, to reach the id-length limits; derived from the context when empty.
    kek_ids: tuple[str, ...] = ()
    # Record the plaintext as this repeated hex pattern instead of base64, to keep files small.
    repeat_hex: str | None = None
    # What the entries are labelled (3.2) and which blob variant holds them (4): format 1 and
    # the WorkOS layout are what vaultd wrote before domain separation and key commitment.
    purpose: Purpose = Purpose.LEGACY_V1
    committing: bool = False


@dataclass
class Made:
    """A positive vector with its raw material, so negative vectors can break it."""

    case: Positive
    keks: list[Kek]
    data_key: bytes
    dek_id: bytes
    encrypted_keys: bytes
    blob: bytes
    record: Vector = field(default_factory=dict)

    @property
    def parts(self) -> LocalBlob:
        return LocalBlob.parse(self.blob)


def _keks_for(case: Positive) -> list[Kek]:
    items = sorted(case.key_context.items())
    ids = case.kek_ids or tuple(kek_id_for(ENVIRONMENT_ID, k, v) for k, v in items)
    assert len(ids) == len(items), case.name
    versions = case.versions or (1,) * len(ids)
    return [Kek(kek_id, v, kek_key(kek_id, v)) for kek_id, v in zip(ids, versions, strict=True)]


def _keks_record(keks: list[Kek]) -> list[Vector]:
    return [{"kek_id": k.kek_id, "version": k.version, "key": _b64(k.key)} for k in keks]


def make_positive(case: Positive, index: int) -> Made:
    keks = _keks_for(case)
    data_key = derive(f"{case.name}/data_key", 32)
    dek_id = (_DEK_ID_EPOCH_MS + index).to_bytes(6, "big") + derive(f"{case.name}/dek_id", 10)
    with _fixed_randomness(case.name):
        encrypted_keys = wrap_dek(data_key, dek_id, keks, case.purpose).to_bytes()
        sealed = seal_local(
            data_key, encrypted_keys, case.plaintext, case.associated_data or b"", case.committing
        )
    plaintext: Any = _b64(case.plaintext)
    if case.repeat_hex is not None:
        plaintext = {"repeat_hex": case.repeat_hex, "length": len(case.plaintext)}
    made = Made(case, keks, data_key, dek_id, encrypted_keys, sealed)
    made.record = {
        "name": case.name,
        "valid": True,
        "description": case.description,
        "environment_id": ENVIRONMENT_ID,
        "key_context": case.key_context,
        "kek_ids_derived": not case.kek_ids,
        "keks": _keks_record(keks),
        "key_ids": [key_id(k.kek_id, k.version) for k in keks],
        "dek_id": _b64(dek_id),
        "data_key": _b64(data_key),
        "encrypted_keys": _b64(encrypted_keys),
        "encrypted_keys_format": case.purpose.format_version,
        "entry_label": case.purpose.label.decode("ascii"),
        "blob_variant": "committing" if case.committing else "workos",
        "associated_data": None if case.associated_data is None else _b64(case.associated_data),
        "plaintext": plaintext,
        "blob": _b64(sealed),
    }
    return made


def _repeat(pattern_hex: str, length: int) -> bytes:
    pattern = bytes.fromhex(pattern_hex)
    return (pattern * (length // len(pattern) + 1))[:length]


ORG = {"organization_id": "org_123"}
TEN_ITEMS = {f"item_{i:02d}": f"value_{i:02d}" for i in range(10)}
_BYTES_00_FF = bytes(range(256)).hex()


def _synthetic_ids(prefix: str, count: int, length: int) -> tuple[str, ...]:
    return tuple((f"{prefix}{i}_" + "x" * length)[:length] for i in range(count))


POSITIVE = [
    Positive(
        "one-item-no-aad",
        "One context item, so one entry and a 119-byte encrypted_keys (1-byte LEB128); no "
        "associated data.",
        ORG,
        b"hello, vault",
    ),
    Positive(
        "one-item-aad",
        "One context item with associated data.",
        ORG,
        b"card 4242 4242 4242 4242",
        b"row 42 of table payments",
    ),
    Positive(
        "empty-plaintext-no-aad",
        "An empty plaintext: the blob ends right after encrypted_keys.",
        ORG,
        b"",
    ),
    Positive(
        "empty-plaintext-aad",
        "An empty plaintext with associated data: the tag authenticates the associated data only.",
        ORG,
        b"",
        b"header only",
    ),
    Positive(
        "empty-aad-equals-none",
        "Associated data given as zero bytes: identical to no associated data in AES-GCM, so this "
        "blob also opens with associated_data null.",
        ORG,
        b"no aad at all",
        b"",
    ),
    Positive(
        "one-byte-plaintext",
        "A one-byte plaintext gives a one-byte ciphertext: GCM adds no padding.",
        ORG,
        b"x",
        b"a",
    ),
    Positive(
        "binary-aad-and-plaintext",
        "Associated data and plaintext holding every byte value 0x00..0xff.",
        ORG,
        bytes(range(256)),
        bytes(range(255, -1, -1)),
    ),
    Positive(
        "two-items-aad",
        "Two context items, so two entries (in item-key order) and a 220-byte encrypted_keys "
        "(2-byte LEB128).",
        {"organization_id": "org_123", "user_id": "user_9"},
        b"two entries, either one recovers the data key",
        b"row 42",
    ),
    Positive(
        "ten-items-no-aad",
        "Ten context items, the most a context may have: ten entries, 1028 bytes of "
        "encrypted_keys.",
        TEN_ITEMS,
        b"ten entries",
    ),
    Positive(
        "ten-items-aad",
        "Ten context items with associated data.",
        TEN_ITEMS,
        b"ten entries and associated data",
        b"ten/aad",
    ),
    Positive(
        "unicode-context",
        "Context values outside ASCII: KEK ids are digests, so encrypted_keys stays ASCII.",
        {"organization_id": "org_\u00fc", "region": "\u6771\u4eac"},
        "gr\u00fc\u00dfe".encode(),
        None,
    ),
    Positive(
        "kek-versions",
        "KEK versions 1, 2 and 4294967295 (the largest uint32): the version is part of each "
        "entry's associated data.",
        {"a": "1", "b": "2", "c": "3"},
        b"rotated keys",
        b"versions",
        versions=(1, 2, 0xFFFF_FFFF),
    ),
    Positive(
        "kek-id-length-1",
        "A one-character KEK id, the shortest allowed (synthetic id; vaultd writes 36-character "
        "ids).",
        ORG,
        b"short id",
        kek_ids=("k",),
    ),
    Positive(
        "leb128-length-127",
        "encrypted_keys of 127 bytes, the longest a 1-byte LEB128 holds (synthetic 44-character "
        "KEK id).",
        ORG,
        b"127",
        kek_ids=_synthetic_ids("kek_synthetic", 1, 44),
    ),
    Positive(
        "leb128-length-128",
        "encrypted_keys of 128 bytes, the shortest that needs a 2-byte LEB128 (0x80 0x01; "
        "synthetic 45-character KEK id).",
        ORG,
        b"128",
        kek_ids=_synthetic_ids("kek_synthetic", 1, 45),
    ),
    Positive(
        "encrypted-keys-max-length",
        "encrypted_keys of 1308 bytes, the maximum: ten entries with synthetic 64-character KEK "
        "ids (LEB128 0x9c 0x0a).",
        TEN_ITEMS,
        b"largest encrypted_keys",
        b"max",
        kek_ids=_synthetic_ids("kek_max", 10, 64),
    ),
]

LARGE = [
    Positive(
        "one-mib-plaintext-aad",
        "A 1 MiB plaintext (bytes 0x00..0xff repeated; recorded as repeat_hex and length to keep "
        "the file small) with associated data.",
        ORG,
        _repeat(_BYTES_00_FF, ONE_MIB),
        b"large",
        repeat_hex=_BYTES_00_FF,
    ),
]


DK = Purpose.DATA_KEY

# What vaultd writes now: encrypted_keys format 2 with the data-key label, in the key-committing
# blob (and one in the WorkOS layout, as a WorkOS SDK writes it with a data key from vaultd).
POSITIVE_V2 = [
    Positive(
        "v2-committing-one-item-no-aad",
        "The key-committing blob (4.4) with a format-2 encrypted_keys (data-key label), one "
        "context item, no associated data: what Encrypt and the Python client write.",
        ORG,
        b"hello, vault",
        purpose=DK,
        committing=True,
    ),
    Positive(
        "v2-committing-one-item-aad",
        "The key-committing blob with associated data.",
        ORG,
        b"card 4242 4242 4242 4242",
        b"row 42 of table payments",
        purpose=DK,
        committing=True,
    ),
    Positive(
        "v2-committing-empty-plaintext",
        "The key-committing blob of an empty plaintext: it ends right after the commitment.",
        ORG,
        b"",
        purpose=DK,
        committing=True,
    ),
    Positive(
        "v2-committing-two-items-aad",
        "The key-committing blob with two entries (2-byte LEB128 length).",
        {"organization_id": "org_123", "user_id": "user_9"},
        b"two entries, either one recovers the data key",
        b"row 42",
        purpose=DK,
        committing=True,
    ),
    Positive(
        "v2-committing-encrypted-keys-max-length",
        "The key-committing blob with a 1308-byte encrypted_keys (synthetic 64-character KEK ids).",
        TEN_ITEMS,
        b"largest encrypted_keys",
        b"max",
        kek_ids=_synthetic_ids("kek_max", 10, 64),
        purpose=DK,
        committing=True,
    ),
    Positive(
        "v2-workos-layout",
        "The WorkOS layout (4.1) around a format-2 encrypted_keys: what a WorkOS SDK writes "
        "with a data key from this vaultd. Still read.",
        ORG,
        b"written by a WorkOS SDK",
        b"sdk",
        purpose=DK,
    ),
]
# The two halves of the two-key demonstration (make_two_keys); their own data keys and ids.
TWO_KEYS = [
    Positive("v2-workos-two-keys-first", "", ORG, purpose=DK),
    Positive("v2-workos-two-keys-second", "", ORG, purpose=DK),
]


# --- negative vectors -------------------------------------------------------------------------

_SAME = object()


def _negative(
    name: str,
    description: str,
    base: Made,
    blob: bytes,
    fails_at: str,
    *,
    keks: list[Kek] | None = None,
    associated_data: Any = _SAME,
) -> Vector:
    assert fails_at in STAGES, fails_at
    aad = base.record["associated_data"] if associated_data is _SAME else associated_data
    if isinstance(aad, bytes):
        aad = _b64(aad)
    return {
        "name": name,
        "valid": False,
        "description": description,
        "derived_from": base.case.name,
        "keks": _keks_record(keks if keks is not None else base.keks),
        "data_key": _b64(base.data_key),
        "associated_data": aad,
        "blob": _b64(blob),
        "fails_at": fails_at,
        "error_code": ERROR_CODE,
        "error_reason": ERROR_REASON,
    }


def _flip(data: bytes, at: int) -> bytes:
    out = bytearray(data)
    out[at] ^= 0x01
    return bytes(out)


def _reframe(base: Made, encrypted_keys: bytes, ciphertext: bytes | None = None) -> bytes:
    """The base blob with another encrypted_keys and a correct (shortest) LEB128 length."""
    p = base.parts
    rest = p.ciphertext if ciphertext is None else ciphertext
    return p.iv + p.tag + encode_uleb128(len(encrypted_keys)) + encrypted_keys + rest


def _with_length_prefix(base: Made, prefix: bytes) -> bytes:
    """The base blob with its LEB128 length bytes replaced by `prefix`."""
    p = base.parts
    return p.iv + p.tag + prefix + p.encrypted_keys + p.ciphertext


def _boundaries(encrypted_keys: bytes) -> list[tuple[int, str]]:
    """(offset, what ends there) for every field of an encrypted_keys blob."""
    keys = EncryptedKeys.parse(encrypted_keys)
    out = [(1, "the format version"), (17, "the DEK id"), (18, "the entry count")]
    at = 18
    for i, entry in enumerate(keys.entries, 1):
        for size, what in (
            (1, "KEK id length"),
            (len(entry.kek_id), "KEK id"),
            (4, "KEK version"),
            (envelope.NONCE_BYTES, "nonce"),
            (envelope.WRAPPED_DEK_BYTES, "wrapped DEK"),
        ):
            at += size
            out.append((at, f"entry {i}'s {what}"))
    assert at == len(encrypted_keys)
    return out


def _with_entries(base: Made, *entries: WrappedEntry, dek_id: bytes | None = None) -> bytes:
    keys = EncryptedKeys(base.dek_id if dek_id is None else dek_id, entries, 1)
    return keys.to_bytes()


def _entry_field_offset(encrypted_keys: bytes, entry_index: int, field_name: str) -> int:
    keys = EncryptedKeys.parse(encrypted_keys)
    at = 18
    for i, entry in enumerate(keys.entries):
        offsets = {
            "kek_id_length": at,
            "kek_id": at + 1,
            "kek_version": at + 1 + len(entry.kek_id),
            "nonce": at + 5 + len(entry.kek_id),
            "wrapped_dek": at + 17 + len(entry.kek_id),
        }
        if i == entry_index:
            return offsets[field_name]
        at += 65 + len(entry.kek_id)
    raise IndexError(entry_index)


def make_negative(made: dict[str, Made]) -> list[Vector]:
    one = made["one-item-no-aad"]  # 1 entry, 1-byte LEB128, no associated data
    two = made["two-items-aad"]  # 2 entries, 2-byte LEB128, associated data
    other = made["one-item-aad"]  # another data key under the same KEK as `one`
    biggest = made["encrypted-keys-max-length"]
    out: list[Vector] = []
    add = out.append

    # The data: anything the data key's GCM tag covers.
    p = two.parts
    lp = len(encode_uleb128(len(p.encrypted_keys)))
    ct_at = _HEADER + lp + len(p.encrypted_keys)
    for name, at, what in (
        ("iv-first-byte-flipped", 0, "the IV's first byte"),
        ("iv-last-byte-flipped", envelope.NONCE_BYTES - 1, "the IV's last byte"),
        ("tag-first-byte-flipped", envelope.NONCE_BYTES, "the tag's first byte"),
        ("tag-last-byte-flipped", _HEADER - 1, "the tag's last byte"),
        ("ciphertext-first-byte-flipped", ct_at, "the ciphertext's first byte"),
        ("ciphertext-last-byte-flipped", len(two.blob) - 1, "the ciphertext's last byte"),
    ):
        add(_negative(name, f"One bit of {what} flipped.", two, _flip(two.blob, at), "data"))
    add(
        _negative(
            "ciphertext-byte-appended",
            "One byte appended to the ciphertext.",
            two,
            two.blob + b"\x00",
            "data",
        )
    )
    add(
        _negative(
            "aad-wrong",
            "Sealed with associated data 'row 42', opened with 'row 43'.",
            two,
            two.blob,
            "data",
            associated_data=b"row 43",
        )
    )
    add(
        _negative(
            "aad-missing",
            "Sealed with associated data, opened without any.",
            two,
            two.blob,
            "data",
            associated_data=None,
        )
    )
    add(
        _negative(
            "aad-unexpected",
            "Sealed without associated data, opened with some.",
            one,
            one.blob,
            "data",
            associated_data=b"row 42",
        )
    )
    add(
        _negative(
            "encrypted-keys-of-another-data-key",
            "encrypted_keys replaced by another data key's, valid under the same KEK: the entry "
            "unwraps, but to a different data key, so the data's tag fails. This is why "
            "encrypted_keys need not be covered by the data's tag.",
            one,
            _reframe(one, other.encrypted_keys),
            "data",
        )
    )

    # Truncation at every field boundary of the blob and of the encrypted_keys inside it.
    ek = p.encrypted_keys
    cuts = [
        (0, "empty", "blob"),
        (envelope.NONCE_BYTES, "after the IV", "blob"),
        (_HEADER, "after the tag", "blob"),
        (_HEADER + 1, "inside the 2-byte LEB128 length", "blob"),
        (_HEADER + lp, "after the LEB128 length", "blob"),
    ]
    for offset, what in _boundaries(ek)[:-1]:
        cuts.append((_HEADER + lp + offset, f"after {what}", "blob"))
    cuts.append((ct_at, "after encrypted_keys (no ciphertext)", "data"))
    cuts.append((len(two.blob) - 1, "one byte before the end of the ciphertext", "data"))
    for length, what, stage in cuts:
        slug = re.sub(r"[^a-z0-9]+", "-", what.lower().replace("'s", "")).strip("-")
        add(
            _negative(
                f"truncated-{length:03d}-{slug}",
                f"The blob cut to {length} bytes: {what}.",
                two,
                two.blob[:length],
                stage,
            )
        )
    for offset, what in _boundaries(ek)[:-1]:
        slug = re.sub(r"[^a-z0-9]+", "-", what.lower().replace("'s", "")).strip("-")
        add(
            _negative(
                f"encrypted-keys-truncated-{offset:03d}-{slug}",
                f"encrypted_keys cut to {offset} bytes ({what} is its last field), with a LEB128 "
                "length that matches the cut: encrypted_keys itself is short.",
                two,
                _reframe(two, ek[:offset]),
                "encrypted_keys",
            )
        )

    # The LEB128 length.
    for name, base, prefix, description in (
        ("leb128-overlong-119", one, b"\xf7\x00",
         "Length 119 written in two bytes (0xf7 0x00) instead of one: overlong."),
        ("leb128-overlong-zero", one, b"\x80\x00",
         "Length written as 0x80 0x00: overlong (and zero)."),
        ("leb128-three-bytes", two, b"\xdc\x81\x00",
         "Length 220 written in three bytes (0xdc 0x81 0x00): more than 2 bytes."),
        ("leb128-continuation-on-second-byte", two, b"\xdc\x81",
         "The second length byte has its continuation bit set (0xdc 0x81, then encrypted_keys): "
         "a third byte would follow, and 2 is the most allowed."),
        ("leb128-length-zero", two, b"\x00", "Length 0 (0x00): encrypted_keys may not be empty."),
        ("leb128-length-past-end", two, b"\x9c\x0a",
         "Length 1308 (0x9c 0x0a), the maximum, but fewer bytes follow."),
        ("leb128-length-16383", two, b"\xff\x7f",
         "Length 16383 (0xff 0x7f), the largest 2-byte value."),
    ):  # fmt: skip
        add(_negative(name, description, base, _with_length_prefix(base, prefix), "blob"))
    add(
        _negative(
            "leb128-not-terminated",
            "The blob ends right after a length byte whose continuation bit is set (0x80).",
            two,
            two.blob[:_HEADER] + b"\x80",
            "blob",
        )
    )
    add(
        _negative(
            "leb128-length-1309",
            "Length 1309 (0x9d 0x0a), one over the maximum, with that many bytes following: "
            "refused before encrypted_keys is read.",
            biggest,
            _reframe(biggest, biggest.encrypted_keys + b"\x00"),
            "blob",
        )
    )

    # The structure of encrypted_keys (its LEB128 length always matches).
    def set_byte(data: bytes, at: int, value: int) -> bytes:
        return data[:at] + bytes((value,)) + data[at + 1 :]

    id_len_at = _entry_field_offset(ek, 0, "kek_id_length")
    version_at = _entry_field_offset(ek, 0, "kek_version")
    for name, description, broken in (
        ("encrypted-keys-version-0", "Format version 0x00.", set_byte(ek, 0, 0)),
        ("encrypted-keys-version-3", "Format version 0x03: unknown.", set_byte(ek, 0, 3)),
        ("encrypted-keys-count-0", "Entry count 0.", set_byte(ek, 17, 0)),
        ("encrypted-keys-count-11", "Entry count 11, over the maximum of 10.",
         set_byte(ek, 17, 11)),
        ("encrypted-keys-count-3", "Entry count 3 with two entries present.", set_byte(ek, 17, 3)),
        ("encrypted-keys-count-1", "Entry count 1 with two entries present: trailing bytes.",
         set_byte(ek, 17, 1)),
        ("encrypted-keys-trailing-byte", "One byte after the last entry.", ek + b"\x00"),
        ("encrypted-keys-kek-id-length-0", "A KEK id length of 0.", set_byte(ek, id_len_at, 0)),
        ("encrypted-keys-kek-id-length-65", "A KEK id length of 65, over the maximum of 64.",
         set_byte(ek, id_len_at, 65)),
        ("encrypted-keys-kek-id-not-ascii", "A KEK id byte of 0xc3: not ASCII.",
         set_byte(ek, id_len_at + 1, 0xC3)),
        ("encrypted-keys-kek-version-0", "KEK version 0.",
         ek[:version_at] + b"\x00\x00\x00\x00" + ek[version_at + 4 :]),
    ):  # fmt: skip
        add(_negative(name, description, two, _reframe(two, broken), "encrypted_keys"))

    # Entries that parse but do not authenticate (every entry, so none recovers the data key).
    ek1 = one.encrypted_keys
    entry = EncryptedKeys.parse(ek1).entries[0]
    other_kek_id = kek_id_for(ENVIRONMENT_ID, "organization_id", "org_456")
    same_key_elsewhere = [
        *one.keks,
        Kek(other_kek_id, 1, one.keks[0].key),
        Kek(entry.kek_id, 2, one.keks[0].key),
    ]
    wrapped_at = _entry_field_offset(ek1, 0, "wrapped_dek")
    for name, description, broken, keks in (
        ("entry-wrapped-dek-flipped", "One bit of the wrapped DEK flipped.",
         _flip(ek1, wrapped_at), None),
        ("entry-wrapped-dek-tag-flipped", "One bit of the wrapped DEK's tag flipped.",
         _flip(ek1, wrapped_at + envelope.WRAPPED_DEK_BYTES - 1), None),
        ("entry-nonce-flipped", "One bit of the entry's nonce flipped.",
         _flip(ek1, _entry_field_offset(ek1, 0, "nonce")), None),
        ("entry-dek-id-flipped", "One bit of the DEK id flipped: it is in every entry's AAD.",
         _flip(ek1, 1), None),
        ("entry-kek-id-flipped", "One bit of the KEK id flipped: it names no KEK the reader has.",
         _flip(ek1, _entry_field_offset(ek1, 0, "kek_id") + 4), None),
        ("entry-relabelled-to-another-kek",
         "The entry relabelled with another item's KEK id, and that KEK has the very same key "
         "bytes: only the KEK id in the AAD refuses it.",
         _with_entries(one, WrappedEntry(other_kek_id, 1, entry.nonce, entry.wrapped_dek)),
         same_key_elsewhere),
        ("entry-relabelled-to-another-version",
         "The entry relabelled as KEK version 2, whose key bytes are the same as version 1's: "
         "only the version in the AAD refuses it.",
         _with_entries(one, WrappedEntry(entry.kek_id, 2, entry.nonce, entry.wrapped_dek)),
         same_key_elsewhere),
        ("entry-moved-to-another-dek-id",
         "The entry moved under another data key's DEK id: the DEK id in the AAD refuses it.",
         _with_entries(one, entry, dek_id=other.dek_id), None),
    ):  # fmt: skip
        add(_negative(name, description, one, _reframe(one, broken), "entry", keks=keks))
    e1, e2 = EncryptedKeys.parse(ek).entries
    add(
        _negative(
            "entries-swapped-between-items",
            "The two entries' KEK ids (and versions) swapped: each names the other item's KEK.",
            two,
            _reframe(
                two,
                _with_entries(
                    two,
                    WrappedEntry(e2.kek_id, e2.kek_version, e1.nonce, e1.wrapped_dek),
                    WrappedEntry(e1.kek_id, e1.kek_version, e2.nonce, e2.wrapped_dek),
                ),
            ),
            "entry",
        )
    )
    w1 = _entry_field_offset(ek, 0, "wrapped_dek")
    w2 = _entry_field_offset(ek, 1, "wrapped_dek")
    add(
        _negative(
            "every-entry-flipped",
            "One bit of each entry's wrapped DEK flipped, so no entry recovers the data key.",
            two,
            _reframe(two, _flip(_flip(ek, w1), w2)),
            "entry",
        )
    )
    return out


def make_two_keys(first: Made, second: Made) -> tuple[list[Vector], list[Vector]]:
    """The WorkOS layout is not key-committing: one IV, tag and ciphertext that open under two
    data keys, to two plaintexts, depending only on which encrypted_keys sits beside them (two
    positive vectors). The committing variant refuses the same trick (a negative one)."""
    iv = derive("two-keys/iv", envelope.NONCE_BYTES)
    ciphertext, tag = two_key_ciphertext(first.data_key, second.data_key, iv)
    positives = []
    for made, other in ((first, second), (second, first)):
        blob = iv + tag + encode_uleb128(len(made.encrypted_keys)) + made.encrypted_keys
        record = dict(made.record)
        record.update(
            description=(
                "Not key-committing, shown: this blob's IV, tag and ciphertext are byte for byte "
                f"those of {other.case.name}, yet each opens, under its own data key, to a "
                "different plaintext. Only the encrypted_keys beside them differs, and the data's "
                "tag does not cover it (5). The committing variant (4.4) prevents this."
            ),
            associated_data=None,
            plaintext=_b64(AESGCM(made.data_key).decrypt(iv, ciphertext + tag, None)),
            blob=_b64(blob + ciphertext),
        )
        positives.append(record)
    # The committing form: the collision made for the two derived keys, and the first key's
    # commitment beside the second key's encrypted_keys.
    ciphertext, tag = two_key_ciphertext(blob_key(first.data_key), blob_key(second.data_key), iv)
    forged = b"".join(
        (
            iv,
            tag,
            COMMITTING_MARKER,
            encode_uleb128(len(second.encrypted_keys)),
            second.encrypted_keys,
            key_commitment(first.data_key),
            ciphertext,
        )
    )
    negative = _negative(
        "committing-two-keys-one-ciphertext",
        "A ciphertext and tag that authenticate under the blob keys of two data keys, with the "
        "first key's commitment and the second key's encrypted_keys: the commitment does not "
        "match the data key recovered, so the blob is refused before GCM.",
        second,
        forged,
        "data",
        associated_data=None,
    )
    return positives, [negative]


def make_negative_v2(made: dict[str, Made]) -> list[Vector]:
    one = made["v2-committing-one-item-no-aad"]
    other = made["v2-committing-one-item-aad"]
    workos = made["v2-workos-layout"]
    p = one.parts
    assert p.commitment is not None
    keys_part = encode_uleb128(len(p.encrypted_keys)) + p.encrypted_keys
    head = p.iv + p.tag
    commitment_at = len(head) + len(COMMITTING_MARKER) + len(keys_part)
    w = workos.parts
    out: list[Vector] = []
    add = out.append
    for name, description, blob, stage in (
        ("committing-commitment-flipped", "One bit of the key commitment flipped.",
         _flip(one.blob, commitment_at), "data"),
        ("committing-variant-unknown", "A zero byte after the tag, then 0x44: no known variant.",
         head + b"\x00D" + one.blob[len(head) + 2 :], "blob"),
        ("committing-truncated-after-marker", "The blob cut right after 0x00 0x43.",
         head + COMMITTING_MARKER, "blob"),
        ("committing-truncated-after-zero", "The blob cut right after the zero byte.",
         head + b"\x00", "blob"),
        ("committing-truncated-inside-commitment", "The blob cut 31 bytes into the commitment.",
         one.blob[: commitment_at + 31], "blob"),
        ("committing-marker-stripped",
         "The committing blob made a WorkOS-layout one (marker and commitment removed): the data "
         "was sealed under the derived blob key, so the data key does not open it.",
         head + keys_part + p.ciphertext, "data"),
        ("workos-made-committing",
         "A WorkOS-layout blob given the marker and its data key's correct commitment: it was "
         "sealed under the data key itself, so the derived blob key does not open it.",
         w.iv + w.tag + COMMITTING_MARKER + encode_uleb128(len(w.encrypted_keys))
         + w.encrypted_keys + key_commitment(workos.data_key) + w.ciphertext, "data"),
        ("committing-encrypted-keys-of-another-data-key",
         "encrypted_keys replaced by another data key's (valid under the same KEK): the "
         "commitment is not that key's.",
         head + COMMITTING_MARKER + encode_uleb128(len(other.encrypted_keys))
         + other.encrypted_keys + p.commitment + p.ciphertext, "data"),
    ):  # fmt: skip
        add(_negative(name, description, one, blob, stage))

    # Entry labels (3.2): a client holds data keys, so it expects the data-key label.
    ek = one.encrypted_keys
    with _fixed_randomness("object-label"):
        as_object = wrap_dek(one.data_key, one.dek_id, one.keks, Purpose.OBJECT_VERSION)
        as_legacy = wrap_dek(one.data_key, one.dek_id, one.keks, Purpose.LEGACY_V1)
    as_object_bytes = as_object.to_bytes()
    for name, description, broken in (
        ("object-version-dek-as-data-key",
         "encrypted_keys labelled as an object version's key (vaultd/object-dek/v2): never a "
         "data key.", as_object_bytes),
        ("format-2-relabelled-format-1",
         "A format-2 data key's entries with the format byte set to 1: the format-1 label does "
         "not authenticate them.", b"\x01" + ek[1:]),
        ("format-1-relabelled-format-2",
         "A format-1 entry with the format byte set to 2: the data-key label does not "
         "authenticate it.", b"\x02" + as_legacy.to_bytes()[1:]),
    ):  # fmt: skip
        blob = head + COMMITTING_MARKER + encode_uleb128(len(broken)) + broken
        add(_negative(name, description, one, blob + p.commitment + p.ciphertext, "entry"))
    return out


# --- files ------------------------------------------------------------------------------------


def build() -> dict[str, list[Vector]]:
    """Every vector, by the file it belongs in."""
    cases = POSITIVE + LARGE + POSITIVE_V2 + TWO_KEYS
    made = {case.name: make_positive(case, i) for i, case in enumerate(cases)}
    two_keys, two_keys_negative = make_two_keys(*(made[c.name] for c in TWO_KEYS))
    return {
        "positive.json": [made[c.name].record for c in POSITIVE],
        "positive_large.json": [made[c.name].record for c in LARGE],
        "negative.json": make_negative(made),
        "positive_v2.json": [made[c.name].record for c in POSITIVE_V2] + two_keys,
        "negative_v2.json": make_negative_v2(made) + two_keys_negative,
    }


_FILE_NOTE = {
    "positive.json": "Blobs that must open to the plaintext given; every entry must unwrap.",
    "positive_large.json": "Like positive.json, with plaintexts given as repeat_hex and length.",
    "negative.json": "Blobs that must fail with INVALID_ARGUMENT / DECRYPTION_FAILED at fails_at.",
    "positive_v2.json": "Format-2 encrypted_keys and key-committing blobs that must open.",
    "negative_v2.json": "Format-2 and key-committing blobs that must fail at fails_at.",
}


def render(file_name: str, vectors: list[Vector]) -> str:
    document = {
        "spec": "docs/FORMAT.md",
        "generated_by": "tests/vectors/generate.py",
        "note": _FILE_NOTE[file_name],
        "vectors": vectors,
    }
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def write(directory: Path = HERE) -> None:
    for file_name, vectors in build().items():
        (directory / file_name).write_text(render(file_name, vectors), encoding="utf-8")


def load_vectors(directory: Path = HERE) -> list[Vector]:
    """Every vector in every committed file, positive files first."""
    vectors: list[Vector] = []
    for file_name in _FILE_NOTE:
        document = json.loads((directory / file_name).read_text(encoding="utf-8"))
        vectors.extend(document["vectors"])
    return vectors


_POSITIVE_FIELDS = {
    "name", "valid", "description", "environment_id", "key_context", "kek_ids_derived", "keks",
    "key_ids", "dek_id", "data_key", "encrypted_keys", "encrypted_keys_format", "entry_label",
    "blob_variant", "associated_data", "plaintext", "blob",
}  # fmt: skip
_NEGATIVE_FIELDS = {
    "name", "valid", "description", "derived_from", "keks", "data_key", "associated_data", "blob",
    "fails_at", "error_code", "error_reason",
}  # fmt: skip


def _shape_problems(vectors: list[Vector]) -> list[str]:
    problems = []
    names = [v.get("name") for v in vectors]
    if len(set(names)) != len(names):
        problems.append("vector names are not unique")
    for v in vectors:
        expected = _POSITIVE_FIELDS if v.get("valid") else _NEGATIVE_FIELDS
        if set(v) != expected:
            problems.append(f"{v.get('name')}: fields {sorted(set(v) ^ expected)} differ")
            continue
        if not v["valid"] and (v["fails_at"] not in STAGES or v["error_reason"] != ERROR_REASON):
            problems.append(f"{v['name']}: bad fails_at or error_reason")
    return problems


def _coverage_problems(vectors: list[Vector]) -> list[str]:
    """What issue 3 requires the vectors to cover; a shrunken generator fails here."""
    good = [v for v in vectors if v["valid"]]
    bad = [v for v in vectors if not v["valid"]]
    sizes = {len(plaintext_of(v)) for v in good}
    contexts = {len(v["key_context"]) for v in good}
    rules = {
        "at least 12 positive vectors": len(good) >= 12,
        "with associated data": any(v["associated_data"] for v in good),
        "without associated data": any(v["associated_data"] is None for v in good),
        "an empty plaintext": 0 in sizes,
        "a 1 MiB plaintext": ONE_MIB in sizes,
        "contexts of 1 and 10 items": {1, 10} <= contexts,
        "a vector with several entries": any(len(v["keks"]) > 1 for v in good),
        "negative vectors failing at every step": {v["fails_at"] for v in bad} == set(STAGES),
    }
    return [f"missing: {rule}" for rule, ok in rules.items() if not ok]


def check(directory: Path = HERE) -> list[str]:
    """Problems with the committed files; empty when they are exactly what build() makes."""
    problems = []
    expected = build()
    present = {p.name for p in directory.glob("*.json")}
    for extra in sorted(present - set(expected)):
        problems.append(f"{extra}: not made by generate.py")
    for file_name, vectors in expected.items():
        path = directory / file_name
        if not path.exists():
            problems.append(f"{file_name}: missing; run tests/vectors/generate.py")
        elif path.read_text(encoding="utf-8") != render(file_name, vectors):
            problems.append(f"{file_name}: differs from what generate.py makes; regenerate it")
    if problems:
        return problems
    vectors = load_vectors(directory)
    return _shape_problems(vectors) + _coverage_problems(vectors)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="verify, do not write")
    args = parser.parse_args(argv)
    if args.check:
        problems = check()
        for problem in problems:
            print(problem, file=sys.stderr)
        return 1 if problems else 0
    write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
