"""What the audit wrapper learns of one call from the layers inside it.

Auditing (auditing.py) opens a CallRecord before anything else runs; Authentication fills in
the caller's key, RequestParsing the parsed request, and the servicer, once core has answered,
what the call touched (`touched`), taken from core's result: the ids core used, not ids read
back out of the response. Each call runs in its own task with its own copy of the context, so no
call sees another's record.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from vaultd.core.audit import Subject
from vaultd.core.records import ApiKeyRecord


@dataclass(slots=True)
class CallRecord:
    key: ApiKeyRecord | None = None
    """The caller's API key, once authenticated (or the revoked key it presented)."""
    request: Any = None
    """The request message, once parsed; None before, or when it did not parse."""
    touched: Subject | None = None
    """What a successful call touched, as its servicer reported it from core's result."""


CALL_RECORD: ContextVar[CallRecord | None] = ContextVar("vaultd_call_record", default=None)


def current() -> CallRecord:
    """This call's record; a detached one when no Auditing layer opened one (a wiring mistake
    that then leaves nothing to be read, rather than failing the call)."""
    record = CALL_RECORD.get()
    return record if record is not None else CallRecord()


def touched(subject: Subject) -> None:
    """For servicers: what this call touched, for its audit event."""
    current().touched = subject
