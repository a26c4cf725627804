"""KeyAuthentication: which API key a call carries (docs/ARCHITECTURE.md section 8).

Every call but the gRPC health service's must carry `authorization: Bearer <API key>`. The key
lookup runs inside the call, under its deadline, its request id and its metrics. Once known, the
key goes into the call's record (for its audit event and Authorization) and the caller into
CALLER (for the servicer) and audit.ORIGIN (for events core writes during the call).

Before a caller is identified, the store guard may refuse every call (a store that was emptied,
replaced or lost its durability: UNAVAILABLE with the reason), and an API key the store does not
know makes the guard check the store at once, so a caller of an emptied store hears
STORE_IDENTITY_MISMATCH, not API_KEY_INVALID.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc

from vaultd.api import callrecord
from vaultd.api.caller import CALLER, Caller, origin_of
from vaultd.core.apikeys import ApiKeys, actor_of, scope_of
from vaultd.core.audit import ORIGIN
from vaultd.core.errors import ApiKeyInvalid, ApiKeyMalformed, ApiKeyMissing
from vaultd.core.records import ApiKeyRecord
from vaultd.core.storeguard import StoreGuard

AUTHORIZATION = "authorization"
_BEARER = "bearer"

Metadata = Sequence[tuple[str, Any]] | None


def bearer_token(metadata: Metadata) -> str:
    """The token of the one `authorization: Bearer <token>` entry; ApiKeyMissing/Malformed."""
    values = [value for key, value in metadata or () if key == AUTHORIZATION]
    if not values:
        raise ApiKeyMissing("send the metadata `authorization: Bearer <API key>`")
    if len(values) > 1:
        raise ApiKeyMalformed("send one authorization metadata entry, not several")
    scheme, _, token = str(values[0]).strip().partition(" ")
    if scheme.lower() != _BEARER or not token.strip():
        raise ApiKeyMalformed("the authorization metadata must be `Bearer <API key>`")
    return token.strip()


class KeyAuthentication:
    def __init__(self, api_keys: ApiKeys, guard: StoreGuard | None = None) -> None:
        self._keys = api_keys
        self._guard = guard

    async def identify(self, context: grpc.aio.ServicerContext) -> ApiKeyRecord:
        """The caller's key; Unauthenticated if there is no valid one."""
        token = bearer_token(context.invocation_metadata())
        if self._guard is None:
            return await self._keys.authenticate(token)
        self._guard.check_serving()
        try:
            return await self._keys.authenticate(token)
        except ApiKeyInvalid:
            await self._guard.suspect()  # an emptied store forgets every key: say that instead
            raise

    def wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        if handler.unary_unary is None:
            return handler
        behavior = handler.unary_unary

        async def authenticated(raw: Any, context: grpc.aio.ServicerContext) -> Any:
            key = callrecord.current().key = await self.identify(context)
            # Each call runs in its own task, with its own copy of these variables.
            CALLER.set(Caller(key.environment_id, actor_of(key), scope_of(key)))
            ORIGIN.set(origin_of(method, key, context))
            return await behavior(raw, context)

        return grpc.unary_unary_rpc_method_handler(
            authenticated,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
