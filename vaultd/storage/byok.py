"""BYOK keys as data: which provider key governs which context items of an environment.

A record is a rule added at run time (AdminService.CreateByokKey): it matches one context item
by key and value, or value prefix (`org_*`), and names the key URI whose KMS key wraps the
matching items' KEKs. The stores keep at most one record per (environment, item key, pattern);
adding a second is refused with the one already there. Storage knows nothing of providers or
verification beyond the outcome it is told to record.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from typing import Any, Protocol

from vaultd.storage import codec

BYOK_KEY_RECORD_VERSION = 1


@dataclass(frozen=True, slots=True)
class ByokKeyRecord:
    id: str
    environment_id: str
    item_key: str
    pattern: str
    """The value matched: exact, or a prefix when it ends in a single `*`."""
    key_uri: str
    created_at: datetime
    verified_at: datetime | None = None
    verified: bool = False
    """The last verification's outcome (a wrap and unwrap of a probe through the provider)."""
    verification_error: str = ""


class ByokKeyStore(Protocol):
    """The narrow storage protocol of BYOK key records (docs/FORMAT.md, "BYOK key records")."""

    async def add_byok_key(self, record: ByokKeyRecord) -> ByokKeyRecord | None:
        """Add the record; None when added, or the record already holding its match."""
        ...

    async def get_byok_key(self, environment_id: str, byok_key_id: str) -> ByokKeyRecord | None: ...

    async def list_byok_keys(self, environment_id: str) -> list[ByokKeyRecord]:
        """The environment's records, oldest first."""
        ...

    async def set_byok_verification(
        self, environment_id: str, byok_key_id: str, verified_at: datetime, ok: bool, error: str
    ) -> ByokKeyRecord | None:
        """Record a verification's outcome; the updated record, None if there is none."""
        ...

    async def delete_byok_key(self, environment_id: str, byok_key_id: str) -> ByokKeyRecord | None:
        """Remove the record; the removed record, None if there was none."""
        ...


def match_of(record: ByokKeyRecord) -> str:
    """What is unique per environment: the item key and the pattern."""
    return f"{record.item_key}\0{record.pattern}"


def encode(record: ByokKeyRecord) -> bytes:
    """A record as stored: versioned JSON, times as microseconds since the epoch."""
    fields: dict[str, Any] = asdict(record)
    fields["created_at"] = codec.to_micros(record.created_at)
    fields["verified_at"] = (
        None if record.verified_at is None else codec.to_micros(record.verified_at)
    )
    fields["v"] = BYOK_KEY_RECORD_VERSION
    return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()


def decode(data: bytes) -> ByokKeyRecord:
    fields = json.loads(data)
    version = fields.pop("v", None)
    if version != BYOK_KEY_RECORD_VERSION:
        raise ValueError(f"unknown BYOK key record version {version!r}")
    fields["created_at"] = codec.from_micros(fields["created_at"])
    if fields["verified_at"] is not None:
        fields["verified_at"] = codec.from_micros(fields["verified_at"])
    return ByokKeyRecord(**fields)


def verified(record: ByokKeyRecord, at: datetime, ok: bool, error: str) -> ByokKeyRecord:
    """The record with a verification's outcome."""
    return replace(record, verified_at=at, verified=ok, verification_error="" if ok else error)
