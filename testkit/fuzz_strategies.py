"""Hypothesis strategies for vaultd requests, built from the generated descriptors.

A request field is drawn by what it *means* when vaultd gives its name a meaning (names, ids,
cursors, key contexts, blobs, secrets, limits) and by its protobuf type otherwise, so an RPC or a
field added later is fuzzed without touching this file. Each meaningful field mixes values a real
client sends (so a request often gets past its first check and reaches the code behind it) with
hostile ones: the documented boundaries and one past them, junk, and mutations of real blobs.

Blobs derived from real ones carry what they may open to: a mutated blob is allowed to fail or to
open to its origin's key or plaintext, never to anything else, so a blob that authenticates when
it should not is caught, not just a crash.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import strategies as st
from ulid import ULID

from vaultd.core.scope import MAX_CONSTRAINTS

# The fuzz servers' max_value_bytes (tests/fuzz/conftest.py): values and plaintexts at and one
# past it are boundaries.
VALUE_LIMIT = 64 * 1024
MAX_NAME = 512
MAX_CONTEXT_ITEMS = 10
MAX_CONTEXT_KEY = 120
MAX_CONTEXT_VALUE = 500
# Timestamp's documented range: 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59Z.
MIN_TIMESTAMP_SECONDS = -62135596800
MAX_TIMESTAMP_SECONDS = 253402300799

INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)

# The local-encryption blob: IV (12) || tag (16) || uLEB128(len(encrypted_keys)) || keys || data.
BLOB_HEADER = 12 + 16
# encrypted_keys v1: version (1) || DEK id (16) || count (1) || entries.
KEYS_HEADER = 1 + 16 + 1
ENTRY_FIXED = 4 + 12 + 48  # after the KEK id: version, nonce, wrapped DEK

Opening = tuple[bytes, bytes]
"""What a blob may legitimately open to: (associated data, plaintext) for a ciphertext, or
(b"", data key) for encrypted_keys."""


# --- the real material requests are built from -----------------------------------------------


@dataclass(frozen=True)
class DataKeySample:
    encrypted_keys: bytes
    data_key: bytes


@dataclass(frozen=True)
class SealedSample:
    ciphertext: bytes
    plaintext: bytes
    associated_data: bytes


@dataclass(frozen=True)
class Pool:
    """Real things made on the server under test before fuzzing it."""

    objects: tuple[tuple[str, tuple[str, ...]], ...]
    """(object id, its version ids)."""
    names: tuple[str, ...]
    contexts: tuple[Mapping[str, str], ...]
    data_keys: tuple[DataKeySample, ...]
    sealed: tuple[SealedSample, ...]
    deleted: tuple[tuple[str, tuple[str, ...]], ...] = ()
    """Objects deleted before fuzzing: what UndeleteObject and PurgeObject get to name."""

    def __repr__(self) -> str:
        # Hypothesis prints every argument of a failing example; the pool is context, not news.
        return (
            f"Pool({len(self.objects)} objects, {len(self.data_keys)} data keys, "
            f"{len(self.sealed)} sealed blobs)"
        )

    def for_rpc(self, rpc_name: str) -> Pool:
        """The objects an RPC may name: deleting RPCs get their own half of them. Hypothesis
        favours the first element of a list, so a shared list would have the deletes remove
        exactly the objects every later read names, and the reads would see only NOT_FOUND.
        Undelete and purge each get half of the objects deleted before fuzzing (with the
        deleting half, to name live ones too)."""
        half = len(self.objects) // 2
        if rpc_name.startswith(("Undelete", "Purge")):
            quarter = len(self.deleted) // 2
            deleted = self.deleted[:quarter] if rpc_name[0] == "P" else self.deleted[quarter:]
            return replace(self, objects=deleted + self.objects[half:])
        destructive = rpc_name.startswith(("Delete", "Revoke"))
        objects = self.objects[half:] if destructive else self.objects[:half]
        return replace(self, objects=objects)

    @property
    def object_ids(self) -> tuple[str, ...]:
        return tuple(object_id for object_id, _ in self.objects)

    @property
    def version_ids(self) -> tuple[str, ...]:
        return tuple(v for _, versions in self.objects for v in versions)


@dataclass(frozen=True)
class Drawn:
    """One field's value, with what the checks need to know about it."""

    value: Any
    secret: bytes = b""
    """Bytes the server must never echo in an error (a value, a plaintext, associated data)."""
    opens_to: frozenset[Opening] | None = None
    """For a blob: what it may open to; empty when it must not open at all; None: not a blob."""


