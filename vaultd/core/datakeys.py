"""Data keys: DEKs handed to callers, wrapped under the KEKs of their key context.

The same key hierarchy and KEK cache as objects: a warm cache makes no provider call. The DEK id
is recorded inside encrypted_keys and bound into every entry, so DecryptDataKey needs nothing
but the blob, and an entry cannot be moved to another data key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ulid import ULID

from vaultd.core.blob import LocalBlob, open_local, seal_local
from vaultd.core.envelope import EncryptedKeys, new_dek, wrap_dek
from vaultd.core.keyring import Keyring
from vaultd.core.validation import KeyContext, validate_key_context, validate_value_size


@dataclass(frozen=True, slots=True)
class DataKey:
    id: str
    key: bytes
    encrypted_keys: bytes
    key_context: Mapping[str, str]
    key_ids: tuple[str, ...]


class DataKeys:
    def __init__(self, keyring: Keyring, max_plaintext_bytes: int) -> None:
        self._keyring = keyring
        self._max_plaintext_bytes = max_plaintext_bytes

    async def create(self, environment_id: str, key_context: Mapping[str, str]) -> DataKey:
        context = validate_key_context(key_context)
        return await self._wrap(environment_id, new_dek(), ULID().bytes, context)

    async def decrypt(self, environment_id: str, encrypted_keys: bytes) -> tuple[str, bytes]:
        keys = EncryptedKeys.parse(encrypted_keys)
        dek = await self._keyring.unwrap_dek(environment_id, keys)
        return str(ULID.from_bytes(keys.dek_id)), dek

    async def rekey(
        self, environment_id: str, encrypted_keys: bytes, key_context: Mapping[str, str]
    ) -> DataKey:
        context = validate_key_context(key_context)
        keys = EncryptedKeys.parse(encrypted_keys)
        dek = await self._keyring.unwrap_dek(environment_id, keys)
        return await self._wrap(environment_id, dek, keys.dek_id, context)

    async def encrypt(
        self,
        environment_id: str,
        plaintext: bytes,
        key_context: Mapping[str, str],
        associated_data: bytes,
    ) -> bytes:
        validate_value_size(plaintext, self._max_plaintext_bytes, "plaintext")
        data_key = await self.create(environment_id, key_context)
        return seal_local(data_key.key, data_key.encrypted_keys, plaintext, associated_data)

    async def decrypt_blob(
        self, environment_id: str, ciphertext: bytes, associated_data: bytes
    ) -> bytes:
        blob = LocalBlob.parse(ciphertext)
        _, dek = await self.decrypt(environment_id, blob.encrypted_keys)
        return open_local(dek, blob, associated_data)

    async def _wrap(
        self, environment_id: str, dek: bytes, dek_id: bytes, context: KeyContext
    ) -> DataKey:
        keks = await self._keyring.current_keks(environment_id, context)
        wrapped = wrap_dek(dek, dek_id, keks)
        return DataKey(
            id=str(ULID.from_bytes(dek_id)),
            key=dek,
            encrypted_keys=wrapped.to_bytes(),
            key_context=dict(context),
            key_ids=wrapped.key_ids,
        )
