"""Deleted objects in the Redis store: undelete, purge and what is due for purge (the soft
delete part of ObjectStore; the mark itself is objects.py's delete_object).

Each environment keeps a zset of its deleted objects scored by when they were deleted, and
`vaultd:{@jobs}:deleted-environments` lists every environment that ever had one, so the purge
job finds them without scanning the keyspace.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from vaultd.storage import codec
from vaultd.storage.errors import ObjectMissing, StoreUnavailable
from vaultd.storage.keys import ENVIRONMENT_ID, JobKind, Kind, check, job_key, key
from vaultd.storage.records import DeletedObject
from vaultd.storage.redis.connection import RedisConnection, available, text
from vaultd.storage.redis.context_index import context_keys
from vaultd.storage.redis.objects import ObjectKeys


class RedisDeletedObjects(RedisConnection):
    """Undelete, purge and the purge job's index, on Redis."""

    @available
    async def deleted_context(self, environment_id: str, object_id: str) -> dict[str, str] | None:
        o = ObjectKeys(environment_id, object_id)
        context, deleted = await self._redis.hmget(o.object, ["ctx", "deleted"])
        return None if context is None or deleted is None else codec.decode_context(context)

    @available
    async def undelete_object(
        self, environment_id: str, object_id: str, deleted_since: datetime
    ) -> bool:
        o = ObjectKeys(environment_id, object_id)
        restored = await self._write(
            self._scripts.undelete,
            keys=[o.object, o.deleted],
            args=[object_id, codec.to_micros(deleted_since)],
        )
        return bool(restored)

    @available
    async def purge_object(
        self, environment_id: str, object_id: str, deleted_by: datetime | None = None
    ) -> bool:
        o = ObjectKeys(environment_id, object_id)
        # Two steps: the script must name the context's index keys, known once it is read. A
        # context never changes, and the script checks it is still the one read.
        context = await self._redis.hget(o.object, "ctx")
        if context is None:
            raise ObjectMissing("no such object")
        reply = await self._write(
            self._scripts.purge,
            keys=[
                *o.all(),
                o.deleted,
                *context_keys(environment_id, codec.decode_context(context)),
            ],
            args=[object_id, "" if deleted_by is None else codec.to_micros(deleted_by), context],
            changed=lambda reply: reply == b"purged",
        )
        if reply == b"missing":
            raise ObjectMissing("no such object")
        if reply == b"context_changed":
            # Cannot happen while a key context never changes; if it did, a retry reads it anew.
            raise StoreUnavailable("the object changed while it was being purged", "CONFLICT")
        return bool(reply == b"purged")

    @available
    async def due_for_purge(
        self, environment_id: str | None, before: datetime, limit: int
    ) -> list[DeletedObject]:
        if environment_id is None:
            members = await self._redis.smembers(job_key(JobKind.DELETED_ENVIRONMENTS))
            environments = sorted(text(m) for m in members)
        else:
            environments = [check(ENVIRONMENT_ID, environment_id, "environment id")]
        due: list[DeletedObject] = []
        for env in environments:
            if len(due) >= limit:
                break
            found: list[Any] = await self._redis.zrangebyscore(
                key(env, Kind.DELETED),
                "-inf",
                f"({codec.to_micros(before)}",
                start=0,
                num=limit - len(due),
                withscores=True,
            )
            due += (
                DeletedObject(env, text(i), codec.from_micros(int(score))) for i, score in found
            )
        return due
