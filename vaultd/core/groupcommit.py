"""Group commit: the items of concurrent callers written together, each caller awaiting its own.

A caller adds an item and waits until the write holding it has finished; it gets that write's
exception if it failed, so nothing is reported stored that was not. While one write is in
flight, items added meanwhile gather, and the next write takes them all (up to `max_batch`): a
lone caller pays one write, as without batching, and under load the writes per item fall with
the load. There is no timer: a batch never waits for company, only for the write before it.

One writer task at a time per GroupCommit, started on demand, so writes keep the order in which
items were added.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")

Write = Callable[[Sequence[T]], Awaitable[None]]


class GroupCommit(Generic[T]):
    def __init__(self, write: Write[T], max_batch: int = 256) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._write = write
        self._max_batch = max_batch
        self._items: list[T] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._writer: asyncio.Task[None] | None = None

    async def add(self, item: T) -> None:
        """Return once a write holding `item` has succeeded; raise what that write raised.

        Cancelling the caller does not withdraw the item: it is written with its batch.
        """
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._items.append(item)
        self._waiters.append(waiter)
        if self._writer is None:
            self._writer = asyncio.create_task(self._drain())
        await waiter

    async def flush(self) -> None:
        """Wait until every item added so far has been written (or its write has failed)."""
        while self._writer is not None:
            await asyncio.shield(self._writer)

    async def _drain(self) -> None:
        try:
            while self._items:
                count = min(len(self._items), self._max_batch)
                items, self._items = self._items[:count], self._items[count:]
                waiters, self._waiters = self._waiters[:count], self._waiters[count:]
                error: BaseException | None = None
                try:
                    await self._write(items)
                except Exception as exc:
                    error = exc
                except BaseException:
                    _fail(waiters, RuntimeError("group commit stopped while writing"))
                    raise
                for waiter in waiters:
                    if waiter.done():  # its caller was cancelled; the item was written anyway
                        continue
                    if error is None:
                        waiter.set_result(None)
                    else:
                        waiter.set_exception(error)
        finally:
            self._writer = None
            # Cancelled (the loop is closing): nobody may wait forever.
            _fail(self._waiters, RuntimeError("group commit stopped before writing"))
            self._items.clear()
            self._waiters.clear()


def _fail(waiters: Sequence[asyncio.Future[None]], error: BaseException) -> None:
    for waiter in waiters:
        if not waiter.done():
            waiter.set_exception(error)
