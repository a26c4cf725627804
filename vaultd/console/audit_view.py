"""The console's audit pages: filtered events a page at a time, and the JSON-lines export."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

from vaultd.console import record_pages
from vaultd.console.signin import SignedIn
from vaultd.console.web import Request, Response, html
from vaultd.core import audit
from vaultd.core.audit import event_json
from vaultd.core.errors import InvalidArgument
from vaultd.storage.records import AuditEvent, AuditQuery

AUDIT_PAGE_EVENTS = 50
AUDIT_SCAN_PAGES = 10  # store pages of MAX_READ_LIMIT read at most per console page
EXPORT_MAX_EVENTS = 100_000
AUDIT_TYPES = sorted(
    value
    for name, value in vars(audit).items()
    if name.isupper() and str(value).startswith("vault.")
)


@dataclass(frozen=True, slots=True)
class AuditFilter:
    since: datetime | None = None
    until: datetime | None = None
    type: str = ""
    actor: str = ""
    object: str = ""
    outcome: str = ""

    @classmethod
    def parse(cls, filters: dict[str, str]) -> AuditFilter:
        if filters["type"] and filters["type"] not in AUDIT_TYPES:
            raise InvalidArgument("type", "is not an audit event type")
        return cls(
            _time(filters["since"], "since"),
            _time(filters["until"], "until"),
            filters["type"],
            filters["actor"],
            filters["object"],
            filters["outcome"],
        )

    def matches(self, event: AuditEvent) -> bool:
        return (
            (not self.actor or self.actor in (event.actor_id, event.actor_name))
            and (not self.object or self.object in (event.object_id, event.object_name))
            and (not self.outcome or self.outcome == event.outcome)
        )


def _time(text: str, name: str) -> datetime | None:
    """A datetime-local value ("2026-12-04T14:05", read as UTC), or None when empty."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidArgument(name, "must be a date and time such as 2026-12-04T14:05") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _filters(request: Request) -> tuple[dict[str, str], AuditFilter]:
    filters = {k: request.query.get(k, "").strip() for k in record_pages.AUDIT_FIELDS}
    return filters, AuditFilter.parse(filters)


async def _events(
    signed: SignedIn, wanted: AuditFilter, after: str, limit: int, pages_max: int
) -> tuple[list[AuditEvent], str]:
    """Matching events from `after` on, a store page at a time; and where to go on from
    ("" at the end). Stops at a page boundary once `limit` matched (cursors are per page)."""
    found: list[AuditEvent] = []
    cursor = after
    for _ in range(pages_max):
        query = AuditQuery(
            after=cursor, since=wanted.since, type=wanted.type, limit=audit.MAX_READ_LIMIT
        )
        page = await signed.acting.read_audit(query)
        for event in page.events:
            if wanted.until is not None and event.time > wanted.until:
                return found, ""
            if wanted.matches(event):
                found.append(event)
        cursor = page.cursor
        if len(page.events) < audit.MAX_READ_LIMIT:
            return found, ""
        if len(found) >= limit:
            break
    return found, cursor


async def audit_page(request: Request, signed: SignedIn) -> Response:
    filters, wanted = _filters(request)
    events, next_after = await _events(
        signed, wanted, request.query.get("after", ""), AUDIT_PAGE_EVENTS, AUDIT_SCAN_PAGES
    )
    return html(200, record_pages.audit(signed.frame, filters, AUDIT_TYPES, events, next_after))


async def audit_export(request: Request, signed: SignedIn) -> Response:
    _, wanted = _filters(request)
    events, _ = await _events(
        signed, wanted, "", EXPORT_MAX_EVENTS, EXPORT_MAX_EVENTS // audit.MAX_READ_LIMIT
    )

    async def lines() -> AsyncIterator[bytes]:
        for event in events[:EXPORT_MAX_EVENTS]:
            yield (json.dumps(event_json(event), separators=(",", ":")) + "\n").encode()

    name = f"vaultd-audit-{signed.frame.environment_id}.jsonl"
    disposition = f'attachment; filename="{name}"'.encode()
    return Response(200, lines(), "application/x-ndjson", [(b"content-disposition", disposition)])
