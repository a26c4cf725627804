"""A TCP proxy that holds back what the client sends, to make a service behind it slow.

Put between vaultd and a KMS stand-in, it delivers every chunk vaultd sends `delay` seconds
after it arrived (in order), so requests reach the stand-in late and answers come back late, the
way a slow KMS or link behaves, without touching the stand-in. Answers are passed straight back.
`delay` may change at any time; it applies to chunks that arrive after that.
"""

from __future__ import annotations

import asyncio
import contextlib

CHUNK_BYTES = 64 * 1024
CLOSE_SECONDS = 5.0


class SlowProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.delay = 0.0
        self.port = 0
        self.pending = 0
        """Chunks received and not yet passed on, over every connection."""
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._transports: set[asyncio.BaseTransport] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def drained(self, within: float) -> None:
        """Wait (bounded) until every chunk received so far has been passed on. Chunks leave in
        order, so one held back by a long delay also holds back those after it."""
        for _ in range(round(within / 0.05)):
            if not self.pending:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"the proxy still holds {self.pending} chunks after {within}s")

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        # Cut every connection (not cancel the handlers): each pump then ends on its own.
        for transport in self._transports:
            transport.abort()  # type: ignore[attr-defined]
        if self._connections:
            await asyncio.wait(self._connections, timeout=CLOSE_SECONDS)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        self._transports.add(writer.transport)
        try:
            try:
                upstream = await asyncio.open_connection("127.0.0.1", self.upstream_port)
            except OSError:
                return  # the stand-in is down: the client sees its connection close
            up_reader, up_writer = upstream
            self._transports.add(up_writer.transport)
            await asyncio.gather(
                self._pump(reader, up_writer, delayed=True),
                self._pump(up_reader, writer, delayed=False),
            )
        finally:
            writer.close()
            self._connections.discard(task)
            self._transports.discard(writer.transport)

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, delayed: bool
    ) -> None:
        """Copy until end of stream, each chunk `delay` after it arrived, then close."""
        loop = asyncio.get_running_loop()
        due: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        counts = {"received": 0, "passed on": 0}

        async def deliver() -> None:
            # Ends at the empty chunk that marks the end of the stream.
            while chunk := (item := await due.get())[1]:
                await asyncio.sleep(max(0.0, item[0] - loop.time()))
                writer.write(chunk)
                counts["passed on"] += 1
                self.pending -= 1
                await writer.drain()

        delivering = asyncio.create_task(deliver())
        try:
            while chunk := await reader.read(CHUNK_BYTES):
                counts["received"] += 1
                self.pending += 1
                due.put_nowait((loop.time() + (self.delay if delayed else 0.0), chunk))
            due.put_nowait((loop.time(), b""))
            await delivering
        except (ConnectionError, OSError):
            pass  # either side went away; closing the other end below passes that on
        finally:
            delivering.cancel()
            # What this closed connection will never pass on is no longer pending.
            self.pending -= counts["received"] - counts["passed on"]
            with contextlib.suppress(ConnectionError, OSError):
                writer.close()