@dataclass
class FuzzRequest:
    message: Message
    secrets: list[bytes] = field(default_factory=list)
    opens_to: dict[str, frozenset[Opening]] = field(default_factory=dict)


# --- boundaries ------------------------------------------------------------------------------

ASTRAL = "\U0001f600"  # one character, four UTF-8 bytes, two UTF-16 units
RTL = "\u05e9"  # Hebrew shin
# Class 3 (docs/SECURITY.md section 3): text that displays as, or normalises to, other text,
# and the separators KEK ids and "key=value" items were once split at.
ENCODING_ATTACKS = (
    "\u200b",  # zero-width space
    "a\u200cb",  # zero-width non-joiner
    "a\u200db",  # zero-width joiner
    "a\u2060b",  # word joiner
    "\ufeffbom",  # byte order mark
    "\u2066isolate\u2069",  # left-to-right isolate
    "\u200fmark",  # right-to-left mark
    "\u061c",  # Arabic letter mark
    "esc\x1b[31m",
    "cafe\u0301",  # NFD of café
    "caf\u00e9",  # NFC of café
    "\u0344" * MAX_CONTEXT_VALUE,  # NFC doubles each: within the limit before, over it after
    "\u212b",  # Angstrom sign, NFC to U+00C5
    "a=b",
    "=",
    "*",
    "acme*",
    "a\x00b\x00c",
)
NAME_BOUNDARIES = (
    *ENCODING_ATTACKS,
    "",
    "a",
    ASTRAL,
    "x" * MAX_NAME,
    "x" * (MAX_NAME + 1),
    ASTRAL * MAX_NAME,
    ASTRAL * (MAX_NAME + 1),
    RTL * MAX_NAME,
    "x" * (MAX_NAME - 1) + ASTRAL,
    "\u202eevil\u202c",  # bidi override
    "a\x00b",
    "\x00",
    "tab\tname",
    "line\nbreak",
    "\x1f",
    "\x7f",
    "\x85",  # NEL, a C1 control
    "\u2028",
    " ",
    "../../etc/passwd",
    "{default}:obj:secret_",
    "%_*?[]",
    "x" * 10_000,
)
CONTEXT_KEY_BOUNDARIES = (
    "",
    "k",
    "k" * MAX_CONTEXT_KEY,
    "k" * (MAX_CONTEXT_KEY + 1),
    ASTRAL * MAX_CONTEXT_KEY,
    ASTRAL * (MAX_CONTEXT_KEY + 1),
    RTL * 7,
    "a\x00b",
    "\n",
    "organization_id",
    *ENCODING_ATTACKS,
)
CONTEXT_VALUE_BOUNDARIES = (
    "",
    "v",
    "v" * MAX_CONTEXT_VALUE,
    "v" * (MAX_CONTEXT_VALUE + 1),
    ASTRAL * MAX_CONTEXT_VALUE,
    ASTRAL * (MAX_CONTEXT_VALUE + 1),
    "\u202e" + RTL * 3,
    "\x00",
    "=",
    *ENCODING_ATTACKS,
)
LIMIT_BOUNDARIES = (0, 1, 2, 10, 99, 100, 101, -1, -100, INT32[0], INT32[1])
LIMITS = st.sampled_from(LIMIT_BOUNDARIES) | st.integers(0, 100) | st.integers(*INT32)
UNKNOWN_ENUM_NUMBERS = (-1, 99, 1000, INT32[0], INT32[1])
TIMESTAMP_SECONDS = (
    0,
    -1,
    MIN_TIMESTAMP_SECONDS,
    MIN_TIMESTAMP_SECONDS - 1,
    MAX_TIMESTAMP_SECONDS,
    MAX_TIMESTAMP_SECONDS + 1,
    2**62,
    -(2**62),
    INT64[0],
    INT64[1],
)
TIMESTAMP_NANOS = (0, 999_999_999, 1_000_000_000, -1, INT32[0], INT32[1])


# --- ids -------------------------------------------------------------------------------------


def _ulid(raw: bytes) -> str:
    return str(ULID.from_bytes(raw))


