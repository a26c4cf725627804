"""Class 1 migration: object versions written before domain separation (encrypted_keys format 1,
one entry label for objects and data keys alike) stay readable, and a rewrap job moves them to
format 2 with the object label, without touching a byte of their data (docs/SECURITY.md
section 1, docs/FORMAT.md section 3)."""

from __future__ import annotations

import grpc

from tests.lifecycle.conftest import Lifecycle, item, lifecycle, new_org, wait_job
from tests.security.crypto_support import refused
from vaultd.core.envelope import EncryptedKeys, Purpose, unwrap_entry, wrap_dek
from vaultd.storage.base import StoredVersion
from vaultd.v1 import admin_service_pb2 as apb
from vaultd.v1 import key_service_pb2 as kpb
from vaultd.v1 import object_service_pb2 as opb

__all__ = ["lifecycle"]  # the fixture, imported so pytest finds it here
ENV = "default"


async def _stored(lc: Lifecycle, object_id: str, version_id: str) -> StoredVersion:
    found = await lc.vaultd.store.get_object_version(ENV, object_id, version_id)
    assert found is not None
    return found.version


async def _as_format_1(lc: Lifecycle, object_id: str, version: StoredVersion) -> StoredVersion:
    """Rewrite a version's encrypted_keys as a vaultd before domain separation wrote it: the
    same DEK, DEK id and KEK versions, format 1 and the one shared label."""
    keys = EncryptedKeys.parse(version.encrypted_keys)
    keks = [await lc.vaultd.keyring.version(ENV, e.kek_id, e.kek_version) for e in keys.entries]
    dek = unwrap_entry(keys, keys.entries[0], keks[0].key, Purpose.OBJECT_VERSION)
    legacy = wrap_dek(dek, keys.dek_id, keks, Purpose.LEGACY_V1)
    assert await lc.vaultd.store.replace_encrypted_keys(
        ENV, object_id, version, legacy.to_bytes(), legacy.key_ids
    )
    return await _stored(lc, object_id, version.version_id)


async def test_format_1_objects_read_and_migrate_without_touching_data(
    lifecycle: Lifecycle,
) -> None:
    org = new_org()
    made = await lifecycle.objects.CreateObject(
        opb.CreateObjectRequest(
            name=f"legacy-{org['organization_id']}", value=b"v1", key_context=org
        )
    )
    meta = made.metadata
    legacy = await _as_format_1(
        lifecycle, meta.id, await _stored(lifecycle, meta.id, meta.version_id)
    )
    assert legacy.encrypted_keys[0] == 1

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

    migrated = await _stored(lifecycle, meta.id, meta.version_id)
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
    assert (await _stored(lifecycle, meta.id, meta.version_id)).encrypted_keys == (
        migrated.encrypted_keys
    )
