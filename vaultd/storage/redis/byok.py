"""BYOK key records in the Redis store (the ByokKeyStore part of RedisStore).

Under the environment's hash tag (storage/keys.py): a hash of records by id, and a hash from
each match to its id, changed together by Lua scripts so a match is never held twice.
"""

from __future__ import annotations

import re
from datetime import datetime

from vaultd.storage import codec
from vaultd.storage.keys import Kind, check, key
from vaultd.storage.records import ByokKeyRecord
from vaultd.storage.redis.connection import RedisConnection, as_bytes, available

BYOK_KEY_ID = re.compile(r"byok_[0-9A-Z]{26}")


def _keys(environment_id: str) -> list[str]:
    return [key(environment_id, Kind.BYOK), key(environment_id, Kind.BYOK_MATCHES)]


class RedisByokKeys(RedisConnection):
    """ByokKeyStore on Redis."""

    @available
    async def add_byok_key(self, record: ByokKeyRecord) -> ByokKeyRecord | None:
        check(BYOK_KEY_ID, record.id, "byok key id")
        holder = await self._write(
            self._scripts.add_byok_key,
            _keys(record.environment_id),
            [record.id, codec.byok_match(record), codec.encode_byok_key(record)],
            lambda reply: reply is None,
        )
        return None if holder is None else codec.decode_byok_key(as_bytes(holder))

    @available
    async def get_byok_key(self, environment_id: str, byok_key_id: str) -> ByokKeyRecord | None:
        if not BYOK_KEY_ID.fullmatch(byok_key_id):
            return None
        data = await self._redis.hget(key(environment_id, Kind.BYOK), byok_key_id)
        return None if data is None else codec.decode_byok_key(as_bytes(data))

    @available
    async def list_byok_keys(self, environment_id: str) -> list[ByokKeyRecord]:
        records = await self._redis.hvals(key(environment_id, Kind.BYOK))
        return sorted((codec.decode_byok_key(as_bytes(r)) for r in records), key=lambda r: r.id)

    @available
    async def set_byok_verification(
        self, environment_id: str, byok_key_id: str, verified_at: datetime, ok: bool, error: str
    ) -> ByokKeyRecord | None:
        current = await self.get_byok_key(environment_id, byok_key_id)
        if current is None:
            return None
        updated = codec.byok_verified(current, verified_at, ok, error)
        done = await self._write(
            self._scripts.replace_byok_key,
            _keys(environment_id),
            [byok_key_id, codec.encode_byok_key(updated)],
        )
        return updated if done else None

    @available
    async def delete_byok_key(self, environment_id: str, byok_key_id: str) -> ByokKeyRecord | None:
        current = await self.get_byok_key(environment_id, byok_key_id)
        if current is None:
            return None
        removed = await self._write(
            self._scripts.delete_byok_key,
            _keys(environment_id),
            [byok_key_id, codec.byok_match(current)],
        )
        return None if removed is None else codec.decode_byok_key(as_bytes(removed))
