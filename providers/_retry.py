"""Retrying a provider call on transient errors: bounded attempts, bounded by the deadline,
and a circuit breaker per key URI.

- Each attempt gets at most ATTEMPT_TIMEOUT_SECONDS and at most what is left of the caller's
  deadline (providers/deadline.py); an attempt that runs out is an outage for that attempt
  (ProviderUnavailableError), never a hang, and after MAX_TIMED_OUT_ATTEMPTS of them the call
  gives up. The SDKs' own timeouts stay as a backstop for their worker threads.
- Retries use jittered exponential backoff, at most MAX_ATTEMPTS attempts in all, and only while
  a backoff plus a useful attempt still fits in the deadline: the caller gets
  ProviderUnavailableError (with retry_after) in time to answer, not after its deadline.
- A circuit breaker per key URI (Breakers) stops hammering a KMS that keeps failing: after
  BREAKER_THRESHOLD failed attempts in a row (9) it opens, and calls for that key fail at once
  with retry_after until BREAKER_COOL_DOWN_SECONDS pass; then one probe call goes through,
  which closes it on success or reopens it on failure. Only outages count: a refusal
  (KeyUnavailableError) is the KMS answering, so it closes the breaker, and a revocation is
  always seen as soon as the KMS is asked.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from providers import KeyUnavailableError, ProviderUnavailableError
from providers.deadline import remaining

T = TypeVar("T")

MAX_ATTEMPTS = 4
BASE_DELAY_SECONDS = 0.05
MAX_DELAY_SECONDS = 1.0
ATTEMPT_TIMEOUT_SECONDS = 5.0
"""A KMS answers a wrap in tens of milliseconds; five seconds (the SDKs' read timeout too) is a
hung one, not a slow one."""
MAX_TIMED_OUT_ATTEMPTS = 2
"""Attempts that ran out of time before the call gives up: a KMS that hung twice in a row will
not answer the third time in time to matter, and each try holds a worker thread."""
MIN_USEFUL_ATTEMPT_SECONDS = 0.05
"""No attempt is started with less than this left: it could not succeed, only waste a call."""
RETRY_AFTER_SECONDS = 1.0
"""The retry hint after retries ran out with the breaker still closed."""
BREAKER_THRESHOLD = 2 * MAX_ATTEMPTS + 1
"""Failed attempts in a row that open a key's breaker: more than two callers' full retry
sequences, so a blip that fails a call or two never opens it, while a real outage opens it
within a few calls."""
BREAKER_COOL_DOWN_SECONDS = 2.0


@dataclass(slots=True)
class _Breaker:
    failures: int = 0
    open_until: float = 0.0
    probing: bool = False


class Breakers:
    """One circuit breaker per key URI; each provider instance holds one Breakers.

    Used only from the event loop thread, so it needs no lock.
    """

    def __init__(
        self,
        *,
        threshold: int = BREAKER_THRESHOLD,
        cool_down: float = BREAKER_COOL_DOWN_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._threshold = threshold
        self._cool_down = cool_down
        self._clock = clock
        self._by_key: dict[str, _Breaker] = {}

    def before_attempt(self, key_uri: str) -> None:
        """Raise ProviderUnavailableError if calls for this key are paused."""
        breaker = self._by_key.get(key_uri)
        if breaker is None or breaker.failures < self._threshold:
            return
        now = self._clock()
        if now < breaker.open_until or breaker.probing:
            wait = max(breaker.open_until - now, 0.0) or self._cool_down
            raise ProviderUnavailableError(
                f"{key_uri}: calls paused after {breaker.failures} failures in a row",
                retry_after=wait,
            )
        breaker.probing = True  # half open: this attempt is the one probe

    def succeeded(self, key_uri: str) -> None:
        """The KMS answered (a result or a refusal): the breaker closes."""
        self._by_key.pop(key_uri, None)

    def failed(self, key_uri: str) -> float | None:
        """An outage for this attempt; the retry hint if the breaker is now open."""
        breaker = self._by_key.setdefault(key_uri, _Breaker())
        breaker.failures += 1
        breaker.probing = False
        if breaker.failures >= self._threshold:
            breaker.open_until = self._clock() + self._cool_down
            return self._cool_down
        return None

    def release_probe(self, key_uri: str) -> None:
        """A probe attempt ended without an answer either way (cancelled): let another try."""
        breaker = self._by_key.get(key_uri)
        if breaker is not None:
            breaker.probing = False

    def is_open(self, key_uri: str) -> bool:
        breaker = self._by_key.get(key_uri)
        return breaker is not None and breaker.failures >= self._threshold


async def with_retries(
    call: Callable[[], Awaitable[T]],
    *,
    attempts: int = MAX_ATTEMPTS,
    base_delay: float = BASE_DELAY_SECONDS,
    attempt_timeout: float = ATTEMPT_TIMEOUT_SECONDS,
    key_uri: str = "",
    breakers: Breakers | None = None,
) -> T:
    """Run `call`, retrying ProviderUnavailableError up to `attempts` times in all, inside the
    caller's deadline; with `breakers`, through the breaker of `key_uri`."""
    last: ProviderUnavailableError | None = None
    timed_out = 0
    by_deadline = False
    for attempt in range(1, attempts + 1):
        left = remaining()
        if left is not None and left < MIN_USEFUL_ATTEMPT_SECONDS:
            by_deadline = True
            break
        if breakers is not None:
            breakers.before_attempt(key_uri)
        cut_by_deadline = left is not None and left < attempt_timeout
        timeout = attempt_timeout if left is None else min(attempt_timeout, left)
        try:
            async with asyncio.timeout(timeout):
                result = await call()
        except TimeoutError:
            timed_out += 1
            by_deadline = cut_by_deadline
            last = ProviderUnavailableError(f"{key_uri}: no answer within {timeout:.2f}s")
        except ProviderUnavailableError as exc:
            last = exc
        except KeyUnavailableError:
            if breakers is not None:
                breakers.succeeded(key_uri)
            raise
        except BaseException:
            if breakers is not None:
                breakers.release_probe(key_uri)
            raise
        else:
            if breakers is not None:
                breakers.succeeded(key_uri)
            return result
        retry_after = breakers.failed(key_uri) if breakers is not None else None
        if retry_after is not None:
            last.retry_after = retry_after
            break
        if attempt == attempts or timed_out >= MAX_TIMED_OUT_ATTEMPTS:
            break
        # Full jitter: spreads retries from many callers after a shared outage.
        delay = random.uniform(0, min(MAX_DELAY_SECONDS, base_delay * 2 ** (attempt - 1)))
        left = remaining()
        if left is not None and left < delay + MIN_USEFUL_ATTEMPT_SECONDS:
            by_deadline = True
            break  # no room for another attempt: answer now
        await asyncio.sleep(delay)
    if last is None:
        last = ProviderUnavailableError(f"{key_uri}: no time left for a provider call")
    if last.retry_after is None:
        last.retry_after = RETRY_AFTER_SECONDS
    last.deadline_reached = by_deadline
    raise last
