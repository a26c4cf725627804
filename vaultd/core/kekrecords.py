"""What every KEK record read from the store must pass before it is used: not a shred's
tombstone, and recorded for the very context item whose id led to it."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TypeVar

from vaultd.core.errors import IntegrityViolation, KeyShredded
from vaultd.storage.records import KekRecord, KekVersion

log = logging.getLogger(__name__)


def find_version(versions: Sequence[KekVersion], version: int) -> KekVersion | None:
    return next((v for v in versions if v.version == version), None)


MaybeRecord = TypeVar("MaybeRecord", bound=KekRecord | None)


def live(record: MaybeRecord) -> MaybeRecord:
    """The record, unless it is a shred's tombstone: then KEY_SHREDDED."""
    if record is not None and record.shredded_at is not None:
        raise KeyShredded(
            f"the keys of {record.item_key}={record.item_value} were shredded",
            metadata={"kek_id": record.kek_id},
        )
    return record


def checked(record: MaybeRecord, item_key: str, item_value: str) -> MaybeRecord:
    """The record, unless it belongs to another item than the one whose id led to it."""
    if record is not None and (record.item_key, record.item_value) != (item_key, item_value):
        log.error(
            "KEK %s is recorded for another context item than the one it was derived from",
            record.kek_id,
        )
        raise IntegrityViolation("the key of this context item does not belong to it")
    return record
