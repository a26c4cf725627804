"""Token buckets, one per key: `rate` tokens a second, holding at most `burst`.

A call takes one token; with none left it is refused and told how long until the next token.
Buckets live in process memory, so with N workers (or N hosts) a key may spend up to N times
its rate; the limit guards a process against one noisy key, it is not an accounting quota.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class TokenBuckets(Generic[K]):
    """At most `max_keys` buckets, least recently used first out.

    Forgetting a bucket only refills it early: a bucket left alone for burst/rate seconds is
    full anyway, so with a bound well above the number of active keys nothing changes.
    """

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0 or burst < 1 or max_keys < 1:
            raise ValueError("a token bucket needs rate > 0, burst >= 1 and max_keys >= 1")
        self.rate = rate
        self.burst = burst
        self._max_keys = max_keys
        self._clock = clock
        # key -> (tokens left, when they were counted)
        self._buckets: OrderedDict[K, tuple[float, float]] = OrderedDict()

    def peek(self, key: K) -> float:
        """Like take, but takes nothing: 0.0 while `key` has a token left, else seconds to wait."""
        bucket = self._buckets.get(key)
        if bucket is None:
            return 0.0
        tokens = min(float(self.burst), bucket[0] + (self._clock() - bucket[1]) * self.rate)
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate

    def take(self, key: K) -> float:
        """Take a token for `key`: 0.0 when the call may go ahead, else seconds to wait."""
        now = self._clock()
        bucket = self._buckets.pop(key, None)
        tokens = (
            float(self.burst)
            if bucket is None
            else min(float(self.burst), bucket[0] + (now - bucket[1]) * self.rate)
        )
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.rate
        self._buckets[key] = (tokens, now)
        if len(self._buckets) > self._max_keys:
            self._buckets.popitem(last=False)
        return wait

    def give_back(self, key: K) -> None:
        """Return the token a `take` gave, when the call was then refused for another reason."""
        bucket = self._buckets.get(key)
        if bucket is not None:
            self._buckets[key] = (min(float(self.burst), bucket[0] + 1.0), bucket[1])
