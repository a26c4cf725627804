"""What a Redis deployment promises for an acknowledged write, read from its primaries' settings.

Redis acknowledges a write once it is in memory; whether it survives a restart depends on
persistence, which is each server's own setting (docs/OPERATIONS.md):

- AOF (`appendonly yes`) logs every write before the reply; `appendfsync always` syncs the log to
  disk before the reply too, `everysec` once a second, `no` when the OS decides. Killing the Redis
  process loses nothing with any of them; losing the machine loses up to a second (everysec) or
  whatever the OS had not written (no).
- RDB snapshots (`save ...`) alone lose every write since the last snapshot on a crash.
- Neither: a restart comes back empty.

So a store is durable when every primary logs to an AOF. Replication (`wait_replicas`) adds a
copy on another server but no persistence: a primary without it that restarts empty before a
failover makes its replicas empty too.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from redis import exceptions as redis_errors
from redis.asyncio import Redis, RedisCluster

from vaultd.storage.records import Durability

RedisClient = Redis | RedisCluster


@dataclass(frozen=True, slots=True)
class NodePersistence:
    """One primary's persistence settings; `appendonly` None when CONFIG GET was refused."""

    node: str
    appendonly: bool | None
    appendfsync: str = ""
    save: str = ""

    @property
    def durable(self) -> bool | None:
        return self.appendonly

    def describe(self) -> str:
        if self.appendonly is None:
            return "persistence unknown (CONFIG GET refused)"
        if self.appendonly:
            return f"AOF appendfsync {self.appendfsync}" + (" + RDB" if self.save else "")
        if self.save:
            return "RDB snapshots only: a crash loses what came after the last snapshot"
        return "no persistence: a restart loses everything"


async def read_persistence(client: RedisClient) -> list[NodePersistence]:
    """The persistence settings of every primary the client writes to."""
    if isinstance(client, RedisCluster):
        await client.initialize()
        return [
            await _node(node.name, functools.partial(client.config_get, target_nodes=node))
            for node in client.get_primaries()
        ]
    kwargs = client.get_connection_kwargs()  # type: ignore[no-untyped-call]
    name = f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}"
    return [await _node(name, client.config_get)]


ConfigGet = Callable[[str], Awaitable[Mapping[Any, Any]]]


async def _node(name: str, config_get: ConfigGet) -> NodePersistence:
    try:
        settings: dict[str, str] = {}
        for parameter in ("appendonly", "appendfsync", "save"):
            reply = await config_get(parameter)
            settings.update({_text(k): _text(v) for k, v in reply.items()})
    except redis_errors.ResponseError:
        # Managed services rename or forbid CONFIG; they document their own durability.
        return NodePersistence(name, None)
    return NodePersistence(
        name,
        settings.get("appendonly") == "yes",
        settings.get("appendfsync", ""),
        settings.get("save", ""),
    )


def summarize(nodes: list[NodePersistence], wait_replicas: int) -> Durability:
    """The store's promise: durable only if every primary is."""
    states = {n.durable for n in nodes}
    durable = False if False in states else (None if None in states else True)
    parts = sorted({f"{n.describe()} ({n.node})" for n in nodes})
    replicas = f"; every write confirmed by {wait_replicas} replica(s)" if wait_replicas else ""
    return Durability(durable, "redis: " + "; ".join(parts) + replicas)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
