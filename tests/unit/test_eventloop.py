"""`vaultd serve` and its workers run on uvloop."""

from __future__ import annotations

import asyncio

import uvloop

from vaultd import eventloop


def test_run_uses_a_uvloop_event_loop() -> None:
    async def running_loop() -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    assert isinstance(eventloop.run(running_loop()), uvloop.Loop)
