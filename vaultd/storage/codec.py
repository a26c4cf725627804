"""How records become plain values: bytes for Redis, integers and text for both stores.

A record is one format byte followed by length-prefixed fields (4-byte big-endian length, then
the bytes). Byte strings are stored as they are, so empty values and 1 MiB ciphertexts round-trip
exactly and cost no base64; text is UTF-8; integers are decimal. The format byte lets a later
release read records written by this one.

Times are whole microseconds since the Unix epoch (UTC): the precision of `datetime`, exact, and
ordered the same way as the times, so stores can compare them without decoding.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Iterable, Mapping
from dataclasses import asdict, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from vaultd.storage.errors import StoreError
from vaultd.storage.records import (
    ApiKeyRecord,
    AuditEvent,
    ByokKeyRecord,
    KekVersion,
    RewrapJob,
    RewrapState,
    StoredVersion,
    VersionInfo,
    Wrapping,
)

FORMAT = 1
BYOK_KEY_RECORD_VERSION = 1
_LENGTH = struct.Struct(">I")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def to_micros(moment: datetime) -> int:
    """Microseconds since the epoch; a naive datetime is refused rather than guessed at."""
    if moment.utcoffset() is None:
        raise ValueError("timestamps must be timezone-aware")
    return (moment - _EPOCH) // _MICROSECOND


def from_micros(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


def encode_context(context: Mapping[str, str]) -> str:
    """Sorted JSON, so equal contexts are stored identically."""
    return json.dumps(dict(context), ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def decode_context(text: str | bytes) -> dict[str, str]:
    context: dict[str, str] = json.loads(text)
    return context


VERSION_FIELDS_BEFORE_KEYS = 4
"""A version record's fields before its key_ids and encrypted_keys (the info fields): what the
Redis store skips to swap those two in place, never touching the ciphertext after them."""


def encode_version(v: StoredVersion) -> bytes:
    return (
        _record(*_info_fields(v.info()))
        + encode_version_keys(v.key_ids, v.encrypted_keys)
        + _frame([v.ciphertext, v.updated_by_id.encode(), v.updated_by_name.encode()])
    )


def encode_version_keys(key_ids: Iterable[str], encrypted_keys: bytes) -> bytes:
    """The key_ids and encrypted_keys fields of a version record, framed as in the record."""
    return _frame([_frame(k.encode() for k in key_ids), encrypted_keys])


def decode_version(blob: bytes) -> StoredVersion:
    vid, created, size, etag, keys, encrypted_keys, ciphertext, by_id, by_name = _fields(blob, 9)
    return StoredVersion(
        version_id=vid.decode(),
        created_at=from_micros(int(created)),
        size=int(size),
        etag=etag.decode(),
        key_ids=tuple(k.decode() for k in _unframe(keys)),
        encrypted_keys=encrypted_keys,
        ciphertext=ciphertext,
        updated_by_id=by_id.decode(),
        updated_by_name=by_name.decode(),
    )


def encode_version_info(info: VersionInfo) -> bytes:
    return _record(*_info_fields(info))


def decode_version_info(blob: bytes) -> VersionInfo:
    vid, created, size, etag = _fields(blob, 4)
    return VersionInfo(vid.decode(), from_micros(int(created)), int(size), etag.decode())


def encode_kek(kek: KekVersion) -> bytes:
    fields = [
        kek.item_key.encode(),
        kek.item_value.encode(),
        b"%d" % kek.version,
        kek.provider_uri.encode(),
        kek.wrapped_key,
        b"%d" % to_micros(kek.created_at),
    ]
    if kek.secondary:
        # A seventh field only when there are secondary keys: a version wrapped by one key is
        # stored byte for byte as before they existed, so its stamp does not change.
        fields.append(encode_secondary(kek.secondary))
    return _record(*fields)


def encode_secondary(secondary: Iterable[Wrapping]) -> bytes:
    """Secondary wrappings as one field: (provider URI, wrapped key) pairs, framed in turn."""
    return _frame(part for w in secondary for part in (w.provider_uri.encode(), w.wrapped_key))


def decode_secondary(field: bytes) -> tuple[Wrapping, ...]:
    parts = _unframe(field)
    if len(parts) % 2:
        raise StoreError("unreadable record: a secondary wrapping without its key")
    return tuple(Wrapping(parts[i].decode(), parts[i + 1]) for i in range(0, len(parts), 2))


def kek_stamp(record: bytes) -> str:
    """A KEK version's stamp (KekVersion.stamp): the SHA-1 of its stored record, in hex.

    SHA-1 because Redis's Lua computes it (redis.sha1hex) inside the write script that checks
    it. It fences against a store that lost or replaced a version (failover, emptied store,
    shred, rewrap), not against an attacker who can write the store: the record's own AEAD
    bindings are the defence there.
    """
    return hashlib.sha1(record, usedforsecurity=False).hexdigest()


def decode_kek(blob: bytes) -> KekVersion:
    fields = _fields(blob, 6, 7)
    item_key, item_value, version, uri, wrapped_key, created = fields[:6]
    return KekVersion(
        item_key=item_key.decode(),
        item_value=item_value.decode(),
        version=int(version),
        provider_uri=uri.decode(),
        wrapped_key=wrapped_key,
        created_at=from_micros(int(created)),
        stamp=kek_stamp(blob),
        secondary=decode_secondary(fields[6]) if len(fields) == 7 else (),
    )


def encode_rewrap_job(job: RewrapJob) -> bytes:
    lease = b"" if job.lease_until is None else b"%d" % to_micros(job.lease_until)
    return _record(
        job.id.encode(),
        job.environment_id.encode(),
        _frame(k.encode() for k in job.kek_ids),
        job.state.value.encode(),
        b"%d" % to_micros(job.created_at),
        b"%d" % to_micros(job.updated_at),
        job.cursor.encode(),
        b"%d" % job.objects_total,
        b"%d" % job.objects_done,
        b"%d" % job.versions_rewrapped,
        b"%d" % job.keks_rewrapped,
        job.error.encode(),
        job.owner.encode(),
        lease,
    )


def decode_rewrap_job(blob: bytes) -> RewrapJob:
    (job_id, environment_id, kek_ids, state, created, updated, cursor, total, done, versions,
     keks, error, owner, lease) = _fields(blob, 14)  # fmt: skip
    return RewrapJob(
        id=job_id.decode(),
        environment_id=environment_id.decode(),
        kek_ids=tuple(k.decode() for k in _unframe(kek_ids)),
        state=RewrapState(state.decode()),
        created_at=from_micros(int(created)),
        updated_at=from_micros(int(updated)),
        cursor=cursor.decode(),
        objects_total=int(total),
        objects_done=int(done),
        versions_rewrapped=int(versions),
        keks_rewrapped=int(keks),
        error=error.decode(),
        owner=owner.decode(),
        lease_until=from_micros(int(lease)) if lease else None,
    )


def encode_api_key(record: ApiKeyRecord) -> bytes:
    """Everything but `revoked_at`, which the Redis store keeps apart so a script can set it."""
    fields = [
        record.id.encode(),
        record.name.encode(),
        record.environment_id.encode(),
        _frame(p.encode() for p in record.permissions),
        record.secret_hash.encode(),
        b"%d" % to_micros(record.created_at),
    ]
    if record.context_constraints:
        # A seventh field only for a context-scoped key: every other key is stored byte for
        # byte as before scoping existed, and older records read as unscoped.
        fields.append(encode_constraints(record.context_constraints))
    return _record(*fields)


def encode_constraints(constraints: Iterable[tuple[str, str]]) -> bytes:
    """Context constraints as one field: (key, value) pairs, framed in turn."""
    return _frame(part.encode() for pair in constraints for part in pair)


def decode_constraints(field: bytes) -> tuple[tuple[str, str], ...]:
    parts = [p.decode() for p in _unframe(field)]
    if len(parts) % 2:
        raise StoreError("unreadable record: a context constraint without its value")
    return tuple((parts[i], parts[i + 1]) for i in range(0, len(parts), 2))


def decode_api_key(blob: bytes, revoked_at: datetime | None) -> ApiKeyRecord:
    fields = _fields(blob, 6, 7)
    key_id, name, environment_id, permissions, secret_hash, created = fields[:6]
    return ApiKeyRecord(
        id=key_id.decode(),
        name=name.decode(),
        environment_id=environment_id.decode(),
        permissions=tuple(p.decode() for p in _unframe(permissions)),
        secret_hash=secret_hash.decode(),
        created_at=from_micros(int(created)),
        revoked_at=revoked_at,
        context_constraints=decode_constraints(fields[6]) if len(fields) == 7 else (),
    )


def encode_audit_event(e: AuditEvent) -> bytes:
    return _record(
        e.id.encode(),
        e.type.encode(),
        b"%d" % to_micros(e.time),
        e.environment_id.encode(),
        e.actor_id.encode(),
        e.actor_name.encode(),
        e.outcome.encode(),
        e.request_id.encode(),
        e.method.encode(),
        e.peer.encode(),
        e.object_id.encode(),
        e.object_name.encode(),
        _frame(k.encode() for k in e.key_ids),
        encode_context(e.key_context).encode(),
        e.data_key_id.encode(),
        e.api_key_id.encode(),
        # Added with the audit chain (docs/FORMAT.md): older records end before these three.
        *((e.chain.encode(), b"%d" % e.seq, e.mac.encode()) if e.mac else ()),
    )


def decode_audit_event(blob: bytes) -> AuditEvent:
    fields = _unframe(memoryview(blob)[1:]) if blob and blob[0] == FORMAT else []
    chained = len(fields) == _CHAINED_AUDIT_FIELDS
    (event_id, kind, time, environment_id, actor_id, actor_name, outcome, request_id, method,
     peer, object_id, object_name, key_ids, key_context, data_key_id, api_key_id) = _fields(
        blob, _CHAINED_AUDIT_FIELDS if chained else 16
    )[:16]  # fmt: skip
    chain, seq, mac = fields[16:] if chained else (b"", b"0", b"")
    return AuditEvent(
        id=event_id.decode(),
        type=kind.decode(),
        time=from_micros(int(time)),
        environment_id=environment_id.decode(),
        actor_id=actor_id.decode(),
        actor_name=actor_name.decode(),
        outcome=outcome.decode(),
        request_id=request_id.decode(),
        method=method.decode(),
        peer=peer.decode(),
        object_id=object_id.decode(),
        object_name=object_name.decode(),
        key_ids=tuple(k.decode() for k in _unframe(key_ids)),
        key_context=decode_context(key_context),
        data_key_id=data_key_id.decode(),
        api_key_id=api_key_id.decode(),
        chain=bytes(chain).decode(),
        seq=int(bytes(seq)),
        mac=bytes(mac).decode(),
    )


def byok_match(record: ByokKeyRecord) -> str:
    """What a store keeps unique per environment: the item key and the pattern."""
    return f"{record.item_key}\0{record.pattern}"


def encode_byok_key(record: ByokKeyRecord) -> bytes:
    """A BYOK key record as stored: versioned JSON, times as microseconds since the epoch."""
    fields: dict[str, Any] = asdict(record)
    fields["created_at"] = to_micros(record.created_at)
    fields["verified_at"] = None if record.verified_at is None else to_micros(record.verified_at)
    fields["v"] = BYOK_KEY_RECORD_VERSION
    return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()


def decode_byok_key(data: bytes) -> ByokKeyRecord:
    fields = json.loads(data)
    version = fields.pop("v", None)
    if version != BYOK_KEY_RECORD_VERSION:
        raise ValueError(f"unknown BYOK key record version {version!r}")
    fields["created_at"] = from_micros(fields["created_at"])
    if fields["verified_at"] is not None:
        fields["verified_at"] = from_micros(fields["verified_at"])
    return ByokKeyRecord(**fields)


def byok_verified(record: ByokKeyRecord, at: datetime, ok: bool, error: str) -> ByokKeyRecord:
    """The record with a verification's outcome."""
    return replace(record, verified_at=at, verified=ok, verification_error="" if ok else error)


