"""The key context index of the embedded store: table object_context_items (schema.py).

One row per item of each object, written and deleted in the object's own transaction, so the
index never disagrees with the objects. A filtered list walks the rows of one item (the one
with the fewest objects) by object id, and checks every other item against the object's own
stored key context, so it reads only the objects holding that item.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping

from vaultd.storage import codec
from vaultd.storage.records import Direction, ObjectEntry, ScanFilter
from vaultd.storage.sqlite.connection import transaction
from vaultd.storage.sqlite.scan import scan_conditions

_ITEM_ROWS = "environment_id = ? AND item_key = ? AND item_value = ?"

# Every wanted item (a JSON object) is in the candidate's stored key context, equal.
_HOLDS_CONTEXT = """ AND NOT EXISTS (
  SELECT 1 FROM json_each(?) w
  WHERE w.value IS NOT (SELECT c.value FROM json_each(o.key_context) c WHERE c.key = w.key))"""


def index_object(
    conn: sqlite3.Connection, environment_id: str, object_id: str, context: Mapping[str, str]
) -> None:
    """Enter a new object under each of its items (inside the create's transaction)."""
    conn.executemany(
        "INSERT INTO object_context_items (environment_id, item_key, item_value, object_id)"
        " VALUES (?, ?, ?, ?)",
        [(environment_id, k, v, object_id) for k, v in sorted(context.items())],
    )


def reindex(conn: sqlite3.Connection) -> int:
    """Enter every object under each of its items, again: how many objects it read."""
    with transaction(conn):
        conn.execute(
            "INSERT OR IGNORE INTO object_context_items"
            " (environment_id, item_key, item_value, object_id)"
            " SELECT o.environment_id, item.key, item.value, o.id"
            " FROM objects o, json_each(o.key_context) item"
        )
        count: int = conn.execute("SELECT COUNT(*) FROM objects").fetchone()[0]
        return count


def unindex_object(conn: sqlite3.Connection, environment_id: str, object_id: str) -> None:
    """Remove an object from the index: the one place a hard delete (or purge) does it."""
    conn.execute(
        "DELETE FROM object_context_items WHERE environment_id = ? AND object_id = ?",
        (environment_id, object_id),
    )


def scan_by_context(
    conn: sqlite3.Connection,
    environment_id: str,
    direction: Direction,
    cursor: str | None,
    limit: int,
    scan_filter: ScanFilter,
) -> list[ObjectEntry]:
    """Up to `limit` entries holding every item of the filter, strictly past `cursor`."""
    item_key, item_value = _rarest_item(conn, environment_id, scan_filter.key_context)
    conditions, params, order = scan_conditions("o", "i.object_id", direction, cursor, scan_filter)
    sql = (
        "SELECT o.id, o.name, o.updated_at FROM object_context_items i"
        " JOIN objects o ON o.environment_id = i.environment_id AND o.id = i.object_id"
        " WHERE i.environment_id = ? AND i.item_key = ? AND i.item_value = ?"
        " AND o.deleted_at IS NULL"  # kept, with its index rows, until it is purged
        f"{conditions}{_HOLDS_CONTEXT} ORDER BY i.object_id {order} LIMIT ?"
    )
    wanted = json.dumps(dict(scan_filter.key_context), ensure_ascii=False)
    params = [environment_id, item_key, item_value, *params, wanted, limit]
    rows = conn.execute(sql, params).fetchall()
    return [ObjectEntry(i, name, codec.from_micros(at)) for i, name, at in rows]


def _rarest_item(
    conn: sqlite3.Connection, environment_id: str, context: Mapping[str, str]
) -> tuple[str, str]:
    """The item held by the fewest objects: the shortest walk."""
    items = sorted(context.items())
    if len(items) == 1:
        return items[0]
    sql = f"SELECT COUNT(*) FROM object_context_items WHERE {_ITEM_ROWS}"
    counts = [conn.execute(sql, (environment_id, k, v)).fetchone()[0] for k, v in items]
    return items[counts.index(min(counts))]
