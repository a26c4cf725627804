"""How one object version is sealed and opened: a value under a fresh DEK whose id is the
version's ULID, wrapped under the KEKs of the object's context, with associated data naming
everything stored beside it (docs/FORMAT.md section 3). ObjectVault and the rewrap runner share
it."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from ulid import ULID

from vaultd.core.envelope import (
    LEGACY_FORMAT_VERSION,
    EncryptedKeys,
    Kek,
    Purpose,
    new_dek,
    seal,
    wrap_dek,
)
from vaultd.core.errors import DecryptionFailed
from vaultd.core.keyring import Keyring
from vaultd.core.types import Actor
from vaultd.core.validation import KeyContext
from vaultd.storage.records import StoredVersion


def value_aad_v1(environment_id: str, object_id: str, version_id: str) -> bytes:
    """What values were sealed with before their metadata was bound (read only)."""
    return "\0".join(("vaultd/object/v1", environment_id, object_id, version_id)).encode()


def value_aad(
    environment_id: str,
    object_id: str,
    version_id: str,
    name: str,
    context: Mapping[str, str],
) -> bytes:
    """A value's associated data: everything stored beside it that decides what a reader gets
    (environment, object id, version id, name, key context), each length-prefixed, so a store
    that swaps names, relabels a context or moves a version elsewhere yields a value that does
    not open (docs/FORMAT.md section 3.2, docs/SECURITY.md section 2)."""
    items = sorted(context.items())
    parts = [environment_id, object_id, version_id, name]
    parts += [text for item in items for text in item]
    out = bytearray(b"vaultd/object/v2\0")
    out += len(items).to_bytes(4, "big")
    for text in parts:
        raw = text.encode()
        out += len(raw).to_bytes(4, "big") + raw
    return bytes(out)


async def object_dek(
    keyring: Keyring, environment_id: str, keys: EncryptedKeys
) -> tuple[bytes, Purpose]:
    """A stored version's DEK and the purpose its entries carry, which says how its value was
    sealed: OBJECT_VERSION (metadata bound) or, for versions from before, the older label."""
    if keys.format_version == LEGACY_FORMAT_VERSION:
        return await keyring.unwrap_dek(environment_id, keys, Purpose.LEGACY_V1), Purpose.LEGACY_V1
    try:
        return await keyring.unwrap_dek(environment_id, keys, Purpose.OBJECT_VERSION), (
            Purpose.OBJECT_VERSION
        )
    except DecryptionFailed:
        migrated = Purpose.MIGRATED_OBJECT_VERSION
        return await keyring.unwrap_dek(environment_id, keys, migrated), migrated


@dataclass(frozen=True, slots=True)
class NewVersion:
    """What a new version seals: a value, for an object of a context, by an actor, at a time."""

    environment_id: str
    object_id: str
    name: str
    context: KeyContext
    value: bytes
    actor: Actor
    now: datetime


def seal_version(sealed: NewVersion, keks: Sequence[Kek]) -> StoredVersion:
    """The value sealed under a fresh DEK (its id the version's ULID), wrapped under `keks`."""
    ulid = ULID.from_datetime(sealed.now)
    version_id = f"ver_{ulid}"
    dek = new_dek()
    wrapped = wrap_dek(dek, ulid.bytes, keks, Purpose.OBJECT_VERSION)
    aad = value_aad(
        sealed.environment_id, sealed.object_id, version_id, sealed.name, dict(sealed.context)
    )
    ciphertext = seal(dek, sealed.value, aad)
    return StoredVersion(
        version_id=version_id,
        created_at=sealed.now,
        size=len(sealed.value),
        etag=hashlib.sha256(ciphertext).hexdigest()[:32],
        key_ids=wrapped.key_ids,
        encrypted_keys=wrapped.to_bytes(),
        ciphertext=ciphertext,
        updated_by_id=sealed.actor.id,
        updated_by_name=sealed.actor.name,
    )


def version_keys(version: StoredVersion) -> EncryptedKeys:
    """A stored version's encrypted_keys, refused unless its DEK id is the version's own ULID:
    a wrapped DEK copied from another version (or a data key) does not stand in for it."""
    keys = EncryptedKeys.parse(version.encrypted_keys)
    if keys.dek_id != ULID.from_str(version.version_id.removeprefix("ver_")).bytes:
        raise DecryptionFailed("the stored version's key does not belong to it")
    return keys
