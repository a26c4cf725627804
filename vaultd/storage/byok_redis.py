"""BYOK key records in the Redis store (mixed into RedisStore).

Under the environment's hash tag (storage/keys.py): a hash of records by id, and a hash from
each match to its id, changed together by Lua scripts so a match is never held twice.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime
from typing import Any, ParamSpec, TypeVar

from vaultd.storage import byok
from vaultd.storage.keys import Kind, check, key

P = ParamSpec("P")
T = TypeVar("T")

BYOK_KEY_ID = re.compile(r"byok_[0-9A-Z]{26}")

_ADD = """
local holder = redis.call('HGET', KEYS[2], ARGV[2])
if holder then return redis.call('HGET', KEYS[1], holder) end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[1])
return false
"""
_REPLACE = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""
_DELETE = """
local record = redis.call('HGET', KEYS[1], ARGV[1])
if not record then return false end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[2])
return record
"""


def _available(method: Callable[P, Awaitable[T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    """RedisStore's own guard (Redis errors -> StoreUnavailable), looked up at call time:
    redis_store imports this module."""

    @functools.wraps(method)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        from vaultd.storage.redis_store import _available as guard

        return await guard(method)(*args, **kwargs)

    return wrapper


def _keys(environment_id: str) -> list[str]:
    return [key(environment_id, Kind.BYOK), key(environment_id, Kind.BYOK_MATCHES)]


class RedisByokKeys:
    """ByokKeyStore on RedisStore's client and its replica-confirmed writes (`_write`)."""

    _redis: Any
    _write: Callable[..., Awaitable[Any]]

    def _byok_script(self, name: str, source: str) -> Any:
        attr = f"_byok_script_{name}"
        script = getattr(self, attr, None)
        if script is None:
            script = self._redis.register_script(source)
            setattr(self, attr, script)
        return script

    @_available
    async def add_byok_key(self, record: byok.ByokKeyRecord) -> byok.ByokKeyRecord | None:
        check(BYOK_KEY_ID, record.id, "byok key id")
        holder = await self._write(
            self._byok_script("add", _ADD),
            _keys(record.environment_id),
            [record.id, byok.match_of(record), byok.encode(record)],
            lambda reply: reply is None,
        )
        return None if holder is None else byok.decode(holder)

    @_available
    async def get_byok_key(
        self, environment_id: str, byok_key_id: str
    ) -> byok.ByokKeyRecord | None:
        if not BYOK_KEY_ID.fullmatch(byok_key_id):
            return None
        data = await self._redis.hget(key(environment_id, Kind.BYOK), byok_key_id)
        return None if data is None else byok.decode(data)

    @_available
    async def list_byok_keys(self, environment_id: str) -> list[byok.ByokKeyRecord]:
        records = await self._redis.hvals(key(environment_id, Kind.BYOK))
        return sorted((byok.decode(r) for r in records), key=lambda r: r.id)

    @_available
    async def set_byok_verification(
        self, environment_id: str, byok_key_id: str, verified_at: datetime, ok: bool, error: str
    ) -> byok.ByokKeyRecord | None:
        current = await self.get_byok_key(environment_id, byok_key_id)
        if current is None:
            return None
        updated = byok.verified(current, verified_at, ok, error)
        done = await self._write(
            self._byok_script("replace", _REPLACE),
            _keys(environment_id),
            [byok_key_id, byok.encode(updated)],
        )
        return updated if done else None

    @_available
    async def delete_byok_key(
        self, environment_id: str, byok_key_id: str
    ) -> byok.ByokKeyRecord | None:
        current = await self.get_byok_key(environment_id, byok_key_id)
        if current is None:
            return None
        removed = await self._write(
            self._byok_script("delete", _DELETE),
            _keys(environment_id),
            [byok_key_id, byok.match_of(current)],
        )
        return None if removed is None else byok.decode(removed)
