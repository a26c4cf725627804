"""KeyService over a real gRPC socket, on both stores."""

from __future__ import annotations

import logging
import os
import uuid

import grpc
import pytest

from providers.internal import InternalProvider
from testkit.at_rest import stored_bytes
from testkit.grpc_errors import details_of
from testkit.running import Running
from vaultd.core.envelope import EncryptedKeys, WrappedEntry
from vaultd.v1 import key_service_pb2 as pb
from vaultd.v1 import key_service_pb2_grpc as pb_grpc


@pytest.fixture
def keys(running: Running) -> pb_grpc.KeyServiceStub:
    return pb_grpc.KeyServiceStub(running.channel)


def tenant() -> dict[str, str]:
    return {"organization_id": f"org_{uuid.uuid4().hex[:10]}"}


async def expect_decryption_failed(call) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    details = details_of(caught.value)
    assert (details.code, details.reason) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "DECRYPTION_FAILED",
    ), details


async def test_data_key_round_trip_and_rekey(keys: pb_grpc.KeyServiceStub) -> None:
    context = tenant() | {"user_id": "u1"}
    created = await keys.CreateDataKey(pb.CreateDataKeyRequest(key_context=context))
    assert len(created.data_key) == 32 and created.id
    assert dict(created.key_context) == context and len(created.key_ids) == 2
    assert created.data_key not in created.encrypted_keys

    decrypted = await keys.DecryptDataKey(
        pb.DecryptDataKeyRequest(encrypted_keys=created.encrypted_keys)
    )
    assert (decrypted.id, decrypted.data_key) == (created.id, created.data_key)

    other = tenant()
    rekeyed = await keys.RekeyDataKey(
        pb.RekeyDataKeyRequest(encrypted_keys=created.encrypted_keys, key_context=other)
    )
    assert (rekeyed.id, rekeyed.data_key) == (created.id, created.data_key)
    assert dict(rekeyed.key_context) == other
    assert len(rekeyed.key_ids) == 1 and rekeyed.key_ids[0] not in created.key_ids
    again = await keys.DecryptDataKey(
        pb.DecryptDataKeyRequest(encrypted_keys=rekeyed.encrypted_keys)
    )
    assert again.data_key == created.data_key


@pytest.mark.parametrize("aad", [b"", b"row 42 of table t"])
async def test_encrypt_hides_the_plaintext_and_decrypt_needs_the_same_aad(
    keys: pb_grpc.KeyServiceStub, aad: bytes
) -> None:
    sealed = await keys.Encrypt(
        pb.EncryptRequest(plaintext=b"card 4242", key_context=tenant(), associated_data=aad)
    )
    assert b"card 4242" not in sealed.ciphertext
    opened = await keys.Decrypt(
        pb.DecryptRequest(ciphertext=sealed.ciphertext, associated_data=aad)
    )
    assert opened.plaintext == b"card 4242"
    await expect_decryption_failed(
        keys.Decrypt(pb.DecryptRequest(ciphertext=sealed.ciphertext, associated_data=aad + b"x"))
    )


async def test_every_flipped_byte_and_truncation_fails_cleanly(
    keys: pb_grpc.KeyServiceStub,
) -> None:
    blob = (
        await keys.Encrypt(pb.EncryptRequest(plaintext=b"tamper me", key_context=tenant()))
    ).ciphertext
    for i in range(len(blob)):
        flipped = bytearray(blob)
        flipped[i] ^= 0x01
        await expect_decryption_failed(keys.Decrypt(pb.DecryptRequest(ciphertext=bytes(flipped))))
    for cut in range(len(blob)):
        await expect_decryption_failed(keys.Decrypt(pb.DecryptRequest(ciphertext=blob[:cut])))


def _replace_entry(blob: bytes, **changes: object) -> bytes:
    keys = EncryptedKeys.parse(blob)
    entry = keys.entries[0]
    fields = {
        "kek_id": entry.kek_id,
        "kek_version": entry.kek_version,
        "nonce": entry.nonce,
        "wrapped_dek": entry.wrapped_dek,
    }
    fields.update(changes)
    return EncryptedKeys(keys.dek_id, (WrappedEntry(**fields),)).to_bytes()  # type: ignore[arg-type]