def ids(prefix: str, real: Sequence[str]) -> st.SearchStrategy[str]:
    """Ids with `prefix`: real ones, well-formed ones that do not exist, and malformed ones."""
    well_formed = st.binary(min_size=16, max_size=16).map(lambda b: prefix + _ulid(b))
    malformed = st.sampled_from(
        (
            "",
            prefix,
            prefix + "0" * 25,
            prefix + "0" * 27,
            prefix + "Z" * 26,  # matches [0-9A-Z]{26} but overflows 128 bits
            prefix + "8" + "0" * 25,  # the first character of a ULID is at most 7
            prefix + "7ZZZZZZZZZZZZZZZZZZZZZZZZZ",  # the largest ULID: well-formed
            prefix + "0" * 25 + "I",  # I, L, O and U are not Crockford base32
            prefix.upper() + "0" * 26,
            prefix + "0" * 26 + "\n",
            prefix + "\uff10" * 26,  # fullwidth digits
            "secret_" + "0" * 26 if prefix != "secret_" else "ver_" + "0" * 26,
            "*",
            "{default}",
        )
    )
    mangled = well_formed.map(str.lower) | well_formed.map(lambda s: s[:-1])
    parts = [well_formed, malformed, mangled, st.text(max_size=40)]
    if real:
        # Twice: requests naming a real object get past the id check to the code behind it.
        parts[:0] = [st.sampled_from(tuple(real))] * 2
    return st.one_of(parts)


def cursors(real: Sequence[str]) -> st.SearchStrategy[str]:
    """List cursors: object ids (ListObjects) and the stores' audit cursors (a SQLite sequence
    number, a Redis stream id), including numbers past what either store can hold, which once
    made ListAuditEvents fail with INTERNAL (SECURITY.md section 6)."""
    numbers = st.sampled_from((0, 1, 2**63 - 1, 2**63, 2**64 - 1, 2**64, 10**40)) | st.integers(
        0, 10**25
    )
    stream_ids = st.tuples(numbers, numbers).map(lambda p: f"{p[0]}-{p[1]}")
    return ids("secret_", real) | numbers.map(str) | stream_ids


# --- names and contexts ----------------------------------------------------------------------


def names(real: Sequence[str]) -> st.SearchStrategy[str]:
    fresh = st.uuids().map(lambda u: f"fuzz-{u}")
    parts: list[st.SearchStrategy[str]] = [
        fresh,
        st.sampled_from(NAME_BOUNDARIES),
        st.text(max_size=40),
        st.text(min_size=MAX_NAME - 4, max_size=MAX_NAME + 4),
    ]
    if real:
        parts.append(st.sampled_from(tuple(real)))
    return st.one_of(parts)


def contexts(real: Sequence[Mapping[str, str]]) -> st.SearchStrategy[dict[str, str]]:
    keys = st.sampled_from(CONTEXT_KEY_BOUNDARIES) | st.text(max_size=MAX_CONTEXT_KEY + 5)
    values = st.sampled_from(CONTEXT_VALUE_BOUNDARIES) | st.text(max_size=MAX_CONTEXT_VALUE + 5)

    def of_size(n: int) -> st.SearchStrategy[dict[str, str]]:
        return st.dictionaries(keys, values, min_size=n, max_size=n)

    # A small set of tenants, so valid contexts reuse their KEKs instead of minting one each.
    tenants = st.integers(0, 7).map(lambda i: {"organization_id": f"fuzz_org_{i}"})
    wide = st.just({f"item_{i}": f"value_{i}" for i in range(MAX_CONTEXT_ITEMS)})
    parts: list[st.SearchStrategy[dict[str, str]]] = [
        tenants,
        wide,
        st.sampled_from((0, 1, MAX_CONTEXT_ITEMS, MAX_CONTEXT_ITEMS + 1)).flatmap(of_size),
        st.dictionaries(keys, values, max_size=MAX_CONTEXT_ITEMS + 2),
    ]
    if real:
        parts.append(st.sampled_from(tuple(dict(c) for c in real)))
    return st.one_of(parts)


def items() -> st.SearchStrategy[str]:
    """Context items as "key=value" (KekSelector.items, ShredKek.item), with the encodings of
    class 3 on either side of the "=". Never the pool's own items: a fuzzed ShredKek with
    confirm set would destroy the keys the other checks open blobs with."""
    parts = st.sampled_from((*ENCODING_ATTACKS, "k", "organization_id", "v", ""))
    return st.builds(lambda k, v: f"{k}={v}", parts, parts) | st.text(max_size=40)


