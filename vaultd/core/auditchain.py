"""Tamper-evident audit events: a keyed hash chain per writer, and keyed hashes of context
values (docs/SECURITY.md section 7, docs/AUDIT.md).

Every process that writes events starts a chain (`chain_<ULID>`) and numbers its events 1, 2, 3,
...; each event's `mac` is HMAC-SHA256(chain key, previous event's mac || the event's stored
record without its mac). Chains are per writer, not global, so several processes (workers,
hosts, CLI commands) append without coordinating; `verify` groups a stream's events by chain
and walks each in `seq` order. Without the key, which is not in the store, nobody who can write
the store can delete, edit or insert an event in the middle of a chain without the walk
stopping at it.

Context values are stored as `hmac-sha256:<hex>` under a second key, as HashiCorp Vault's audit
devices do: an event shows which tenant a call was for to whoever holds the value, and to
nobody else. `vaultd audit hash VALUE` gives the string to search for.

Both keys are derived (HKDF-SHA256, each with its own label) from one 32-byte secret in the
audit key file: every process writing one store must share it.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, replace
from hashlib import sha256
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from ulid import ULID

from vaultd import securefiles
from vaultd.storage import codec
from vaultd.storage.records import AuditEvent

_SECRET_BYTES = 32
_CHAIN_LABEL = b"vaultd audit chain v1"
_FIELD_LABEL = b"vaultd audit field v1"
FIELD_HASH_PREFIX = "hmac-sha256:"


@dataclass(frozen=True)
class AuditKeys:
    chain_key: bytes
    field_key: bytes

    @classmethod
    def from_secret(cls, secret: bytes) -> AuditKeys:
        if len(secret) != _SECRET_BYTES:
            raise ValueError(f"an audit key is {_SECRET_BYTES} bytes")
        return cls(_derive(secret, _CHAIN_LABEL), _derive(secret, _FIELD_LABEL))

    @classmethod
    def load_or_create(cls, path: Path) -> AuditKeys:
        """The keys of the file at `path`, made (0600, never through a symlink) if missing."""
        try:
            securefiles.private_dir(path.parent)
            # Complete or absent: a server and a CLI starting together read the same key.
            securefiles.create_complete(path, secrets.token_bytes(_SECRET_BYTES).hex().encode())
        except FileExistsError:
            pass
        text = path.read_text().strip()
        try:
            secret = bytes.fromhex(text)
        except ValueError:
            raise ValueError(f"{path}: not a vaultd audit key (64 hex digits)") from None
        return cls.from_secret(secret)

    def field_hash(self, value: str) -> str:
        """How an event stores a context value; what to search events for."""
        digest = hmac.new(self.field_key, value.encode(), sha256).hexdigest()
        return FIELD_HASH_PREFIX + digest

    def mac(self, previous: str, event: AuditEvent) -> str:
        # The record as stored, minus the chain fields (left out while mac is empty), then
        # the chain fields: the record is length-framed and seq is digits, so no ambiguity.
        unsigned = codec.encode_audit_event(replace(event, mac="")) + (
            f"|{event.chain}|{event.seq}".encode()
        )
        return hmac.new(self.chain_key, bytes.fromhex(previous) + unsigned, sha256).hexdigest()


def _derive(secret: bytes, label: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=label).derive(secret)


class Chain:
    """This writer's chain: links each new event to the one before it."""

    def __init__(self, keys: AuditKeys) -> None:
        self._keys = keys
        self.id = f"chain_{ULID()}"
        self._seq = 0
        self._last = ""

    def link(self, event: AuditEvent) -> AuditEvent:
        """`event` with its place in the chain and its mac. Called in creation order, with
        no await in between, so the numbering is the order the process made its events."""
        self._seq += 1
        linked = replace(event, chain=self.id, seq=self._seq)
        linked = replace(linked, mac=self._keys.mac(self._last, linked))
        self._last = linked.mac
        return linked


@dataclass(frozen=True)
class Break:
    """The first place a stream's events do not verify."""

    position: int  # 1-based, in the order the store returns the stream's events
    event_id: str
    chain: str
    problem: str


@dataclass(frozen=True)
class Verdict:
    events: int
    chains: int
    unchained: int  # written before chaining existed (or by a writer without a key)
    broken: Break | None


def verify(keys: AuditKeys, events: Iterable[AuditEvent]) -> Verdict:
    """Walk every chain in a stream's events (given in the store's order).

    Within a chain every event must follow the one before it (seq + 1, and a mac over the
    previous mac): a deleted, inserted or edited event breaks the walk there. A chain may
    start past seq 1: retention trimming removes a chain's oldest events, and vaultd cannot
    tell that from their deletion (nor a chain's newest events cut off from a chain that
    ended): SECURITY.md section 7 says so.
    """
    listed = list(events)
    chains: dict[str, list[tuple[int, AuditEvent]]] = {}
    unchained = 0
    for position, event in enumerate(listed, 1):
        if not event.mac:
            unchained += 1
            continue
        chains.setdefault(event.chain, []).append((position, event))
    breaks = [b for chain in chains.values() if (b := _walk(keys, chain)) is not None]
    first = min(breaks, key=lambda b: b.position, default=None)
    return Verdict(len(listed), len(chains), unchained, first)


def _walk(keys: AuditKeys, chain: list[tuple[int, AuditEvent]]) -> Break | None:
    ordered = sorted(chain, key=lambda pe: pe[1].seq)
    position, first = ordered[0]
    # The first kept event links to a mac only a trimmed event had, unless it is the first.
    if first.seq == 1 and not hmac.compare_digest(first.mac, keys.mac("", first)):
        return Break(
            position, first.id, first.chain,
            "its mac does not verify (edited, or its writer used another audit key)",
        )  # fmt: skip
    previous = first
    for position, event in ordered[1:]:
        if event.seq == previous.seq:
            return Break(position, event.id, event.chain, f"seq {event.seq} appears twice")
        if event.seq != previous.seq + 1:
            missing = f"{previous.seq + 1} to {event.seq - 1}"
            return Break(
                position, event.id, event.chain, f"events {missing} of its chain are missing"
            )
        if not hmac.compare_digest(event.mac, keys.mac(previous.mac, event)):
            return Break(position, event.id, event.chain, "its mac does not verify (edited)")
        previous = event
    return None


def audit_key_path(data_dir: Path, configured: Path | None) -> Path:
    return configured or data_dir / "audit.key"
