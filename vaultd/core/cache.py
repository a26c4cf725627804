"""A bounded in-memory cache with a TTL, where concurrent misses for one key share one load.

This is what keeps provider (KMS) calls proportional to the number of live KEKs rather than to
traffic: a warm entry answers from memory, and 200 callers missing the same cold entry await
one loader call between them (singleflight). A failed load is not cached at all, so the next
caller tries again at once.

A shared load ends for its own caller's reasons too: when that caller is cancelled, or the load
fails with an error flagged `deadline_reached` (the starting caller's deadline, not the
backend, ended it), the callers waiting on it load again for themselves, within their own
deadlines, instead of taking that answer as theirs.

With `grace_seconds`, an entry outlives its TTL by that much as a fallback: when its reload
fails with an error `serve_stale_on` accepts (a KMS outage, not a refusal), the old value is
served instead. The grace bounds how long an outage is ridden out; `discard` still drops an
entry at once (a revocation).
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
    stale_served: int = 0


@dataclass
class TtlCache(Generic[K, V]):
    """LRU of at most `max_entries`, each living `ttl_seconds`; a TTL of 0 disables caching."""

    ttl_seconds: float
    max_entries: int
    clock: Callable[[], float] = time.monotonic
    grace_seconds: float = 0.0
    serve_stale_on: Callable[[BaseException], bool] = lambda _exc: False
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
        now = self.clock()
        if expires <= now:
            if expires + self.grace_seconds <= now:
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

    def discard_where(self, doomed: Callable[[K], bool]) -> int:
        """Drop every entry whose key `doomed` accepts; how many were dropped."""
        keys = [key for key in self._entries if doomed(key)]
        for key in keys:
            del self._entries[key]
        return len(keys)

    def _stale(self, key: K) -> V | None:
        """The expired value still inside its grace, if any."""
        entry = self._entries.get(key)
        if entry is None or entry[0] + self.grace_seconds <= self.clock():
            return None
        return entry[1]

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
            except Exception as exc:
                if not getattr(exc, "deadline_reached", False):
                    raise
                # The loader's caller ran out of time, not the backend out of answers: this
                # caller may have more, so it tries itself (bounded by its own deadline).
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
            stale = self._stale(key) if self.serve_stale_on(exc) else None
            if stale is not None:
                self.stats.stale_served += 1
                future.set_result(stale)
                return stale
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