def item_parts(side: int) -> st.SearchStrategy[str]:
    """One side of a context item given separately (ShredKek.item_key / item_value)."""
    boundaries = (CONTEXT_KEY_BOUNDARIES, CONTEXT_VALUE_BOUNDARIES)[side]
    return st.sampled_from(boundaries) | st.text(max_size=20)


# --- API keys (AdminService) ------------------------------------------------------------------


def environments() -> st.SearchStrategy[str]:
    boundaries = ("default", "", "e", "x" * 64, "x" * 65, "other-env", "{default}", "a:b", "..")
    return st.sampled_from(boundaries) | st.text(max_size=70)


def permissions() -> st.SearchStrategy[str]:
    known = ("objects:read", "objects:write", "keys:use", "admin")
    return st.sampled_from((*known, "", "ADMIN", "objects:*", "admin ")) | st.text(max_size=20)


def context_constraints() -> st.SearchStrategy[str]:
    """CreateApiKey.context_constraints: items, prefixes, stray and doubled `*`s."""
    shapes = ("organization_id=org_1", "organization_id=org_*", "k=*", "k=a*b", "k=a**", "=v", "k")
    return st.sampled_from(shapes) | items() | items().map(lambda i: i + "*")


# --- secrets ---------------------------------------------------------------------------------


def secrets(real_aads: Sequence[bytes]) -> st.SearchStrategy[bytes]:
    sizes = st.sampled_from((VALUE_LIMIT, VALUE_LIMIT + 1)).map(lambda n: b"\xa5" * n)
    marked = st.binary(min_size=4, max_size=40).map(lambda b: b"fuzz-secret:" + b)
    parts = [
        st.just(b""),
        st.just(b"s"),
        marked,
        st.binary(min_size=8, max_size=300),
        sizes,
    ]
    if real_aads:
        parts.append(st.sampled_from(tuple(real_aads)))
    return st.one_of(parts)


# --- blobs -----------------------------------------------------------------------------------