async def test_entries_are_bound_to_their_context_item_and_dek(
    keys: pb_grpc.KeyServiceStub,
) -> None:
    a = await keys.CreateDataKey(pb.CreateDataKeyRequest(key_context=tenant()))
    b = await keys.CreateDataKey(pb.CreateDataKeyRequest(key_context=tenant()))
    b_entry = EncryptedKeys.parse(b.encrypted_keys).entries[0]
    attacks = {
        "another item's KEK id": _replace_entry(a.encrypted_keys, kek_id=b_entry.kek_id),
        "another data key's entry": _replace_entry(
            a.encrypted_keys,
            kek_id=b_entry.kek_id,
            nonce=b_entry.nonce,
            wrapped_dek=b_entry.wrapped_dek,
        ),
        "another DEK id": EncryptedKeys(
            EncryptedKeys.parse(b.encrypted_keys).dek_id,
            EncryptedKeys.parse(a.encrypted_keys).entries,
        ).to_bytes(),
        "another KEK version": _replace_entry(a.encrypted_keys, kek_version=2),
    }
    for name, blob in attacks.items():
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await keys.DecryptDataKey(pb.DecryptDataKeyRequest(encrypted_keys=blob))
        details = details_of(caught.value)
        assert details.code == grpc.StatusCode.INVALID_ARGUMENT, name
        assert details.reason == "DECRYPTION_FAILED", name
        assert a.data_key.hex() not in details.message and b.data_key.hex() not in details.message


async def test_bad_inputs_are_invalid_argument(keys: pb_grpc.KeyServiceStub) -> None:
    for bad in (b"", b"\x01", os.urandom(200), b"\x02" + bytes(100)):
        await expect_decryption_failed(
            keys.DecryptDataKey(pb.DecryptDataKeyRequest(encrypted_keys=bad))
        )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await keys.CreateDataKey(pb.CreateDataKeyRequest(key_context={}))
    assert details_of(caught.value).reason == "INVALID_KEY_CONTEXT"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await keys.Encrypt(pb.EncryptRequest(plaintext=bytes(64 * 1024 + 1), key_context=tenant()))
    assert details_of(caught.value).reason == "VALUE_TOO_LARGE"


async def test_warm_cache_makes_no_provider_call(
    keys: pb_grpc.KeyServiceStub, running: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = {"wrap": 0, "unwrap": 0}
    for name in calls:
        original = getattr(InternalProvider, name)

        async def counted(self, *args, _name=name, _original=original):  # type: ignore[no-untyped-def]
            calls[_name] += 1
            return await _original(self, *args)

        monkeypatch.setattr(InternalProvider, name, counted)

    context = tenant()
    created = await keys.CreateDataKey(pb.CreateDataKeyRequest(key_context=context))
    assert calls == {"wrap": 1, "unwrap": 0}  # the new KEK was wrapped once, kept in clear
    for _ in range(5):
        await keys.DecryptDataKey(pb.DecryptDataKeyRequest(encrypted_keys=created.encrypted_keys))
        await keys.CreateDataKey(pb.CreateDataKeyRequest(key_context=context))
    assert calls == {"wrap": 1, "unwrap": 0}

    running.vaultd.keyring.cache.clear()
    for _ in range(5):
        await keys.DecryptDataKey(pb.DecryptDataKeyRequest(encrypted_keys=created.encrypted_keys))
    assert calls == {"wrap": 1, "unwrap": 1}


async def test_data_keys_never_leave_in_clear(
    keys: pb_grpc.KeyServiceStub, running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    created = await keys.CreateDataKey(pb.CreateDataKeyRequest(key_context=tenant()))
    messages = []
    for bad in (created.encrypted_keys[:-1], created.encrypted_keys + b"\0"):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await keys.DecryptDataKey(pb.DecryptDataKeyRequest(encrypted_keys=bad))
        messages.append(str(caught.value) + repr(caught.value.trailing_metadata()))
    at_rest = await stored_bytes(running)
    logs = "\n".join(r.getMessage() for r in caplog.records)
    for form in (created.data_key, created.data_key.hex().encode()):
        assert form not in at_rest
        assert form.decode("latin-1") not in logs
        assert all(form.decode("latin-1") not in m for m in messages)
