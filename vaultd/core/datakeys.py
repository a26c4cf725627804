"""Data keys: DEKs handed to callers, wrapped under the KEKs of their key context.

The same key hierarchy and KEK cache as objects: a warm cache makes no provider call. The DEK id
is recorded inside encrypted_keys and bound into every entry, so DecryptDataKey needs nothing
but the blob, and an entry cannot be moved to another data key.

Every entry is labelled Purpose.DATA_KEY, so an object version's wrapped DEK (labelled
OBJECT_VERSION) does not unwrap here, and a data key does not unwrap as an object's key.
Format-version-1 blobs (one label for both) are read while `accept_legacy` is set: callers
still hold data keys made before domain separation (docs/SECURITY.md section 1).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from ulid import ULID

from vaultd.core.blob import LocalBlob, open_local, seal_local
from vaultd.core.envelope import LEGACY_FORMAT_VERSION, EncryptedKeys, Purpose, new_dek, wrap_dek
from vaultd.core.errors import ContextNotPermitted, DecryptionFailed
from vaultd.core.keyring import KEK_ID, Keyring
from vaultd.core.scope import UNSCOPED, ContextScope
from vaultd.core.validation import KeyContext, validate_key_context, validate_value_size


@dataclass(frozen=True, slots=True)
class DataKey:
    """A data key handed out: new, or rekeyed (then `unwrapped_by` names the KEK versions of
    the encrypted_keys it came from, for the audit event)."""

    id: str
    key: bytes
    encrypted_keys: bytes
    key_context: Mapping[str, str]
    key_ids: tuple[str, ...]
    unwrapped_by: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class UnderDataKey:
    """What an operation made or opened with a data key (the key itself, Encrypt's blob or
    Decrypt's plaintext), with the data key's id and the KEK versions its encrypted_keys name:
    what the call's audit event records."""

    value: bytes
    data_key_id: str
    key_ids: tuple[str, ...]


class DataKeys:
    def __init__(
        self, keyring: Keyring, max_plaintext_bytes: int, *, accept_legacy: bool = True
    ) -> None:
        self._keyring = keyring
        self._max_plaintext_bytes = max_plaintext_bytes
        self._accept_legacy = accept_legacy

    async def create(
        self,
        environment_id: str,
        key_context: Mapping[str, str],
        *,
        scope: ContextScope = UNSCOPED,
    ) -> DataKey:
        context = validate_key_context(key_context)
        scope.check(dict(context))
        return await self._wrap(environment_id, new_dek(), ULID().bytes, context)

    async def decrypt(
        self, environment_id: str, encrypted_keys: bytes, *, scope: ContextScope = UNSCOPED
    ) -> UnderDataKey:
        """The data key (`value`) inside encrypted_keys."""
        keys = self._parse(encrypted_keys)
        await self._check_blob_scope(environment_id, keys, scope)
        dek = await self._keyring.unwrap_dek(environment_id, keys, Purpose.DATA_KEY)
        return UnderDataKey(dek, str(ULID.from_bytes(keys.dek_id)), keys.key_ids)

    async def rekey(
        self,
        environment_id: str,
        encrypted_keys: bytes,
        key_context: Mapping[str, str],
        *,
        scope: ContextScope = UNSCOPED,
    ) -> DataKey:
        context = validate_key_context(key_context)
        scope.check(dict(context))
        keys = self._parse(encrypted_keys)
        await self._check_blob_scope(environment_id, keys, scope)
        dek = await self._keyring.unwrap_dek(environment_id, keys, Purpose.DATA_KEY)
        rekeyed = await self._wrap(environment_id, dek, keys.dek_id, context)
        return replace(rekeyed, unwrapped_by=keys.key_ids)

    async def encrypt(
        self,
        environment_id: str,
        plaintext: bytes,
        key_context: Mapping[str, str],
        associated_data: bytes,
        *,
        committing: bool = True,
        scope: ContextScope = UNSCOPED,
    ) -> UnderDataKey:
        """The local-encryption blob (`value`) of `plaintext` under a new data key."""
        validate_value_size(plaintext, self._max_plaintext_bytes, "plaintext")
        data_key = await self.create(environment_id, key_context, scope=scope)
        # Key-committing (docs/FORMAT.md section 4.4): the blob opens under this data key only.
        # Without it, the WorkOS layout, for readers that know only that one (the WorkOS SDKs).
        blob = seal_local(
            data_key.key, data_key.encrypted_keys, plaintext, associated_data, committing
        )
        return UnderDataKey(blob, data_key.id, data_key.key_ids)

    async def decrypt_blob(
        self,
        environment_id: str,
        ciphertext: bytes,
        associated_data: bytes,
        *,
        scope: ContextScope = UNSCOPED,
    ) -> UnderDataKey:
        """The plaintext (`value`) of a local-encryption blob."""
        blob = LocalBlob.parse(ciphertext)
        key = await self.decrypt(environment_id, blob.encrypted_keys, scope=scope)
        plaintext = open_local(key.value, blob, associated_data)
        return UnderDataKey(plaintext, key.data_key_id, key.key_ids)

    async def _check_blob_scope(
        self, environment_id: str, keys: EncryptedKeys, scope: ContextScope
    ) -> None:
        """ContextNotPermitted unless the context the blob's entries name is in scope.

        The context is recovered from the KEK records its entries name (each KEK belongs to one
        context item), never from the request: a caller cannot claim a context. Every entry
        counts, so one in-scope entry beside another tenant's does not pass; an entry naming
        no KEK of this environment proves nothing, and is refused too. A blob wrapped only under
        BYOK-governed items names only those (rules.py), so a constraint on another key cannot
        be met by it.
        """
        if scope.unrestricted:
            return
        items: list[tuple[str, str]] = []
        for entry in keys.entries:
            record = (
                await self._keyring.record(environment_id, entry.kek_id)
                if KEK_ID.fullmatch(entry.kek_id)
                else None
            )
            if record is None:
                raise ContextNotPermitted("this API key may not use this key context")
            items.append((record.item_key, record.item_value))
        if not scope.allows_items(items):
            raise ContextNotPermitted("this API key may not use this key context")

    def _parse(self, encrypted_keys: bytes) -> EncryptedKeys:
        keys = EncryptedKeys.parse(encrypted_keys)
        if keys.format_version == LEGACY_FORMAT_VERSION and not self._accept_legacy:
            raise DecryptionFailed("encrypted_keys has a format version no longer accepted")
        return keys

    async def _wrap(
        self, environment_id: str, dek: bytes, dek_id: bytes, context: KeyContext
    ) -> DataKey:
        keks = await self._keyring.current_keks(environment_id, context)
        wrapped = wrap_dek(dek, dek_id, keks, Purpose.DATA_KEY)
        return DataKey(
            id=str(ULID.from_bytes(dek_id)),
            key=dek,
            encrypted_keys=wrapped.to_bytes(),
            key_context=dict(context),
            key_ids=wrapped.key_ids,
        )