def uleb128(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def split_keys(blob: bytes) -> tuple[bytes, list[bytes]]:
    """encrypted_keys as (header, [entry, ...]), read independently of vaultd's parser."""
    header, entries, at = blob[:KEYS_HEADER], [], KEYS_HEADER
    while at < len(blob):
        end = at + 1 + blob[at] + ENTRY_FIXED
        entries.append(blob[at:end])
        at = end
    return header, entries


def join_keys(header: bytes, entries: Sequence[bytes], count: int | None = None) -> bytes:
    n = len(entries) if count is None else count
    return header[:-1] + bytes([n & 0xFF]) + b"".join(entries)


def split_sealed(blob: bytes) -> tuple[bytes, bytes, bytes]:
    """A local-encryption blob as (IV || tag, encrypted_keys, ciphertext); for the committing
    variant (docs/FORMAT.md section 4.4), (IV || tag || 0x00 0x43, encrypted_keys, commitment
    || ciphertext), so the mutations target its length prefix just the same."""
    head = BLOB_HEADER + 2 if blob[BLOB_HEADER : BLOB_HEADER + 2] == b"\x00C" else BLOB_HEADER
    at, length, shift = head, 0, 0
    while True:
        byte = blob[at]
        length |= (byte & 0x7F) << shift
        shift, at = shift + 7, at + 1
        if not byte & 0x80:
            break
    return blob[:head], blob[at : at + length], blob[at + length :]


@st.composite
def byte_mutations(draw: st.DrawFn, blob: bytes) -> bytes:
    """Structure-blind damage: flip a bit, truncate, extend, overwrite, or cut a slice out."""
    data = bytearray(blob)
    kind = draw(st.sampled_from(("flip", "truncate", "extend", "overwrite", "cut")))
    if kind == "extend" or not data:
        return bytes(data) + draw(st.binary(min_size=1, max_size=64))
    at = draw(st.integers(0, len(data) - 1))
    if kind == "flip":
        data[at] ^= 1 << draw(st.integers(0, 7))
    elif kind == "truncate":
        del data[at:]
    elif kind == "overwrite":
        data[at] = draw(st.integers(0, 255))
    else:
        del data[at : at + draw(st.integers(1, 32))]
    return bytes(data)


@st.composite
def keys_mutations(draw: st.DrawFn, a: DataKeySample, b: DataKeySample) -> Drawn:
    """encrypted_keys built from real ones: damaged, spliced, or with a field pushed past its
    range. Whatever opens must open to one of the keys whose entries (under their own DEK id)
    are left intact."""
    opens_a = frozenset({(b"", a.data_key)})
    header_a, entries_a = split_keys(a.encrypted_keys)
    header_b, entries_b = split_keys(b.encrypted_keys)
    entry = entries_a[0]
    kind = draw(
        st.sampled_from(
            (
                "bytes",
                "a+b entries",
                "b entries under a",
                "first entry only",
                "count 0",
                "count 11",
                "count > entries",
                "kek id length 0",
                "kek id length 65",
                "kek version 0",
                "kek version max",
                "non-ascii kek id",
                "format 2",
                "eleven entries",
            )
        )
    )
    if kind == "bytes":
        return Drawn(draw(byte_mutations(a.encrypted_keys)), opens_to=opens_a)
    if kind == "a+b entries":
        # B's entries are bound to B's DEK id; only A's can open, to A's key.
        return Drawn(join_keys(header_a, entries_b + entries_a), opens_to=opens_a)
    if kind == "b entries under a":
        # Bound to B's DEK id, they open under A's header only when A and B are one key.
        same = frozenset({(b"", b.data_key)}) if header_a == header_b else frozenset()
        return Drawn(join_keys(header_a, entries_b), opens_to=same)
    if kind == "first entry only":
        return Drawn(join_keys(header_a, entries_a[:1]), opens_to=opens_a)
    if kind == "eleven entries":
        return Drawn(join_keys(header_a, [entry] * 11), opens_to=opens_a)
    if kind.startswith("count"):
        count = {"count 0": 0, "count 11": 11}.get(kind, len(entries_a) + 1)
        return Drawn(join_keys(header_a, entries_a, count), opens_to=opens_a)
    if kind == "format 2":
        return Drawn(b"\x02" + a.encrypted_keys[1:], opens_to=opens_a)
    id_len = entry[0]
    kek_id, rest = entry[1 : 1 + id_len], entry[1 + id_len :]
    if kind == "kek id length 0":
        bad = b"\x00" + rest
    elif kind == "kek id length 65":
        bad = bytes([65]) + kek_id + b"0" * (65 - len(kek_id)) + rest
    elif kind == "kek version 0":
        bad = entry[: 1 + id_len] + struct.pack(">I", 0) + rest[4:]
    elif kind == "kek version max":
        bad = entry[: 1 + id_len] + struct.pack(">I", 2**32 - 1) + rest[4:]
    else:
        bad = bytes([id_len]) + b"\xff" + kek_id[1:] + rest
    return Drawn(join_keys(header_a, [bad, *entries_a[1:]]), opens_to=opens_a)


@st.composite
def sealed_mutations(draw: st.DrawFn, a: SealedSample, b: SealedSample) -> Drawn:
    """Local-encryption blobs built from real ones, with the LEB128 length prefix as a target."""
    opens_a = frozenset({(a.associated_data, a.plaintext)})
    head, keys, data = split_sealed(a.ciphertext)
    _, keys_b, data_b = split_sealed(b.ciphertext)
    kind = draw(
        st.sampled_from(
            (
                "bytes",
                "overlong length",
                "unterminated length",
                "huge length",
                "zero length",
                "length + 1",
                "length - 1",
                "length only",
                "b's keys",
                "b's data",
                "keys damaged",
                "header only",
            )
        )
    )
    if kind == "bytes":
        return Drawn(draw(byte_mutations(a.ciphertext)), opens_to=opens_a)
    if kind == "overlong length":
        # The same number with a redundant continuation byte: rejected as overlong, or (if a
        # decoder tolerates it) opens to the original and nothing else.
        prefix = bytearray(uleb128(len(keys)))
        prefix[-1] |= 0x80
        return Drawn(head + bytes(prefix) + b"\x00" + keys + data, opens_to=opens_a)
    if kind == "unterminated length":
        run = draw(st.integers(1, 16))
        return Drawn(head + b"\xff" * run, opens_to=frozenset())
    if kind == "huge length":
        n = draw(st.sampled_from((2**31, 2**40, 2**64, 10**30)))
        return Drawn(head + uleb128(n) + keys + data, opens_to=frozenset())
    if kind == "zero length":
        return Drawn(head + b"\x00" + keys + data, opens_to=frozenset())
    if kind in ("length + 1", "length - 1"):
        n = len(keys) + (1 if kind == "length + 1" else -1)
        return Drawn(head + uleb128(n) + keys + data, opens_to=frozenset())
    if kind == "length only":
        return Drawn(head + uleb128(len(keys)), opens_to=frozenset())
    # Swapping in B's parts changes nothing when A and B are the same blob (drawn twice).
    same = opens_a if a == b else frozenset()
    if kind == "b's keys":
        return Drawn(head + uleb128(len(keys_b)) + keys_b + data, opens_to=same)
    if kind == "b's data":
        return Drawn(head + uleb128(len(keys)) + keys + data_b, opens_to=same)
    if kind == "keys damaged":
        damaged = draw(byte_mutations(keys))
        return Drawn(head + uleb128(len(damaged)) + damaged + data, opens_to=opens_a)
    return Drawn(head, opens_to=frozenset())


def encrypted_keys(pool: Pool) -> st.SearchStrategy[Drawn]:
    junk = st.binary(max_size=200).map(lambda b: Drawn(b, opens_to=frozenset()))
    if not pool.data_keys:
        return junk
    samples = st.sampled_from(pool.data_keys)
    real = samples.map(lambda s: Drawn(s.encrypted_keys, opens_to=frozenset({(b"", s.data_key)})))
    mutated = st.tuples(samples, samples).flatmap(lambda ab: keys_mutations(*ab))
    return st.one_of(real, mutated, mutated, junk)


def ciphertexts(pool: Pool) -> st.SearchStrategy[Drawn]:
    junk = st.binary(max_size=200).map(lambda b: Drawn(b, opens_to=frozenset()))
    if not pool.sealed:
        return junk
    samples = st.sampled_from(pool.sealed)
    real = samples.map(
        lambda s: Drawn(s.ciphertext, opens_to=frozenset({(s.associated_data, s.plaintext)}))
    )
    mutated = st.tuples(samples, samples).flatmap(lambda ab: sealed_mutations(*ab))
    return st.one_of(real, mutated, mutated, junk)


# --- fields by meaning, then by type ---------------------------------------------------------

FieldStrategy = Callable[[Pool], st.SearchStrategy[Drawn]]


def _plain(make: Callable[[Pool], st.SearchStrategy[Any]]) -> FieldStrategy:
    return lambda pool: make(pool).map(Drawn)


def _secret(pool: Pool) -> st.SearchStrategy[Drawn]:
    aads = [s.associated_data for s in pool.sealed if s.associated_data]
    return secrets(aads).map(lambda b: Drawn(b, secret=b))


_STRING, _BYTES = FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BYTES
_MAP, _INT32 = FieldDescriptor.TYPE_MESSAGE, FieldDescriptor.TYPE_INT32

# Field name -> (the type vaultd gives it, how to draw it). A field of that name but another
# type (some future message) falls back to drawing by type.
BY_NAME: dict[str, tuple[int, FieldStrategy]] = {
    "name": (_STRING, _plain(lambda p: names(p.names))),
    "name_prefix": (_STRING, _plain(lambda p: names(p.names))),
    "id": (_STRING, _plain(lambda p: ids("secret_", p.object_ids))),
    "before": (_STRING, _plain(lambda p: ids("secret_", p.object_ids))),
    "after": (_STRING, _plain(lambda p: cursors(p.object_ids))),
    "version_id": (_STRING, _plain(lambda p: ids("ver_", p.version_ids))),
    "version_check": (_STRING, _plain(lambda p: ids("ver_", p.version_ids))),
    "key_context": (_MAP, _plain(lambda p: contexts(p.contexts))),
    "item": (_STRING, _plain(lambda p: items())),
    "items": (_STRING, _plain(lambda p: st.lists(items(), max_size=3))),
    "item_key": (_STRING, _plain(lambda p: item_parts(0))),
    "item_value": (_STRING, _plain(lambda p: item_parts(1))),
    "limit": (_INT32, _plain(lambda p: LIMITS)),
    "environment_id": (_STRING, _plain(lambda p: environments())),
    "permissions": (_STRING, _plain(lambda p: st.lists(permissions(), max_size=5))),
    "context_constraints": (
        _STRING,
        _plain(lambda p: st.lists(context_constraints(), max_size=MAX_CONSTRAINTS + 2)),
    ),
    "encrypted_keys": (_BYTES, encrypted_keys),
    "ciphertext": (_BYTES, ciphertexts),
    "value": (_BYTES, _secret),
    "plaintext": (_BYTES, _secret),
    "associated_data": (_BYTES, _secret),
}

_INTS = {
    FieldDescriptor.TYPE_INT32: INT32,
    FieldDescriptor.TYPE_SINT32: INT32,
    FieldDescriptor.TYPE_SFIXED32: INT32,
    FieldDescriptor.TYPE_INT64: INT64,
    FieldDescriptor.TYPE_SINT64: INT64,
    FieldDescriptor.TYPE_SFIXED64: INT64,
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}


def by_type(fd: FieldDescriptor, pool: Pool, depth: int) -> st.SearchStrategy[Any]:
    """A strategy for one value of a field's type (one map entry's value, one list element)."""
    if fd.type in _INTS:
        lo, hi = _INTS[fd.type]
        return st.sampled_from((0, 1, lo, hi)) | st.integers(lo, hi)
    if fd.type == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if fd.type == FieldDescriptor.TYPE_FLOAT:
        return st.floats(width=32)
    if fd.type == FieldDescriptor.TYPE_DOUBLE:
        return st.floats()
    if fd.type == FieldDescriptor.TYPE_STRING:
        return st.sampled_from(NAME_BOUNDARIES) | st.text(max_size=64)
    if fd.type == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=64)
    if fd.type == FieldDescriptor.TYPE_ENUM:
        assert fd.enum_type is not None
        known = tuple(v.number for v in fd.enum_type.values)
        return st.sampled_from(known + UNKNOWN_ENUM_NUMBERS)
    assert fd.message_type is not None  # every scalar type is handled above
    if fd.message_type.full_name == "google.protobuf.Timestamp":
        # In range as often as not, so the rest of the request gets a say too.
        valid_seconds = st.integers(MIN_TIMESTAMP_SECONDS, MAX_TIMESTAMP_SECONDS)
        return st.builds(
            _timestamp,
            valid_seconds | st.sampled_from(TIMESTAMP_SECONDS) | st.integers(*INT64),
            st.integers(0, 999_999_999) | st.sampled_from(TIMESTAMP_NANOS) | st.integers(*INT32),
        )
    return messages(fd.message_type, pool, depth + 1).map(lambda r: r.message)