_CHAINED_AUDIT_FIELDS = 19


def _info_fields(info: VersionInfo) -> tuple[bytes, ...]:
    return (
        info.version_id.encode(),
        b"%d" % to_micros(info.created_at),
        b"%d" % info.size,
        info.etag.encode(),
    )


def _record(*fields: bytes) -> bytes:
    return bytes([FORMAT]) + _frame(fields)


def _fields(blob: bytes, *counts: int) -> list[bytes]:
    if not blob or blob[0] != FORMAT:
        raise StoreError("unreadable record: unknown format")
    fields = _unframe(memoryview(blob)[1:])
    if len(fields) not in counts:
        raise StoreError("unreadable record: wrong number of fields")
    return fields


def _frame(fields: Iterable[bytes]) -> bytes:
    parts: list[bytes] = []
    for field in fields:
        parts += (_LENGTH.pack(len(field)), field)
    return b"".join(parts)


def _unframe(data: bytes | memoryview) -> list[bytes]:
    view = memoryview(data)
    fields: list[bytes] = []
    at = 0
    while at < len(view):
        if at + _LENGTH.size > len(view):
            raise StoreError("unreadable record: truncated")
        (length,) = _LENGTH.unpack_from(view, at)
        at += _LENGTH.size + length
        if at > len(view):
            raise StoreError("unreadable record: truncated")
        fields.append(bytes(view[at - length : at]))
    return fields
