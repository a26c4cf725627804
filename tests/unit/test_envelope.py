"""encrypted_keys: round trip, binding of each entry, and every malformed blob refused cleanly."""

from __future__ import annotations

import os

import pytest

from vaultd.core.envelope import (
    MAX_ENCRYPTED_KEYS_BYTES,
    EncryptedKeys,
    Kek,
    Purpose,
    new_dek,
    open_sealed,
    seal,
    unwrap_entry,
    wrap_dek,
)
from vaultd.core.errors import DecryptionFailed, InvalidBlob

KEK_A = Kek("kek_" + "a" * 32, 1, os.urandom(32))
KEK_B = Kek("kek_" + "b" * 32, 3, os.urandom(32))
DK = Purpose.DATA_KEY


@pytest.mark.parametrize(
    ("written", "read"),
    [
        (Purpose.DATA_KEY, Purpose.OBJECT_VERSION),
        (Purpose.OBJECT_VERSION, Purpose.DATA_KEY),
        (Purpose.OBJECT_VERSION, Purpose.LEGACY_V1),
        (Purpose.DATA_KEY, Purpose.LEGACY_V1),
    ],
)
def test_an_entry_unwraps_only_for_the_purpose_it_was_made_for(
    written: Purpose, read: Purpose
) -> None:
    dek = new_dek()
    keys = EncryptedKeys.parse(wrap_dek(dek, os.urandom(16), [KEK_A], written).to_bytes())
    assert keys.format_version == 2
    assert unwrap_entry(keys, keys.entries[0], KEK_A.key, written) == dek
    with pytest.raises(DecryptionFailed):
        unwrap_entry(keys, keys.entries[0], KEK_A.key, read)
    # Relabelled as format 1 (one label for all), it does not authenticate either.
    legacy = EncryptedKeys(keys.dek_id, keys.entries, 1)
    with pytest.raises(DecryptionFailed):
        unwrap_entry(legacy, legacy.entries[0], KEK_A.key, written)


def test_format_1_entries_unwrap_for_every_purpose() -> None:
    dek = new_dek()
    keys = EncryptedKeys.parse(wrap_dek(dek, os.urandom(16), [KEK_A], Purpose.LEGACY_V1).to_bytes())
    assert keys.format_version == 1
    for purpose in Purpose:
        assert unwrap_entry(keys, keys.entries[0], KEK_A.key, purpose) == dek


def test_round_trip_with_any_entry() -> None:
    dek, dek_id = new_dek(), os.urandom(16)
    blob = wrap_dek(dek, dek_id, [KEK_A, KEK_B], DK).to_bytes()
    parsed = EncryptedKeys.parse(blob)
    assert parsed.dek_id == dek_id and len(parsed.entries) == 2
    assert unwrap_entry(parsed, parsed.entries[0], KEK_A.key, DK) == dek
    assert unwrap_entry(parsed, parsed.entries[1], KEK_B.key, DK) == dek
    assert dek not in blob


def test_entry_is_bound_to_dek_id_kek_id_and_version() -> None:
    dek = new_dek()
    keys = wrap_dek(dek, os.urandom(16), [KEK_A], DK)
    entry = keys.entries[0]
    other_dek_id = EncryptedKeys(os.urandom(16), keys.entries)
    with pytest.raises(DecryptionFailed):
        unwrap_entry(other_dek_id, entry, KEK_A.key, DK)
    renamed = type(entry)(KEK_B.kek_id, entry.kek_version, entry.nonce, entry.wrapped_dek)
    with pytest.raises(DecryptionFailed):
        unwrap_entry(keys, renamed, KEK_A.key, DK)
    bumped = type(entry)(entry.kek_id, 2, entry.nonce, entry.wrapped_dek)
    with pytest.raises(DecryptionFailed):
        unwrap_entry(keys, bumped, KEK_A.key, DK)
    with pytest.raises(DecryptionFailed):
        unwrap_entry(keys, entry, KEK_B.key, DK)


def test_every_truncation_and_extension_is_invalid_blob() -> None:
    blob = wrap_dek(new_dek(), os.urandom(16), [KEK_A, KEK_B], DK).to_bytes()
    for cut in range(len(blob)):
        with pytest.raises(InvalidBlob):
            EncryptedKeys.parse(blob[:cut])
    with pytest.raises(InvalidBlob, match="trailing"):
        EncryptedKeys.parse(blob + b"\0")
    with pytest.raises(InvalidBlob, match="longer"):
        EncryptedKeys.parse(bytes(MAX_ENCRYPTED_KEYS_BYTES + 1))


@pytest.mark.parametrize(
    ("offset", "value", "message"),
    [
        (0, 3, "format version"),
        (0, 0, "format version"),
        (17, 0, "entries"),
        (17, 11, "entries"),
        (18, 0, "KEK id length"),
    ],
)
def test_header_fields_are_range_checked(offset: int, value: int, message: str) -> None:
    blob = bytearray(wrap_dek(new_dek(), os.urandom(16), [KEK_A], DK).to_bytes())
    blob[offset] = value
    with pytest.raises(InvalidBlob, match=message):
        EncryptedKeys.parse(bytes(blob))


def test_sealed_data_needs_the_same_associated_data() -> None:
    key = new_dek()
    sealed = seal(key, b"secret", b"aad-1")
    assert open_sealed(key, sealed, b"aad-1") == b"secret"
    with pytest.raises(DecryptionFailed):
        open_sealed(key, sealed, b"aad-2")
    for i in range(len(sealed)):
        flipped = bytearray(sealed)
        flipped[i] ^= 1
        with pytest.raises(DecryptionFailed):
            open_sealed(key, bytes(flipped), b"aad-1")
