"""Auto-pipelining: the Redis commands of concurrent calls sent together, one round trip.

Commands queued while a pipeline is in flight go out together in the next one, each caller
getting its own reply or error. So under load an object read and the audit events of other
calls share a round trip, and a call costs about one round trip in all; a lone call pays one
round trip, as without it. No timer: a pipeline never waits for company.

One pipeline in flight at a time, so commands reach Redis in the order they were queued. A
pipeline that fails as a whole (the connection dropped) fails every command in it: their
outcome is unknown, as for any command whose reply was lost.

Scripts go as EVALSHA; a server that has not loaded one (a restart, a failover) answers
NOSCRIPT for that command alone, and `script` then runs it through redis-py's Script, which
loads it and retries.

On one server or a Sentinel-managed master the batches go down one connection taken from the
client's pool and held while it works, written and read directly: redis-py's Pipeline and pool
cost more CPU per batch than the round trip itself (a pool checkout, a retry wrapper, command
stack bookkeeping). A connection that failed mid-batch is closed, and the next batch
reconnects; one the server closed while idle is noticed before it is used. A Cluster routes
each command by its slot, so there the batches go through redis-py's cluster pipeline.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from hiredis import pack_command
from redis import exceptions as redis_errors
from redis.asyncio import Redis, RedisCluster
from redis.asyncio.connection import AbstractConnection, ConnectionPool
from redis.commands.core import AsyncScript

RedisClient = Redis | RedisCluster
Command = tuple[Any, ...]


class AutoPipeline:
    def __init__(self, client: RedisClient) -> None:
        self._client = client
        self._pool: ConnectionPool | None = (
            None if isinstance(client, RedisCluster) else client.connection_pool
        )
        self._connection: AbstractConnection | None = None
        self._queue: list[tuple[Command, asyncio.Future[Any]]] = []
        self._sender: asyncio.Task[None] | None = None

    async def execute(self, *command: Any) -> Any:
        """One command's reply (as the server sent it), sent with whatever else is queued."""
        future = asyncio.get_running_loop().create_future()
        self._enqueue(command, future)
        return await future

    async def execute_many(self, commands: Sequence[Command]) -> list[Any]:
        """The replies of `commands`, which go out in order in one pipeline."""
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in commands]
        for command, future in zip(commands, futures, strict=True):
            self._enqueue(command, future)
        # gather, not one await after another: when the batch fails, every future's error is
        # retrieved (asyncio reports the others otherwise), and a cancelled caller's are cancelled.
        return list(await asyncio.gather(*futures))

    def _enqueue(self, command: Command, future: asyncio.Future[Any]) -> None:
        self._queue.append((command, future))
        if self._sender is None:
            self._sender = asyncio.create_task(self._send())

    async def script(self, script: AsyncScript, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        try:
            return await self.execute("EVALSHA", script.sha, len(keys), *keys, *args)
        except redis_errors.NoScriptError:
            return await script(keys=list(keys), args=list(args))

    async def _send(self) -> None:
        try:
            while self._queue:
                # One turn of the loop first: calls already runnable queue their commands too.
                await asyncio.sleep(0)
                batch, self._queue = self._queue, []
                try:
                    replies = await self._round_trip([command for command, _ in batch])
                except Exception as exc:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                except BaseException:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(
                                redis_errors.ConnectionError("auto-pipeline stopped")
                            )
                    raise
                for (_, future), reply in zip(batch, replies, strict=True):
                    if future.done():  # its caller was cancelled
                        continue
                    if isinstance(reply, Exception):
                        future.set_exception(reply)
                    else:
                        future.set_result(reply)
        finally:
            self._sender = None
            _fail(self._queue)
            self._queue.clear()

    async def _round_trip(self, commands: list[Command]) -> list[Any]:
        """Each command's reply, or the error the server answered it with, in order."""
        if self._pool is None:
            pipe = self._client.pipeline(transaction=False)
            for command in commands:
                pipe.execute_command(*command)
            return list(await pipe.execute(raise_on_error=False))
        connection = await self._held_connection(self._pool)
        try:
            # hiredis's C packer (redis[hiredis] is a dependency); redis-py's is Python.
            await connection.send_packed_command(b"".join(map(pack_command, commands)))
            replies: list[Any] = []
            for _ in commands:
                try:
                    replies.append(await connection.read_response())
                except redis_errors.ResponseError as exc:  # this command's answer; in step
                    replies.append(exc)
            return replies
        except BaseException:
            # Replies may still be on their way: out of step, so the next batch reconnects.
            await connection.disconnect()
            raise

    async def _held_connection(self, pool: ConnectionPool) -> AbstractConnection:
        connection = self._connection
        if connection is None:
            connection = self._connection = await pool.get_connection()  # type: ignore[no-untyped-call]
        elif not connection.is_connected or await _stale(connection):
            # Closed by the server while idle (its `timeout`), or a failover's disconnect.
            await connection.disconnect()
            await connection.connect()  # type: ignore[no-untyped-call]
        return connection


async def _stale(connection: AbstractConnection) -> bool:
    """Bytes nobody asked for, or the end of the stream: not a connection to write to."""
    try:
        return bool(await connection.can_read())
    except (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError):
        return True


def _fail(batch: Sequence[tuple[Command, asyncio.Future[Any]]]) -> None:
    """Cancelled (the loop is closing): nobody may wait forever."""
    for _, future in batch:
        if not future.done():
            future.set_exception(redis_errors.ConnectionError("auto-pipeline stopped"))
