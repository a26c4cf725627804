"""Worker threads for a provider's blocking SDK (boto3, hvac, Azure's sync client).

Each provider instance runs its SDK calls on its own pool, not on asyncio's default executor:
a hung KMS holds a thread per in-flight attempt until the SDK's own socket timeout, even after
the attempt was given up (a thread cannot be cancelled). On the default executor, shared with
the rest of vaultd and sized for the CPU count (6 threads on 2 cores), a handful of hung calls
would stall every other provider and everything else that uses it. Here they stall, at worst,
that provider's spare threads.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")

MAX_WORKERS = 32
"""Enough for the attempts in flight under load plus those a hung KMS holds for its read timeout."""


class BlockingCalls:
    """A provider's own thread pool; `run` awaits a blocking callable on it."""

    def __init__(self, name: str, max_workers: int = MAX_WORKERS) -> None:
        self._pool = ThreadPoolExecutor(max_workers, thread_name_prefix=f"vaultd-{name}")

    async def run(self, call: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        context = contextvars.copy_context()  # as asyncio.to_thread does
        return await loop.run_in_executor(self._pool, context.run, call)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
