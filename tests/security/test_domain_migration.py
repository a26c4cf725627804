"""Class 1 migration: object versions written before domain separation (encrypted_keys format 1,
one entry label for objects and data keys alike) stay readable, and a rewrap job moves them to
format 2 with the object label, without touching a byte of their data (docs/SECURITY.md
section 1, docs/FORMAT.md section 3)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import grpc
import pytest
from ulid import ULID

from testkit.crypto import refused
from testkit.lifecycle import item, new_org, wait_job
from testkit.running import Running
from vaultd.core.envelope import EncryptedKeys, Purpose, new_dek, seal, wrap_dek
from vaultd.storage.records import KekStamp, StoredVersion
from vaultd.v1 import admin_service_pb2 as apb
from vaultd.v1 import key_service_pb2 as kpb
from vaultd.v1 import object_service_pb2 as opb

ENV = "default"


async def _stored(lc: Running, object_id: str, version_id: str) -> StoredVersion:
    found = await lc.vaultd.store.get_object_version(ENV, object_id, version_id)
    assert found is not None
    return found.version


async def _as_format_1(lc: Running, object_id: str, context: dict[str, str]) -> StoredVersion:
    """A new current version written as a vaultd before domain separation wrote it: format-1
    encrypted_keys with the one shared label, the value sealed with the ids-only associated
    data."""
    keks = await lc.vaultd.keyring.current_keks(ENV, tuple(sorted(context.items())))
    now = datetime.now(UTC)
    ulid = ULID.from_datetime(now)
    version_id = f"ver_{ulid}"
    dek = new_dek()
    legacy = wrap_dek(dek, ulid.bytes, keks, Purpose.LEGACY_V1)
    aad = "\0".join(("vaultd/object/v1", ENV, object_id, version_id)).encode()
    ciphertext = seal(dek, b"v1", aad)
    version = StoredVersion(
        version_id=version_id,
        created_at=now,
        size=2,
        etag=hashlib.sha256(ciphertext).hexdigest()[:32],
        key_ids=legacy.key_ids,
        encrypted_keys=legacy.to_bytes(),
        ciphertext=ciphertext,
        updated_by_id="key_old",
        updated_by_name="an older vaultd",
    )
    stamps = [KekStamp(k.kek_id, k.version, k.stamp) for k in keks]
    await lc.vaultd.store.update_object(ENV, object_id, version, None, stamps)
    return await _stored(lc, object_id, version_id)


async def test_format_1_objects_read_and_migrate_without_touching_data(
    lifecycle: Running,
) -> None:
    org = new_org()
    made = await lifecycle.objects.CreateObject(
        opb.CreateObjectRequest(
            name=f"legacy-{org['organization_id']}", value=b"v1", key_context=org
        )
    )
    meta = made.metadata
    legacy = await _as_format_1(lifecycle, meta.id, org)
    assert legacy.encrypted_keys[0] == 1
    version_id = legacy.version_id

    # An upgraded vaultd reads what an older one wrote.
    got = await lifecycle.objects.GetObject(opb.GetObjectRequest(id=meta.id))
    assert got.object.value == b"v1"

    job = (
        await lifecycle.admin.StartRewrap(
            apb.StartRewrapRequest(selector=apb.KekSelector(items=[item(org)]))
        )
    ).job
    done = await wait_job(lifecycle.admin, job.id)
    assert done.state == apb.REWRAP_STATE_DONE, done.error
    assert done.versions_rewrapped >= 1

    migrated = await _stored(lifecycle, meta.id, version_id)
    keys = EncryptedKeys.parse(migrated.encrypted_keys)
    assert keys.format_version == 2
    assert keys.dek_id == EncryptedKeys.parse(legacy.encrypted_keys).dek_id
    assert keys.key_ids == EncryptedKeys.parse(legacy.encrypted_keys).key_ids  # same versions
    # The data is not re-encrypted: ciphertext, etag, size and version id are byte-identical.
    assert (migrated.ciphertext, migrated.etag, migrated.size, migrated.version_id) == (
        legacy.ciphertext,
        legacy.etag,
        legacy.size,
        legacy.version_id,
    )
    got = await lifecycle.objects.GetObject(opb.GetObjectRequest(id=meta.id))
    assert got.object.value == b"v1"

    # Once migrated, the object's wrapped DEK is no data key.
    code, reason = await refused(
        lifecycle.keys.DecryptDataKey,
        kpb.DecryptDataKeyRequest(encrypted_keys=migrated.encrypted_keys),
    )
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "DECRYPTION_FAILED")

    # A second run finds nothing left to move.
    again = (
        await lifecycle.admin.StartRewrap(
            apb.StartRewrapRequest(selector=apb.KekSelector(items=[item(org)]))
        )
    ).job
    assert (await wait_job(lifecycle.admin, again.id)).state == apb.REWRAP_STATE_DONE
    assert (await _stored(lifecycle, meta.id, version_id)).encrypted_keys == (
        migrated.encrypted_keys
    )


async def test_legacy_data_keys_can_be_turned_off_so_old_object_keys_stop_opening(
    lifecycle: Running,
) -> None:
    """The residual of class 1: a format-1 object key from an old store dump still opens as a
    data key while `keys.accept_legacy_data_keys` is on (callers hold old data keys). Off, it
    does not: the setting an operator turns off once the rewrap job has run."""
    from vaultd.core.datakeys import DataKeys
    from vaultd.core.errors import DecryptionFailed
    from vaultd.settings import Settings

    org = new_org()
    meta = (
        await lifecycle.objects.CreateObject(
            opb.CreateObjectRequest(
                name=f"dump-{org['organization_id']}", value=b"x", key_context=org
            )
        )
    ).metadata
    legacy = await _as_format_1(lifecycle, meta.id, org)
    keyring = lifecycle.vaultd.keyring
    opened = await DataKeys(keyring, 1024, accept_legacy=True).decrypt(ENV, legacy.encrypted_keys)
    dek = opened.value
    assert len(dek) == 32  # the documented residual, while legacy data keys are accepted
    with pytest.raises(DecryptionFailed):
        await DataKeys(keyring, 1024, accept_legacy=False).decrypt(ENV, legacy.encrypted_keys)
    assert Settings(keys={"accept_legacy_data_keys": False}).keys.accept_legacy_data_keys is False
