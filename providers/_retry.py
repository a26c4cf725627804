"""Retrying a provider call on transient errors, with jittered exponential backoff.

The caller's deadline bounds the whole thing: the API layer runs each RPC under
`asyncio.timeout(<time the client has left>)`, so a retry loop is cancelled the moment the
client would stop waiting. The attempt cap keeps a flapping KMS from multiplying load.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from providers import ProviderUnavailableError

T = TypeVar("T")

MAX_ATTEMPTS = 4
BASE_DELAY_SECONDS = 0.05
MAX_DELAY_SECONDS = 1.0


async def with_retries(
    call: Callable[[], Awaitable[T]],
    *,
    attempts: int = MAX_ATTEMPTS,
    base_delay: float = BASE_DELAY_SECONDS,
) -> T:
    """Run `call`, retrying ProviderUnavailableError up to `attempts` times in all."""
    for attempt in range(1, attempts + 1):
        try:
            return await call()
        except ProviderUnavailableError:
            if attempt == attempts:
                raise
            # Full jitter: spreads retries from many callers after a shared outage.
            ceiling = min(MAX_DELAY_SECONDS, base_delay * 2 ** (attempt - 1))
            await asyncio.sleep(random.uniform(0, ceiling))
    raise AssertionError("unreachable")
