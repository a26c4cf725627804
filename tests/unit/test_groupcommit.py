"""Group commit: concurrent items share a write, each caller learns how its own write went."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from vaultd.core.groupcommit import GroupCommit


class Gate:
    """A write that records its batches and waits to be let through, one batch at a time."""

    def __init__(self, fail_batch: int | None = None) -> None:
        self.batches: list[list[int]] = []
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.fail_batch = fail_batch

    async def write(self, items: Sequence[int]) -> None:
        self.batches.append(list(items))
        self.started.set()
        await self.release.wait()
        if len(self.batches) - 1 == self.fail_batch:
            raise OSError("disk full")


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_items_added_during_a_write_share_the_next_one_in_order() -> None:
    gate = Gate()
    commits: GroupCommit[int] = GroupCommit(gate.write)
    first = asyncio.create_task(commits.add(0))
    await gate.started.wait()  # the first write holds item 0 alone
    rest = [asyncio.create_task(commits.add(n)) for n in range(1, 6)]
    await settle()
    assert gate.batches == [[0]]
    assert not any(t.done() for t in [first, *rest])  # nobody returns before its write
    gate.release.set()
    await asyncio.gather(first, *rest)
    assert gate.batches == [[0], [1, 2, 3, 4, 5]]


async def test_a_batch_never_exceeds_its_maximum() -> None:
    gate = Gate()
    gate.release.set()
    commits: GroupCommit[int] = GroupCommit(gate.write, max_batch=2)
    await asyncio.gather(*(commits.add(n) for n in range(5)))
    assert gate.batches == [[0, 1], [2, 3], [4]]


async def test_a_failed_write_fails_exactly_the_callers_of_its_batch() -> None:
    gate = Gate(fail_batch=1)
    commits: GroupCommit[int] = GroupCommit(gate.write)
    first = asyncio.create_task(commits.add(0))
    await gate.started.wait()
    second = [asyncio.create_task(commits.add(n)) for n in (1, 2)]
    await settle()
    gate.release.set()
    await first  # its batch was written
    for task in second:
        with pytest.raises(OSError, match="disk full"):
            await task
    # The writer goes on with later items.
    await commits.add(3)
    assert gate.batches == [[0], [1, 2], [3]]


async def test_a_cancelled_caller_s_item_is_still_written_and_flush_waits_for_it() -> None:
    gate = Gate()
    commits: GroupCommit[int] = GroupCommit(gate.write)
    caller = asyncio.create_task(commits.add(7))
    await gate.started.wait()
    caller.cancel()
    flushed = asyncio.create_task(commits.flush())
    await settle()
    assert not flushed.done()  # the write is still in flight
    gate.release.set()
    await flushed
    assert gate.batches == [[7]]
    assert caller.cancelled()


def test_a_batch_holds_at_least_one_item() -> None:
    with pytest.raises(ValueError):
        GroupCommit(Gate().write, max_batch=0)
