"""Audit events in the Redis store (the AuditStore part of RedisStore).

One stream per environment (and one for unauthenticated calls), each entry one codec record in
field `e`; the stream id is the read cursor, and MINID trims by age on every append.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime

from vaultd.storage import codec
from vaultd.storage.errors import BadCursor
from vaultd.storage.keys import ENVIRONMENT_ID, audit_key, check
from vaultd.storage.records import AuditEvent, AuditPage, AuditQuery
from vaultd.storage.redis.connection import RedisConnection, as_bytes, available, text

AUDIT_READ_BATCH = 500
"""Stream entries one XRANGE fetches while looking for events that pass a query's filters."""
AUDIT_CLOCK_MARGIN_MS = 60_000
"""How far before `since` a read starts: stream ids carry Redis's clock, events vaultd's."""
_STREAM_ID = re.compile(r"[0-9]{1,20}-[0-9]{1,20}")
_LAST_STREAM_ID = f"{2**64 - 1}-{2**64 - 1}"


class RedisAudit(RedisConnection):
    """AuditStore on Redis."""

    async def append_audit_event(self, event: AuditEvent, keep_after: datetime) -> None:
        await self.append_audit_events((event,), keep_after)

    @available
    async def append_audit_events(self, events: Sequence[AuditEvent], keep_after: datetime) -> None:
        if not events:
            return
        # MINID trims by stream id, i.e. by Redis's clock at append. Exact, not `~`: approximate
        # trimming drops only whole stream nodes (100 entries), so a quiet environment would keep
        # expired events indefinitely; exact trimming costs a little more per expired event.
        min_id = codec.to_micros(keep_after) // 1000
        # One round trip for the batch (shared with other calls' commands when auto-pipelined):
        # no MULTI, as each XADD is atomic on its own and a batch's streams may sit on several
        # Cluster shards.
        commands = [
            (
                "XADD",
                _audit_stream(event.environment_id),
                "MINID",
                min_id,
                "*",
                b"e",
                codec.encode_audit_event(event),
            )
            for event in events
        ]
        if self._auto is not None:
            await self._auto.execute_many(commands)
            return
        pipe = self._redis.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        if self._wait_replicas:  # on the connection that wrote them (see _write)
            pipe.wait(self._wait_replicas, self._replica_timeout_ms)
            await self._check_replicas((await pipe.execute())[-1])
        else:
            await pipe.execute()

    @available
    async def read_audit_events(self, environment_id: str, query: AuditQuery) -> AuditPage:
        stream = _audit_stream(environment_id)
        if query.after and not _is_stream_id(query.after):
            raise BadCursor("not a cursor from a previous read")
        start = "-"
        if query.after == _LAST_STREAM_ID:
            return AuditPage([], query.after)  # nothing can come after it; Redis would refuse
        if query.after:
            start = "(" + query.after
        elif query.since is not None:
            since_ms = codec.to_micros(query.since) // 1000 - AUDIT_CLOCK_MARGIN_MS
            start = str(max(since_ms, 0))
        events: list[AuditEvent] = []
        cursor = query.after
        # The filters run here, not in Redis: a page may examine many entries to fill `limit`.
        while len(events) < query.limit:
            reply = await self._redis.xrange(stream, min=start, max="+", count=AUDIT_READ_BATCH)
            batch = [(text(sid), as_bytes(f[b"e"])) for sid, f in reply or () if sid and f]
            for stream_id, record in batch:
                cursor = stream_id
                event = codec.decode_audit_event(record)
                if _passes(event, query):
                    events.append(event)
                    if len(events) == query.limit:
                        break
            if len(batch) < AUDIT_READ_BATCH:
                break
            start = "(" + cursor
        return AuditPage(events, cursor)


def _is_stream_id(text: str) -> bool:
    """Whether `text` is an id Redis could have given a stream entry: two unsigned 64-bit
    halves (20 digits can hold more, which Redis refuses with an error)."""
    return _STREAM_ID.fullmatch(text) is not None and all(
        int(half) < 2**64 for half in text.split("-")
    )


def _audit_stream(environment_id: str) -> str:
    if environment_id:
        check(ENVIRONMENT_ID, environment_id, "environment id")
    return audit_key(environment_id)


def _passes(event: AuditEvent, query: AuditQuery) -> bool:
    return (not query.type or event.type == query.type) and (
        query.since is None or event.time >= query.since
    )
