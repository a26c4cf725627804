"""Rules for what clients send: key contexts (docs/ARCHITECTURE.md section 3), names, ids,
values.

Each check raises an InvalidArgument subclass naming the field, the item and the rule, never the
offending value itself beyond its position and length (a value may be a secret pasted by mistake).

Context keys and values and object names are text that people read and that keys are derived
from, so each must have one meaning: they are NFC-normalised (two spellings of "é" are one
item), and control characters (C0, DEL, C1), bidirectional overrides and isolates, and
zero-width characters are refused, so that no two different-looking, or same-looking, strings
reach a KEK id or a name (docs/SECURITY.md section 3). Refusing NUL also makes the KEK id's
NUL-separated input injective (docs/FORMAT.md section 2).
"""

from __future__ import annotations

import re
import unicodedata
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
# Characters that change how text around them displays without being seen themselves:
# bidirectional marks, embeddings, overrides and isolates (U+061C, U+200E-F, U+202A-E,
# U+2066-9), and zero-width and invisible joiners and spaces (U+180E, U+200B-D, U+2060-4,
# U+FEFF).
_INVISIBLE = re.compile("[\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")


def _unsafe_characters(text: str) -> str | None:
    """What kind of forbidden character `text` holds, or None."""
    if _CONTROL.search(text):
        return "control characters"
    if _INVISIBLE.search(text):
        return "bidirectional-override or zero-width characters"
    return None


_ULID = "[0-9A-HJKMNP-TV-Z]{26}"
OBJECT_ID = re.compile(f"secret_{_ULID}")
VERSION_ID = re.compile(f"ver_{_ULID}")
REWRAP_JOB_ID = re.compile(f"rewrap_{_ULID}")


def validate_key_context(context: Mapping[str, str], field: str = "key_context") -> KeyContext:
    """The WorkOS limits: 1 to 10 items, key <= 120 and value <= 500 characters, none empty;
    no control, bidi-override or zero-width characters. Returned NFC-normalised and sorted."""
    _check_context_shape(context, field)
    normalised: dict[str, str] = {}
    for key, value in context.items():
        where = f"{field}[{key[:40]!r}]"
        for part, text in (("key", key), ("value", value)):
            if (kind := _unsafe_characters(text)) is not None:
                raise InvalidKeyContext(where, f"{part} must not contain {kind}")
        nfc_key = unicodedata.normalize("NFC", key)
        if nfc_key in normalised:
            raise InvalidKeyContext(where, "key is another item's key in another normal form")
        normalised[nfc_key] = unicodedata.normalize("NFC", value)
    _check_context_shape(normalised, field)  # NFC may change lengths
    return tuple(sorted(normalised.items()))


def stored_key_context(context: Mapping[str, str]) -> KeyContext:
    """An object's key context as stored, sorted, as it was accepted when written: an update
    wraps under the same items' KEKs, not re-normalised ones (docs/SECURITY.md section 3)."""
    return tuple(sorted(context.items()))


def _check_context_shape(context: Mapping[str, str], field: str) -> None:
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


def validate_name(name: str, field: str = "name") -> str:
    """1 to 512 characters with no control, bidi-override or zero-width characters, so names
    print and log safely and look like what they are; returned NFC-normalised."""
    if (kind := _unsafe_characters(name)) is not None:
        raise InvalidName(field, f"must not contain {kind}")
    name = unicodedata.normalize("NFC", name)
    if not name:
        raise InvalidName(field, "must not be empty")
    if len(name) > MAX_NAME_CHARS:
        raise InvalidName(
            field, f"has {len(name)} characters; at most {MAX_NAME_CHARS} are allowed"
        )
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
