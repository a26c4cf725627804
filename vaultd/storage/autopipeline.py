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
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from redis import exceptions as redis_errors
from redis.asyncio import Redis, RedisCluster
from redis.commands.core import AsyncScript

RedisClient = Redis | RedisCluster
Command = tuple[Any, ...]


class AutoPipeline:
    def __init__(self, client: RedisClient) -> None:
        self._client = client
        self._queue: list[tuple[Command, asyncio.Future[Any]]] = []
        self._sender: asyncio.Task[None] | None = None

    async def execute(self, *command: Any) -> Any:
        """One command's reply (as redis-py parses it), sent with whatever else is queued."""
        (reply,) = await self.execute_many([command])
        return reply

    async def execute_many(self, commands: Sequence[Command]) -> list[Any]:
        """The replies of `commands`, which go out in order in one pipeline."""
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in commands]
        self._queue.extend(zip(commands, futures, strict=True))
        if self._sender is None:
            self._sender = asyncio.create_task(self._send())
        return list(await asyncio.gather(*futures))

    async def script(self, script: AsyncScript, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        try:
            return await self.execute("EVALSHA", script.sha, len(keys), *keys, *args)
        except redis_errors.NoScriptError:
            return await script(keys=list(keys), args=list(args))

    async def _send(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                pipe = self._client.pipeline(transaction=False)
                for command, _ in batch:
                    pipe.execute_command(*command)
                try:
                    replies = await pipe.execute(raise_on_error=False)
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


def _fail(batch: Sequence[tuple[Command, asyncio.Future[Any]]]) -> None:
    """Cancelled (the loop is closing): nobody may wait forever."""
    for _, future in batch:
        if not future.done():
            future.set_exception(redis_errors.ConnectionError("auto-pipeline stopped"))
