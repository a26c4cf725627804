"""Paging for the admin lists (ListApiKeys, ListKeks, ListRewrapJobs): SECURITY.md section 5.

The stores return these lists whole; a response holds at most `limit` items (1 to 1000, 100
when 0), so a large environment cannot produce a response past any client's message limit.
The cursor is the sort key of the page's last item, base64url-encoded JSON: opaque to
callers, and still a valid position when that item is gone.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from typing import TypeVar

from vaultd.core.errors import InvalidArgument, InvalidCursor

T = TypeVar("T")
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
_MAX_CURSOR_CHARS = 4096

SortKey = tuple[str, ...]


def page(
    items: Sequence[T], key: Callable[[T], SortKey], limit: int, after: str
) -> tuple[list[T], str]:
    """The items sorted by `key` strictly after the cursor `after`, at most `limit` of them,
    and the cursor of the next page ("" when this page reaches the end)."""
    limit = limit or DEFAULT_LIMIT
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidArgument("limit", f"must be between 1 and {MAX_LIMIT}")
    start = _decode(after) if after else None
    ordered = sorted(items, key=key)
    remaining = [item for item in ordered if start is None or key(item) > start]
    shown = remaining[:limit]
    more = len(remaining) > limit
    return shown, _encode(key(shown[-1])) if more else ""


def _encode(sort_key: SortKey) -> str:
    raw = json.dumps(list(sort_key), separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(cursor: str) -> SortKey:
    bad = InvalidCursor("after", "is not a cursor from a previous list")
    if len(cursor) > _MAX_CURSOR_CHARS:
        raise bad
    try:
        decoded = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise bad from None
    if not isinstance(decoded, list) or not all(isinstance(part, str) for part in decoded):
        raise bad
    return tuple(decoded)
