"""KeyService: each RPC converts proto -> domain, awaits the data keys, converts back, and tells
the audit layer what it touched from the data keys' answer: the data key id and the KEK versions
core used, not ids parsed back out of the blob it returns."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeAlias, TypeVar

import grpc

from vaultd.api.caller import caller_of
from vaultd.api.callrecord import touched
from vaultd.core.audit import Subject
from vaultd.core.datakeys import DataKey, DataKeys
from vaultd.v1 import key_service_pb2 as pb
from vaultd.v1 import key_service_pb2_grpc as pb_grpc

Context: TypeAlias = grpc.aio.ServicerContext


Wrapped = TypeVar("Wrapped", pb.CreateDataKeyResponse, pb.RekeyDataKeyResponse)


def _response(cls: type[Wrapped], key: DataKey) -> Wrapped:
    return cls(
        id=key.id,
        data_key=key.key,
        encrypted_keys=key.encrypted_keys,
        key_context=key.key_context,
        key_ids=key.key_ids,
    )


def _touched(
    data_key_id: str, key_ids: Sequence[str], key_context: Mapping[str, str] | None = None
) -> None:
    # The context as the caller sent it (core answers with it normalised).
    touched(Subject(key_ids=tuple(key_ids), key_context=key_context, data_key_id=data_key_id))


class KeyServicer(pb_grpc.KeyServiceServicer):
    def __init__(self, data_keys: DataKeys) -> None:
        self._keys = data_keys

    async def CreateDataKey(
        self, request: pb.CreateDataKeyRequest, context: Context
    ) -> pb.CreateDataKeyResponse:
        c = caller_of(context)
        key = await self._keys.create(c.environment_id, request.key_context, scope=c.scope)
        _touched(key.id, key.key_ids, request.key_context)
        return _response(pb.CreateDataKeyResponse, key)

    async def DecryptDataKey(
        self, request: pb.DecryptDataKeyRequest, context: Context
    ) -> pb.DecryptDataKeyResponse:
        c = caller_of(context)
        key = await self._keys.decrypt(c.environment_id, request.encrypted_keys, scope=c.scope)
        _touched(key.data_key_id, key.key_ids)
        return pb.DecryptDataKeyResponse(id=key.data_key_id, data_key=key.value)

    async def RekeyDataKey(
        self, request: pb.RekeyDataKeyRequest, context: Context
    ) -> pb.RekeyDataKeyResponse:
        c = caller_of(context)
        key = await self._keys.rekey(
            c.environment_id, request.encrypted_keys, request.key_context, scope=c.scope
        )
        # The KEK versions it was under, then those it is under now.
        _touched(
            key.id, tuple(dict.fromkeys((*key.unwrapped_by, *key.key_ids))), request.key_context
        )
        return _response(pb.RekeyDataKeyResponse, key)

    async def Encrypt(self, request: pb.EncryptRequest, context: Context) -> pb.EncryptResponse:
        c = caller_of(context)
        sealed = await self._keys.encrypt(
            c.environment_id,
            request.plaintext,
            request.key_context,
            request.associated_data,
            committing=not request.workos_compatible,
            scope=c.scope,
        )
        _touched(sealed.data_key_id, sealed.key_ids, request.key_context)
        return pb.EncryptResponse(ciphertext=sealed.value)

    async def Decrypt(self, request: pb.DecryptRequest, context: Context) -> pb.DecryptResponse:
        c = caller_of(context)
        opened = await self._keys.decrypt_blob(
            c.environment_id, request.ciphertext, request.associated_data, scope=c.scope
        )
        _touched(opened.data_key_id, opened.key_ids)
        return pb.DecryptResponse(plaintext=opened.value)
