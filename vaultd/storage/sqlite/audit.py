"""Audit events in the embedded store (the AuditStore part of SqliteStore).

audit_events.seq is the read cursor: AUTOINCREMENT never reuses a number, even once trimming
has emptied the table, so a reader holding a cursor never skips a later event. An event is kept
whole as its codec record (the same bytes as on Redis); the columns beside it are what reads
filter and trimming cuts on.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from vaultd.storage import codec
from vaultd.storage.errors import BadCursor
from vaultd.storage.keys import ENVIRONMENT_ID, check
from vaultd.storage.records import AuditEvent, AuditPage, AuditQuery
from vaultd.storage.sqlite.connection import SqliteConnection, transaction

# The largest rowid SQLite hands out (a signed 64-bit INTEGER): audit cursors stop there.
_MAX_SEQ = 2**63 - 1


class SqliteAudit(SqliteConnection):
    """AuditStore on SQLite."""

    async def append_audit_event(self, event: AuditEvent, keep_after: datetime) -> None:
        await self.append_audit_events((event,), keep_after)

    async def append_audit_events(self, events: Sequence[AuditEvent], keep_after: datetime) -> None:
        for event in events:
            if event.environment_id:
                check(ENVIRONMENT_ID, event.environment_id, "environment id")
        rows = [
            (
                event.environment_id,
                event.type,
                codec.to_micros(event.time),
                codec.encode_audit_event(event),
            )
            for event in events
        ]
        cutoff = codec.to_micros(keep_after)

        def append(conn: sqlite3.Connection) -> None:
            # One transaction, so one fsync, however many events: the group commit's point.
            with transaction(conn):
                # Indexed by time, so finding nothing to trim costs one index probe.
                conn.execute("DELETE FROM audit_events WHERE time < ?", (cutoff,))
                conn.executemany(
                    "INSERT INTO audit_events (environment_id, type, time, record)"
                    " VALUES (?, ?, ?, ?)",
                    rows,
                )

        if rows:
            await self._run(append)

    async def read_audit_events(self, environment_id: str, query: AuditQuery) -> AuditPage:
        if environment_id:
            check(ENVIRONMENT_ID, environment_id, "environment id")
        # A sequence number SQLite could never have handed out (past INTEGER) is no cursor.
        if query.after and not (
            query.after.isascii() and query.after.isdigit() and int(query.after) <= _MAX_SEQ
        ):
            raise BadCursor("not a cursor from a previous read")
        if query.limit < 1:
            return AuditPage([], query.after)
        sql = "SELECT seq, record FROM audit_events WHERE environment_id = ? AND seq > ?"
        params: list[Any] = [environment_id, int(query.after or 0)]
        if query.since is not None:
            sql += " AND time >= ?"
            params.append(codec.to_micros(query.since))
        if query.type:
            sql += " AND type = ?"
            params.append(query.type)
        sql += " ORDER BY seq LIMIT ?"
        params.append(query.limit)
        rows = await self._run(lambda c: c.execute(sql, params).fetchall())
        events = [codec.decode_audit_event(record) for _, record in rows]
        return AuditPage(events, str(rows[-1][0]) if rows else query.after)
