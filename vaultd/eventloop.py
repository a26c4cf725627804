"""The event loop `vaultd serve` and its workers run on: uvloop's (libuv), not asyncio's own.

grpc.aio, redis-py and the SQLite executor all run on it unchanged; it only makes scheduling,
callbacks and socket I/O cheaper, which is most of what a small RPC costs in Python.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import uvloop

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(main)`, on a uvloop event loop."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)
