"""A bounded in-memory cache with a TTL, where concurrent misses for one key share one load.

This is what keeps provider (KMS) calls proportional to the number of live KEKs rather than to
traffic: a warm entry answers from memory, and 200 callers missing the same cold entry await
one loader call between them (singleflight). A failed load is not cached at all, so the next
caller tries again at once.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


@dataclass(slots=True)
class CacheStats:
    hits: int = 0
    misses: int = 0
    loads: int = 0


@dataclass
class TtlCache(Generic[K, V]):
    """LRU of at most `max_entries`, each living `ttl_seconds`; a TTL of 0 disables caching."""

    ttl_seconds: float
    max_entries: int
    clock: Callable[[], float] = time.monotonic
    stats: CacheStats = field(default_factory=CacheStats)
    _entries: OrderedDict[K, tuple[float, V]] = field(default_factory=OrderedDict)
    _inflight: dict[K, asyncio.Future[V]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: K) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, value = entry
        if expires <= self.clock():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        if self.ttl_seconds <= 0 or self.max_entries <= 0:
            return
        self._entries[key] = (self.clock() + self.ttl_seconds, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def discard(self, key: K) -> None:
        self._entries.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()

    async def get_or_load(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        value = self.get(key)
        if value is not None:
            self.stats.hits += 1
            return value
        self.stats.misses += 1
        pending = self._inflight.get(key)
        if pending is not None:
            try:
                return await asyncio.shield(pending)
            except asyncio.CancelledError:
                if not pending.cancelled():
                    raise  # this caller itself was cancelled
                # The loader's own caller gave up; load on behalf of this one instead.
                return await self.get_or_load(key, load)
        future: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            self.stats.loads += 1
            value = await load()
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as exc:
            future.set_exception(exc)
            # Waiters re-raise it; mark it retrieved so an unwaited future logs nothing.
            future.exception()
            raise
        else:
            self.put(key, value)
            future.set_result(value)
            return value
        finally:
            del self._inflight[key]
