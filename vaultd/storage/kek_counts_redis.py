"""Per-API-key KEK counts in the Redis store (mixed into RedisStore).

One hash per environment, under its hash tag (storage/keys.py): API key id -> count, checked
and raised by one Lua script, so writers in any number of processes never pass the limit. The
API key id is a field of that hash, never part of a key name, so it needs no pattern check.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from vaultd.storage.byok_redis import _available
from vaultd.storage.keys import Kind, key

# KEYS[1] the environment's count hash; ARGV[1] API key id, ARGV[2] the limit.
# 1 when counted, 0 when the limit is reached.
_ADMIT = """
local n = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if n >= tonumber(ARGV[2]) then return 0 end
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
return 1
"""


class RedisKekCounts:
    """NewKekCounts on RedisStore's client and its replica-confirmed writes (`_write`)."""

    _redis: Any
    _write: Callable[..., Awaitable[Any]]
    _kek_counts_admit: Any = None

    @_available
    async def new_keks_of(self, environment_id: str, api_key_id: str) -> int:
        count = await self._redis.hget(key(environment_id, Kind.KEK_COUNTS), api_key_id)
        return 0 if count is None else int(count)

    @_available
    async def admit_new_kek(self, environment_id: str, api_key_id: str, limit: int) -> bool:
        if limit < 1:
            raise ValueError("a KEK count limit must be at least 1")
        if self._kek_counts_admit is None:
            self._kek_counts_admit = self._redis.register_script(_ADMIT)
        reply = await self._write(
            self._kek_counts_admit,
            [key(environment_id, Kind.KEK_COUNTS)],
            [api_key_id, limit],
            lambda counted: counted == 1,
        )
        return bool(reply == 1)
