"""The key context index of the Redis store: lists filtered by context, and its backfill.

Each key context item has a zset of the ids of the objects holding it (keys.context_item_key),
kept by the create and delete scripts. A filtered list walks the smallest zset among the items
asked for and checks each candidate against its object (SCAN_CONTEXT), so it reads only the
objects holding that item, never the whole environment.

Objects an older vaultd wrote are in no zset until the backfill (index_object_contexts) enters
them. Until an environment is known complete (its ctx-indexed marker, or the database-wide
marker set once every environment was backfilled), a filtered list walks every object id
instead, with the same check: slower, never wrong.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from vaultd.storage import codec
from vaultd.storage.keys import JobKind, Kind, context_item_key, job_key, key
from vaultd.storage.records import Direction, ObjectEntry, ScanFilter
from vaultd.storage.redis.connection import RedisConnection, available, text

_MIGRATIONS = job_key(JobKind.MIGRATIONS)
CONTEXT_INDEX_MIGRATION = "object-context-index"
_OBJECTS_ZSET = "vaultd:{*}:objects"
BACKFILL_BATCH = 256
"""Most objects one step of the backfill reads."""


class RedisContextIndex(RedisConnection):
    """Filtered lists over the key context index, and the index's backfill."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Markers are never unset, so a marker seen once is remembered for this store's life.
        self._indexed_environments: set[str] = set()
        self._all_indexed = False

    async def _scan_by_context(
        self,
        environment_id: str,
        direction: Direction,
        cursor: str | None,
        limit: int,
        scan_filter: ScanFilter,
    ) -> list[ObjectEntry]:
        source, indexed = await self._candidates_source(environment_id, scan_filter.key_context)
        after = scan_filter.updated_after
        fixed = [
            scan_filter.name_prefix,
            "" if after is None else codec.to_micros(after),
            json.dumps(dict(scan_filter.key_context), ensure_ascii=False),
        ]
        digests = key(environment_id, Kind.DIGESTS)
        entries: list[ObjectEntry] = []
        position = cursor or ""
        while len(entries) < limit:
            # An index's candidates mostly pass, so read as many as are wanted; walking every
            # id, read a whole budget (most fail).
            # Scoped, read a whole budget too: the scope drops entries after the step.
            narrow = indexed and scan_filter.in_scope is None
            size = min(self._scan_budget, limit - len(entries)) if narrow else self._scan_budget
            ids = await self._window(source, direction, position, size)
            if not ids:
                break
            reply = await self._scripts.scan_context(
                keys=[digests, *(key(environment_id, Kind.OBJECT, i) for i in ids)],
                args=[*fixed, *ids],
            )
            found = [_entry(i, d) for i, d in zip(reply[0::2], reply[1::2], strict=True)]
            entries += await self._in_scope(environment_id, found, scan_filter)
            if len(ids) < size:
                break
            position = ids[-1]
        return entries[:limit]

    async def _in_scope(
        self, environment_id: str, entries: list[ObjectEntry], scan_filter: ScanFilter
    ) -> list[ObjectEntry]:
        """The entries whose stored key context passes `scan_filter.in_scope`, read in one
        round trip (a pipeline; on a Cluster every key is in the environment's slot)."""
        in_scope = scan_filter.in_scope
        if in_scope is None or not entries:
            return entries
        pipe = self._redis.pipeline(transaction=False)
        for entry in entries:
            pipe.hget(key(environment_id, Kind.OBJECT, entry.id), "ctx")
        contexts = await pipe.execute()
        # An object deleted since the scan step has no context left: it is not listed.
        return [
            entry
            for entry, ctx in zip(entries, contexts, strict=True)
            if ctx is not None and in_scope(codec.decode_context(ctx))
        ]

    async def _window(
        self, source: str, direction: Direction, position: str, budget: int
    ) -> list[str]:
        """The next `budget` ids (at most) of `source` past `position` in `direction`."""
        if direction is Direction.ASCENDING:
            start = f"({position}" if position else "-"
            found = await self._redis.zrangebylex(source, start, "+", 0, budget)
        else:
            start = f"({position}" if position else "+"
            found = await self._redis.zrevrangebylex(source, start, "-", 0, budget)
        return [text(i) for i in found]

    async def _candidates_source(
        self, environment_id: str, context: Mapping[str, str]
    ) -> tuple[str, bool]:
        """The zset to walk, and whether it is an item's index: the smallest item's index, or
        every object id while the environment may hold objects no index has entered yet."""
        if not await self._context_indexed(environment_id):
            return key(environment_id, Kind.OBJECTS), False
        item_keys = context_keys(environment_id, context)
        if len(item_keys) == 1:
            return item_keys[0], True
        sizes = [int(await self._redis.zcard(k)) for k in item_keys]
        return item_keys[sizes.index(min(sizes))], True

    async def _context_indexed(self, environment_id: str) -> bool:
        """Whether every object of the environment is in the index."""
        if self._all_indexed or environment_id in self._indexed_environments:
            return True
        if await self._redis.hexists(_MIGRATIONS, CONTEXT_INDEX_MIGRATION):
            self._all_indexed = True
            return True
        if await self._redis.exists(key(environment_id, Kind.CONTEXT_INDEXED)):
            self._indexed_environments.add(environment_id)
            return True
        return False

    @available
    async def index_object_contexts(self, *, force: bool = False) -> int:
        """Enter every object an older vaultd wrote into the key context index.

        Once per database (a marker records it), unless `force`: one SCAN over every node for
        the environments, then each one's objects in batches; an environment done is marked,
        so a run cut short resumes past it. Idempotent. Returns how many objects it entered.
        """
        if not force and await self._redis.hexists(_MIGRATIONS, CONTEXT_INDEX_MIGRATION):
            return 0
        entered = 0
        async for name in self._redis.scan_iter(match=_OBJECTS_ZSET, count=1000, _type="zset"):
            environment_id = text(name).split("{", 1)[1].rsplit("}", 1)[0]
            marker = key(environment_id, Kind.CONTEXT_INDEXED)
            if not force and await self._redis.exists(marker):
                continue
            entered += await self._backfill_environment(environment_id)
            await self._redis.set(marker, codec.to_micros(datetime.now(UTC)))
        await self._redis.hset(
            _MIGRATIONS, CONTEXT_INDEX_MIGRATION, codec.to_micros(datetime.now(UTC))
        )
        self._all_indexed = True
        return entered

    async def _backfill_environment(self, environment_id: str) -> int:
        objects = key(environment_id, Kind.OBJECTS)
        entered, position = 0, "-"
        while True:
            found = await self._redis.zrangebylex(objects, position, "+", 0, BACKFILL_BATCH)
            ids = [text(i) for i in found]
            if not ids:
                return entered
            hashes = [key(environment_id, Kind.OBJECT, i) for i in ids]
            contexts = await self._scripts.get_contexts(keys=hashes)
            for object_id, object_key, context in zip(ids, hashes, contexts, strict=True):
                if not context:
                    continue  # deleted since the ids were read
                items = codec.decode_context(context)
                item_keys = [
                    context_item_key(environment_id, k, v) for k, v in sorted(items.items())
                ]
                entered += int(
                    await self._write(
                        self._scripts.index_object,
                        keys=[object_key, *item_keys],
                        args=[object_id, context],
                    )
                )
            position = f"({ids[-1]}"


def context_keys(environment_id: str, context: Mapping[str, str]) -> list[str]:
    """The index zsets of a key context's items, in the context's (sorted) order."""
    return [context_item_key(environment_id, k, v) for k, v in sorted(context.items())]


def _entry(object_id: bytes, digest: bytes) -> ObjectEntry:
    updated, _, name = digest.partition(b" ")
    return ObjectEntry(text(object_id), text(name), codec.from_micros(int(updated)))