def _timestamp(seconds: int, nanos: int) -> Message:
    return Timestamp(seconds=seconds, nanos=nanos)


def field_values(fd: FieldDescriptor, pool: Pool, depth: int) -> st.SearchStrategy[Drawn]:
    """What to put in a field, by its meaning or else its type; Drawn(None) leaves it unset."""
    meaning = BY_NAME.get(fd.name)
    if meaning is not None and meaning[0] == fd.type:
        one = meaning[1](pool)
    elif fd.is_repeated and fd.message_type is not None and fd.message_type.GetOptions().map_entry:
        k, v = fd.message_type.fields_by_name["key"], fd.message_type.fields_by_name["value"]
        one = st.dictionaries(by_type(k, pool, depth), by_type(v, pool, depth), max_size=4).map(
            Drawn
        )
    elif fd.is_repeated:
        one = st.lists(by_type(fd, pool, depth), max_size=4).map(Drawn)
    else:
        one = by_type(fd, pool, depth).map(Drawn)
    # Unset (the default) as often as not-quite-right: most requests in the wild leave most
    # optional fields alone, and a request must get past one bad field to reach the next check.
    return st.one_of(one, one, st.just(Drawn(None)))


@st.composite
def messages(draw: st.DrawFn, descriptor: Descriptor, pool: Pool, depth: int = 0) -> FuzzRequest:
    """A message of `descriptor` with every field drawn (nested messages to a bounded depth)."""
    message = message_factory.GetMessageClass(descriptor)()
    request = FuzzRequest(message)
    for fd in descriptor.fields:
        if depth > 2 and fd.message_type is not None:
            continue  # bounded recursion for self-referencing messages
        drawn = draw(field_values(fd, pool, depth))
        if drawn.value is None:
            continue
        _assign(message, fd, drawn.value)
        if drawn.secret:
            request.secrets.append(drawn.secret)
        if drawn.opens_to is not None:
            request.opens_to[fd.name] = drawn.opens_to
    if depth == 0 and draw(st.booleans()):
        _make_coherent(draw, request, pool)
    return request


