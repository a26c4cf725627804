"""API keys in the Redis store (the ApiKeyStore part of RedisStore).

Three hashes outside every environment: records by id, ids by secret hash, revocation times
by id (a revocation is written once, with HSETNX, so the first time stays).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from vaultd.storage import codec
from vaultd.storage.errors import StoreError
from vaultd.storage.keys import API_KEY_ID, ENVIRONMENT_ID, SECRET_HASH, AuthKind, auth_key, check
from vaultd.storage.records import ApiKeyRecord
from vaultd.storage.redis.connection import RedisConnection, as_bytes, available

_API_KEY_KEYS = [
    auth_key(AuthKind.API_KEYS),
    auth_key(AuthKind.API_KEY_HASHES),
    auth_key(AuthKind.API_KEYS_REVOKED),
]


class RedisApiKeys(RedisConnection):
    """ApiKeyStore on Redis."""

    @available
    async def add_api_key(self, record: ApiKeyRecord, *, only_if_none: bool = False) -> bool:
        _check_api_key(record)
        reply = await self._write(
            self._scripts.add_api_key,
            keys=_API_KEY_KEYS[:2],
            args=[record.id, record.secret_hash, codec.encode_api_key(record), int(only_if_none)],
            changed=lambda reply: reply == b"ok",
        )
        if reply == b"taken":
            raise StoreError("api key id or secret already in use")
        return bool(reply == b"ok")

    @available
    async def get_api_key(self, key_id: str) -> ApiKeyRecord | None:
        check(API_KEY_ID, key_id, "api key id")
        return _api_key(await self._scripts.get_api_key(keys=_API_KEY_KEYS, args=["id", key_id]))

    @available
    async def find_api_key(self, secret_hash: str) -> ApiKeyRecord | None:
        check(SECRET_HASH, secret_hash, "secret hash")
        return _api_key(
            await self._scripts.get_api_key(keys=_API_KEY_KEYS, args=["hash", secret_hash])
        )

    @available
    async def list_api_keys(self) -> list[ApiKeyRecord]:
        records, revocations = await self._scripts.list_api_keys(
            keys=[_API_KEY_KEYS[0], _API_KEY_KEYS[2]]
        )
        revoked = dict(zip(revocations[::2], revocations[1::2], strict=True))
        keys = [codec.decode_api_key(as_bytes(r), None) for r in records]
        return sorted((_revoked(k, revoked.get(k.id.encode())) for k in keys), key=lambda k: k.id)

    @available
    async def revoke_api_key(self, key_id: str, revoked_at: datetime) -> ApiKeyRecord | None:
        check(API_KEY_ID, key_id, "api key id")
        reply = await self._write(
            self._scripts.revoke_api_key,
            keys=[_API_KEY_KEYS[0], _API_KEY_KEYS[2]],
            args=[key_id, codec.to_micros(revoked_at)],
            changed=lambda reply: reply is not None,
        )
        return _api_key(reply)


def _check_api_key(record: ApiKeyRecord) -> None:
    check(API_KEY_ID, record.id, "api key id")
    check(ENVIRONMENT_ID, record.environment_id, "environment id")
    check(SECRET_HASH, record.secret_hash, "secret hash")


def _api_key(reply: list[bytes] | None) -> ApiKeyRecord | None:
    """The record a get or revoke script returned, with its revocation time, or None."""
    if reply is None:
        return None
    record, revoked_at = reply
    return _revoked(codec.decode_api_key(as_bytes(record), None), revoked_at or None)


def _revoked(record: ApiKeyRecord, revoked_at: bytes | None) -> ApiKeyRecord:
    if revoked_at is None:
        return record
    return replace(record, revoked_at=codec.from_micros(int(revoked_at)))
