"""The Redis store (store.py): one module per aggregate, their Lua scripts in scripts.py."""

from __future__ import annotations

from vaultd.storage.redis.connection import DEFAULT_TIMEOUT_SECONDS
from vaultd.storage.redis.store import RedisStore

__all__ = ["DEFAULT_TIMEOUT_SECONDS", "RedisStore"]