# Requests whose key_context filters what they read rather than naming a new object's context.
_CONTEXT_FILTERED = ("GetObjectRequest", "GetObjectByNameRequest", "ListObjectsRequest")


def _make_coherent(draw: st.DrawFn, request: FuzzRequest, pool: Pool) -> None:
    """Fields drawn one by one rarely fit together (an object and one of its versions; a blob
    and the associated data it was sealed with; one list cursor, not two). Now and then make
    them fit, so the request gets past those checks to the code that runs when they pass."""
    message = request.message
    fields = message.DESCRIPTOR.fields_by_name
    if "before" in fields and "after" in fields:
        message.ClearField(draw(st.sampled_from(("before", "after"))))
    version_field = next((f for f in ("version_id", "version_check") if f in fields), None)
    if "id" in fields and version_field and pool.objects:
        object_id, versions = draw(st.sampled_from(pool.objects))
        setattr(message, "id", object_id)  # noqa: B010 - Message declares no fields
        # The newest version: the current one, unless the fuzzer has updated the object since.
        setattr(message, version_field, draw(st.sampled_from(versions[-1:] + versions)))
    if message.DESCRIPTOR.name in _CONTEXT_FILTERED and pool.contexts:
        # A filter drawn item by item almost never matches; the pool's first context is held
        # by two of every three pooled objects, and no filter matches them all.
        wanted = draw(st.sampled_from(({}, dict(pool.contexts[0]))))
        filter_map = getattr(message, "key_context")  # noqa: B009 - Message declares no fields
        filter_map.clear()
        filter_map.update(wanted)
        if "id" in fields and pool.objects:
            setattr(message, "id", draw(st.sampled_from(pool.object_ids)))  # noqa: B010
    may_open = request.opens_to.get("ciphertext")
    if "associated_data" in fields and may_open:
        aad = draw(st.sampled_from(sorted(may_open)))[0]
        setattr(message, "associated_data", aad)  # noqa: B010 - Message declares no fields
        request.secrets.append(aad)


