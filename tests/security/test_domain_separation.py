"""Class 1 attack: an object version's wrapped DEK used as a data key, and a data key planted as
an object version's key (docs/SECURITY.md section 1).

The attacker has a copy of the store (the SQLite file, the Redis database) and an API key with
only `keys:use`. Before domain separation both kinds of wrapped DEK carried the same entry label,
so DecryptDataKey handed out any object's DEK, and Decrypt opened an object's value outright.
With store write access, CreateDataKey gave a key whose blob GetObject accepted as a version's.
"""

from __future__ import annotations

import os

import grpc
from ulid import ULID

from testkit.auth import add_api_key
from testkit.crypto import ENV, STORES, RawStore, refused
from testkit.running import Running
from vaultd.core.blob import LocalBlob, encode_uleb128
from vaultd.core.envelope import NONCE_BYTES, TAG_BYTES, EncryptedKeys, seal
from vaultd.v1 import key_service_pb2 as kpb
from vaultd.v1 import key_service_pb2_grpc as kpb_grpc
from vaultd.v1 import object_service_pb2 as opb

KEYS_ONLY = "sk_security-domain-keys-use-only-0000000000000"
CONTEXT = {"organization_id": "org_domain"}


def _value_aad(object_id: str, version_id: str) -> bytes:
    # What the attacker knows about how a value is sealed (vaultd/core/objects.py).
    return "\0".join(("vaultd/object/v1", ENV, object_id, version_id)).encode()


async def _object(running: Running, value: bytes) -> opb.ObjectMetadata:
    name = f"domain-{ULID()}"
    reply = await running.objects.CreateObject(
        opb.CreateObjectRequest(name=name, value=value, key_context=CONTEXT)
    )
    return reply.metadata


@STORES
async def test_object_dek_is_refused_as_a_data_key(running: Running) -> None:
    await add_api_key(running.vaultd.store, KEYS_ONLY, ENV, ("keys:use",), name="keys-only")
    keys = kpb_grpc.KeyServiceStub(running.channel)
    secret = os.urandom(24)
    meta = await _object(running, secret)
    raw = RawStore(running)
    try:
        stolen = raw.version(meta.id, meta.version_id)  # the dump
        before = (stolen.encrypted_keys, stolen.ciphertext)
        assert EncryptedKeys.parse(stolen.encrypted_keys).format_version == 2

        # 1. DecryptDataKey would hand out the object's DEK.
        code, reason = await refused(
            keys.DecryptDataKey,
            kpb.DecryptDataKeyRequest(encrypted_keys=stolen.encrypted_keys),
            KEYS_ONLY,
        )
        assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "DECRYPTION_FAILED")

        # 2. RekeyDataKey would re-wrap it under a context the attacker chose, then hand it out.
        code, reason = await refused(
            keys.RekeyDataKey,
            kpb.RekeyDataKeyRequest(
                encrypted_keys=stolen.encrypted_keys, key_context={"attacker": "ctx"}
            ),
            KEYS_ONLY,
        )
        assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "DECRYPTION_FAILED")

        # 3. Decrypt would open the value itself: the stored ciphertext reframed as a local blob
        # (nonce || ciphertext || tag -> IV || tag || encrypted_keys || ciphertext), with the
        # value's associated data, which names only public ids.
        nonce, body = stolen.ciphertext[:NONCE_BYTES], stolen.ciphertext[NONCE_BYTES:]
        blob = LocalBlob(nonce, body[-TAG_BYTES:], stolen.encrypted_keys, body[:-TAG_BYTES])
        code, reason = await refused(
            keys.Decrypt,
            kpb.DecryptRequest(
                ciphertext=blob.to_bytes(),
                associated_data=_value_aad(meta.id, meta.version_id),
            ),
            KEYS_ONLY,
        )
        assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "DECRYPTION_FAILED")

        # Nothing else changed: the stored version is as it was and the owner still reads it.
        after = raw.version(meta.id, meta.version_id)
        assert (after.encrypted_keys, after.ciphertext) == before
        got = await running.objects.GetObject(opb.GetObjectRequest(id=meta.id))
        assert got.object.value == secret
    finally:
        raw.close()


@STORES
async def test_data_key_is_refused_as_an_object_versions_key(running: Running) -> None:
    await add_api_key(running.vaultd.store, KEYS_ONLY, ENV, ("keys:use",), name="keys-only")
    keys = kpb_grpc.KeyServiceStub(running.channel)
    bystander = await _object(running, b"untouched")
    meta = await _object(running, b"the real value")
    raw = RawStore(running)
    try:
        # A data key for the object's own context, then a value sealed under it exactly as the
        # object's would be, written over the current version in the store.
        made = await keys.CreateDataKey(kpb.CreateDataKeyRequest(key_context=CONTEXT))
        forged = seal(
            made.data_key, b"forged by the attacker", _value_aad(meta.id, meta.version_id)
        )

        # The same data key with its DEK id rewritten to the version's: the id check passes,
        # the entry label does not.
        as_version = EncryptedKeys.parse(made.encrypted_keys)
        renamed = EncryptedKeys(
            ULID.from_str(meta.version_id.removeprefix("ver_")).bytes, as_version.entries
        ).to_bytes()
        for encrypted_keys in (made.encrypted_keys, renamed):
            raw.write_keys(meta.id, meta.version_id, encrypted_keys, forged)
            for call, request in (
                (running.objects.GetObject, opb.GetObjectRequest(id=meta.id)),
                (running.objects.GetObjectByName, opb.GetObjectByNameRequest(name=meta.name)),
                (
                    running.objects.GetObjectVersion,
                    opb.GetObjectVersionRequest(id=meta.id, version_id=meta.version_id),
                ),
            ):
                code, reason = await refused(call, request)
                assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "DECRYPTION_FAILED")

        # Nothing else changed: the data key still works as a data key, the bystander reads.
        again = await keys.DecryptDataKey(
            kpb.DecryptDataKeyRequest(encrypted_keys=made.encrypted_keys)
        )
        assert again.data_key == made.data_key
        got = await running.objects.GetObject(opb.GetObjectRequest(id=bystander.id))
        assert got.object.value == b"untouched"
    finally:
        raw.close()


def test_reframing_helper_matches_the_blob_layout() -> None:
    # The attack above depends on this reframing being the local blob layout.
    blob = LocalBlob(b"i" * 12, b"t" * 16, b"\x02k", b"c")
    assert blob.to_bytes() == b"i" * 12 + b"t" * 16 + encode_uleb128(2) + b"\x02k" + b"c"
