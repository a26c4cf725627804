"""KeyService: each RPC converts proto -> domain, awaits the data keys, converts back."""

from __future__ import annotations

from typing import TypeAlias, TypeVar

import grpc

from vaultd.api.caller import caller_of
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


class KeyServicer(pb_grpc.KeyServiceServicer):
    def __init__(self, data_keys: DataKeys) -> None:
        self._keys = data_keys

    async def CreateDataKey(
        self, request: pb.CreateDataKeyRequest, context: Context
    ) -> pb.CreateDataKeyResponse:
        key = await self._keys.create(caller_of(context).environment_id, request.key_context)
        return _response(pb.CreateDataKeyResponse, key)

    async def DecryptDataKey(
        self, request: pb.DecryptDataKeyRequest, context: Context
    ) -> pb.DecryptDataKeyResponse:
        key_id, key = await self._keys.decrypt(
            caller_of(context).environment_id, request.encrypted_keys
        )
        return pb.DecryptDataKeyResponse(id=key_id, data_key=key)

    async def RekeyDataKey(
        self, request: pb.RekeyDataKeyRequest, context: Context
    ) -> pb.RekeyDataKeyResponse:
        key = await self._keys.rekey(
            caller_of(context).environment_id, request.encrypted_keys, request.key_context
        )
        return _response(pb.RekeyDataKeyResponse, key)

    async def Encrypt(self, request: pb.EncryptRequest, context: Context) -> pb.EncryptResponse:
        blob = await self._keys.encrypt(
            caller_of(context).environment_id,
            request.plaintext,
            request.key_context,
            request.associated_data,
            committing=not request.workos_compatible,
        )
        return pb.EncryptResponse(ciphertext=blob)

    async def Decrypt(self, request: pb.DecryptRequest, context: Context) -> pb.DecryptResponse:
        plaintext = await self._keys.decrypt_blob(
            caller_of(context).environment_id, request.ciphertext, request.associated_data
        )
        return pb.DecryptResponse(plaintext=plaintext)
