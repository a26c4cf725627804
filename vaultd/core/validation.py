"""Rules for what clients send: key contexts (docs/ARCHITECTURE.md section 3), names, ids,
values.

Each check raises an InvalidArgument subclass naming the field, the item and the rule, never the
offending value itself beyond its position and length (a value may be a secret pasted by mistake).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from vaultd.core.errors import InvalidId, InvalidKeyContext, InvalidName, ValueTooLarge

MAX_CONTEXT_ITEMS = 10
MAX_CONTEXT_KEY_CHARS = 120
MAX_CONTEXT_VALUE_CHARS = 500
MAX_NAME_CHARS = 512

KeyContext = tuple[tuple[str, str], ...]
"""A validated key context: its items sorted by key, so equal contexts compare equal."""

# C0, DEL and C1: names are printed in logs and tables, where these would rewrite the output.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_ULID = "[0-9A-HJKMNP-TV-Z]{26}"
OBJECT_ID = re.compile(f"secret_{_ULID}")
VERSION_ID = re.compile(f"ver_{_ULID}")
REWRAP_JOB_ID = re.compile(f"rewrap_{_ULID}")


def validate_key_context(context: Mapping[str, str], field: str = "key_context") -> KeyContext:
    """The WorkOS limits: 1 to 10 items, key <= 120 and value <= 500 characters, none empty."""
    if not context:
        raise InvalidKeyContext(field, "must have at least 1 item")
    if len(context) > MAX_CONTEXT_ITEMS:
        raise InvalidKeyContext(
            field, f"has {len(context)} items; at most {MAX_CONTEXT_ITEMS} are allowed"
        )
    for key, value in context.items():
        if not key:
            raise InvalidKeyContext(field, "an item has an empty key")
        if len(key) > MAX_CONTEXT_KEY_CHARS:
            raise InvalidKeyContext(
                f"{field}[{key[:40]!r}...]",
                f"key has {len(key)} characters; at most {MAX_CONTEXT_KEY_CHARS} are allowed",
            )
        if not value:
            raise InvalidKeyContext(f"{field}[{key!r}]", "value is empty")
        if len(value) > MAX_CONTEXT_VALUE_CHARS:
            raise InvalidKeyContext(
                f"{field}[{key!r}]",
                f"value has {len(value)} characters; at most {MAX_CONTEXT_VALUE_CHARS} are allowed",
            )
    return tuple(sorted(context.items()))


def validate_name(name: str, field: str = "name") -> str:
    """1 to 512 characters with no control characters, so names print and log safely."""
    if not name:
        raise InvalidName(field, "must not be empty")
    if len(name) > MAX_NAME_CHARS:
        raise InvalidName(
            field, f"has {len(name)} characters; at most {MAX_NAME_CHARS} are allowed"
        )
    if _CONTROL.search(name):
        raise InvalidName(field, "must not contain control characters")
    return name


def validate_object_id(object_id: str, field: str = "id") -> str:
    if not OBJECT_ID.fullmatch(object_id):
        raise InvalidId(field, "is not an object id (secret_ followed by 26 ULID characters)")
    return object_id


def validate_version_id(version_id: str, field: str = "version_id") -> str:
    if not VERSION_ID.fullmatch(version_id):
        raise InvalidId(field, "is not a version id (ver_ followed by 26 ULID characters)")
    return version_id


def validate_rewrap_job_id(job_id: str, field: str = "id") -> str:
    if not REWRAP_JOB_ID.fullmatch(job_id):
        raise InvalidId(field, "is not a rewrap job id (rewrap_ followed by 26 ULID characters)")
    return job_id


def validate_value_size(value: bytes, limit: int, field: str = "value") -> bytes:
    if len(value) > limit:
        raise ValueTooLarge(field, f"has {len(value)} bytes; at most {limit} are allowed")
    return value
