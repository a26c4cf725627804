"""The stored records the API layer shows, named from core: api -> core -> storage, so the
API needs no import of the storage package to convert what core returns."""

from __future__ import annotations

from vaultd.storage.records import (
    ApiKeyRecord,
    AuditEvent,
    AuditQuery,
    ByokKeyRecord,
    KekRecord,
    KekVersion,
    ObjectEntry,
    RewrapJob,
    RewrapState,
)

__all__ = [
    "ApiKeyRecord",
    "AuditEvent",
    "AuditQuery",
    "ByokKeyRecord",
    "KekRecord",
    "KekVersion",
    "ObjectEntry",
    "RewrapJob",
    "RewrapState",
]