def _assign(message: Message, fd: FieldDescriptor, value: Any) -> None:
    target = getattr(message, fd.name)
    if fd.is_repeated and fd.message_type is not None and fd.message_type.GetOptions().map_entry:
        value_fd = fd.message_type.fields_by_name["value"]
        for k, v in value.items():
            if value_fd.message_type is not None:
                target[k].CopyFrom(v)
            else:
                target[k] = v
    elif fd.is_repeated:
        if fd.message_type is not None:
            for item in value:
                target.add().CopyFrom(item)
        else:
            target.extend(value)
    elif fd.message_type is not None:
        target.CopyFrom(value)
    else:
        setattr(message, fd.name, value)


# --- whole requests as raw bytes -------------------------------------------------------------


def _tag(number: int, wire_type: int) -> bytes:
    return uleb128(number << 3 | wire_type)


def wire_junk(descriptor: Descriptor) -> st.SearchStrategy[bytes]:
    """Bytes that look like protobuf until they do not: bad UTF-8 in a string field, lengths
    past the end, unterminated varints, unknown and invalid wire types, unclosed groups."""
    string_fields = [f.number for f in descriptor.fields if f.type == FieldDescriptor.TYPE_STRING]
    number = st.sampled_from(string_fields or [1])
    return st.one_of(
        number.map(lambda n: _tag(n, 2) + b"\x02\xff\xfe"),  # invalid UTF-8 in a string
        number.map(lambda n: _tag(n, 2) + b"\x03\xed\xa0\x80"),  # an encoded surrogate
        number.map(lambda n: _tag(n, 2) + uleb128(1000) + b"short"),
        st.integers(1, 20).map(lambda k: b"\x08" + b"\xff" * k),
        st.integers(1, 2**29 - 1).map(lambda n: _tag(n, 7)),  # wire type 7 does not exist
        st.integers(1, 2**29 - 1).map(lambda n: _tag(n, 3)),  # start group, never ended
        st.just(b"\x00"),  # field number 0
        st.just(_tag(1, 2) + b"\xff" * 10 + b"\x01"),  # a 10-byte overlong length
    )


def raw_requests(descriptor: Descriptor, pool: Pool) -> st.SearchStrategy[bytes]:
    serialized = messages(descriptor, pool).map(lambda r: r.message.SerializeToString())
    return st.one_of(
        st.binary(max_size=300),
        wire_junk(descriptor),
        serialized.flatmap(byte_mutations),
        st.tuples(serialized, wire_junk(descriptor)).map(lambda t: t[0] + t[1]),
    )
