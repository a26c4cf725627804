"""What every SQLite object scan adds to its WHERE clause, whichever table it walks: past the
cursor in its direction, the name prefix and the update time. One copy, so a scan over the
objects table and one over the key context index cannot drift apart."""

from __future__ import annotations

from typing import Any

from vaultd.storage import codec
from vaultd.storage.records import Direction, ScanFilter


def scan_conditions(
    objects: str, id_column: str, direction: Direction, cursor: str | None, scan: ScanFilter
) -> tuple[str, list[Any], str]:
    """(" AND ..." conditions, their parameters, "ASC" or "DESC") for a scan whose object
    rows are named `objects` (a table or alias) and whose order is `id_column`."""
    past, order = (">", "ASC") if direction is Direction.ASCENDING else ("<", "DESC")
    sql = ""
    params: list[Any] = []
    if cursor:
        sql += f" AND {id_column} {past} ?"
        params.append(cursor)
    if scan.name_prefix:
        sql += f" AND substr({objects}.name, 1, length(?)) = ?"
        params += [scan.name_prefix] * 2
    if scan.updated_after is not None:
        sql += f" AND {objects}.updated_at > ?"
        params.append(codec.to_micros(scan.updated_after))
    return sql, params, order
