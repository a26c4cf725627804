"""Per-API-key KEK counts in the Redis store (the NewKekCounts part of RedisStore).

One hash per environment, under its hash tag (storage/keys.py): API key id -> count, checked
and raised by one Lua script, so writers in any number of processes never pass the limit. The
API key id is a field of that hash, never part of a key name, so it needs no pattern check.
"""

from __future__ import annotations

from vaultd.storage.keys import Kind, key
from vaultd.storage.redis.connection import RedisConnection, available


class RedisKekCounts(RedisConnection):
    """NewKekCounts on Redis."""

    @available
    async def new_keks_of(self, environment_id: str, api_key_id: str) -> int:
        count = await self._redis.hget(key(environment_id, Kind.KEK_COUNTS), api_key_id)
        return 0 if count is None else int(count)

    @available
    async def admit_new_kek(self, environment_id: str, api_key_id: str, limit: int) -> bool:
        if limit < 1:
            raise ValueError("a KEK count limit must be at least 1")
        reply = await self._write(
            self._scripts.admit_new_kek,
            [key(environment_id, Kind.KEK_COUNTS)],
            [api_key_id, limit],
            lambda counted: counted == 1,
        )
        return bool(reply == 1)
