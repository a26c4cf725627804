"""Class 4 attack: one ciphertext that opens to two plaintexts under two data keys
(docs/SECURITY.md section 4, docs/FORMAT.md section 4.4).

AES-GCM is not key-committing. An attacker holding two data keys (two CreateDataKey calls) can
make one IV, tag and ciphertext that authenticate under both, to different plaintexts; the
blob's encrypted_keys, which the data's tag does not cover, then picks which plaintext a reader
sees. A moderation step, a dedup by ciphertext or a signature over the data part approves one
plaintext and the recipient gets the other. The committing blob carries a commitment to its
data key, checked before anything is opened.
"""

from __future__ import annotations

import grpc
import pytest

from testkit.crypto import STORES, refused
from testkit.running import Running
from tests.vectors.generate import two_key_ciphertext
from vaultd.client import AsyncVaultClient, DecryptionFailed
from vaultd.core.blob import COMMITTING_MARKER, LocalBlob, blob_key, key_commitment
from vaultd.core.envelope import NONCE_BYTES, TAG_BYTES
from vaultd.v1 import key_service_pb2 as kpb
from vaultd.v1 import key_service_pb2_grpc as kpb_grpc

CONTEXT = {"organization_id": "org_commitment"}
IV = bytes(range(NONCE_BYTES))
HEADER = NONCE_BYTES + TAG_BYTES


def _blob(iv: bytes, tag: bytes, ek: bytes, commitment: bytes | None, ct: bytes) -> bytes:
    return LocalBlob(iv, tag, ek, ct, commitment).to_bytes()


@STORES
async def test_one_ciphertext_does_not_open_under_two_data_keys(running: Running) -> None:
    keys = kpb_grpc.KeyServiceStub(running.channel)
    first = await keys.CreateDataKey(kpb.CreateDataKeyRequest(key_context=CONTEXT))
    second = await keys.CreateDataKey(kpb.CreateDataKeyRequest(key_context=CONTEXT))

    # What vaultd writes is committing: the server's Encrypt, and the Python client by default.
    sealed = await keys.Encrypt(kpb.EncryptRequest(plaintext=b"p", key_context=CONTEXT))
    assert sealed.ciphertext[HEADER : HEADER + 2] == COMMITTING_MARKER
    assert LocalBlob.parse(sealed.ciphertext).committing
    async with AsyncVaultClient(running.target, running.api_key) as client:
        mine = await client.encrypt(b"client", CONTEXT)
        assert mine[HEADER : HEADER + 2] == COMMITTING_MARKER
        assert await client.decrypt(mine) == b"client"

    # The attack on the committing variant: a ciphertext valid under both blob keys, the first
    # key's commitment, and either key's encrypted_keys.
    ct, tag = two_key_ciphertext(blob_key(first.data_key), blob_key(second.data_key), IV)
    honest = _blob(IV, tag, first.encrypted_keys, key_commitment(first.data_key), ct)
    swapped = _blob(IV, tag, second.encrypted_keys, key_commitment(first.data_key), ct)
    decrypt = keys.Decrypt
    opened = await decrypt(kpb.DecryptRequest(ciphertext=honest))
    assert len(opened.plaintext) == 16
    code, reason = await refused(decrypt, kpb.DecryptRequest(ciphertext=swapped))
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "DECRYPTION_FAILED")
    async with AsyncVaultClient(running.target, running.api_key) as client:
        assert await client.decrypt(honest) == opened.plaintext
        with pytest.raises(DecryptionFailed):
            await client.decrypt(swapped)

    # Nothing else changed: both data keys are still what they were.
    for made in (first, second):
        again = await keys.DecryptDataKey(
            kpb.DecryptDataKeyRequest(encrypted_keys=made.encrypted_keys)
        )
        assert again.data_key == made.data_key


@STORES
async def test_the_workos_layout_is_still_read_and_can_be_refused(running: Running) -> None:
    """Today's blobs (the WorkOS layout) read unchanged, so the same trick on them still works
    at the server's Decrypt: the residual risk docs/SECURITY.md names. A reader that wants
    commitment refuses them (the Python client's require_key_commitment)."""
    keys = kpb_grpc.KeyServiceStub(running.channel)
    first = await keys.CreateDataKey(kpb.CreateDataKeyRequest(key_context=CONTEXT))
    second = await keys.CreateDataKey(kpb.CreateDataKeyRequest(key_context=CONTEXT))
    ct, tag = two_key_ciphertext(first.data_key, second.data_key, IV)
    one = _blob(IV, tag, first.encrypted_keys, None, ct)
    other = _blob(IV, tag, second.encrypted_keys, None, ct)
    p1 = (await keys.Decrypt(kpb.DecryptRequest(ciphertext=one))).plaintext
    p2 = (await keys.Decrypt(kpb.DecryptRequest(ciphertext=other))).plaintext
    assert p1 != p2  # GCM alone: one IV, tag and ciphertext, two plaintexts

    async with AsyncVaultClient(
        running.target, running.api_key, key_commitment=False, require_key_commitment=True
    ) as strict:
        for blob in (one, other):
            with pytest.raises(DecryptionFailed):
                await strict.decrypt(blob)
        # key_commitment=False writes the WorkOS layout, for readers that know only it.
        workos = await strict.encrypt(b"for a WorkOS SDK", CONTEXT)
        assert not LocalBlob.parse(workos).committing
    async with AsyncVaultClient(running.target, running.api_key) as lenient:
        assert await lenient.decrypt(workos) == b"for a WorkOS SDK"
        assert await lenient.decrypt(one) == p1
