"""Audit events: one per call, one per KEK made, one per API key made or revoked.

Event types use the WorkOS names where WorkOS has one (docs/AUDIT.md maps every RPC). An event
holds ids, names, key contexts and the outcome, never a value, plaintext, data key or API key:
AuditEvent has no field that could carry one.

Events are stored with the data (a Redis Stream per environment, a table in the embedded store)
and trimmed to the retention on write. Events of concurrent calls are written together (group
commit, groupcommit.py): one SQLite transaction or one pipelined Redis round trip per batch, and
each call still waits until its own event is stored. core builds and stores them; vaultd.api
decides which event each call makes. Events core makes on its own (a KEK created during a call)
name the call being served, which its server (the API's authentication, the console) sets in
ORIGIN.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from ulid import ULID

from vaultd.core.auditchain import AuditKeys, Chain
from vaultd.core.envelope import key_id
from vaultd.core.errors import InvalidArgument, InvalidCursor
from vaultd.core.groupcommit import GroupCommit
from vaultd.core.types import Actor, store_errors
from vaultd.core.validation import (
    MAX_CONTEXT_ITEMS,
    MAX_CONTEXT_KEY_CHARS,
    MAX_CONTEXT_VALUE_CHARS,
    MAX_NAME_CHARS,
)
from vaultd.storage.base import AuditStore
from vaultd.storage.errors import BadCursor
from vaultd.storage.records import (
    AuditEvent,
    AuditPage,
    AuditQuery,
    DeletedObject,
    KekVersion,
)

DATA_CREATED = "vault.data.created"
DATA_READ = "vault.data.read"
DATA_UPDATED = "vault.data.updated"
DATA_DELETED = "vault.data.deleted"
DATA_UNDELETED = "vault.data.undeleted"
DATA_PURGED = "vault.data.purged"
METADATA_READ = "vault.metadata.read"
NAMES_LISTED = "vault.names.listed"
DEK_READ = "vault.dek.read"
DEK_DECRYPTED = "vault.dek.decrypted"
DEK_REKEYED = "vault.dek.rekeyed"
KEK_CREATED = "vault.kek.created"
KEK_LISTED = "vault.kek.listed"
KEK_ROTATED = "vault.kek.rotated"
KEK_RETIRED = "vault.kek.retired"
KEK_SHREDDED = "vault.kek.shredded"
REWRAP_STARTED = "vault.kek.rewrap.started"
REWRAP_READ = "vault.kek.rewrap.read"
REWRAP_FINISHED = "vault.kek.rewrap.finished"
APIKEY_CREATED = "vault.apikey.created"
APIKEY_REVOKED = "vault.apikey.revoked"
APIKEY_LISTED = "vault.apikey.listed"
AUDIT_READ = "vault.audit.read"
REFLECTION_READ = "vault.reflection.read"
# WorkOS's names for BYOK key events; a registration is a verification too.
BYOK_KEY_VERIFIED = "vault.byok_key.verification_completed"
BYOK_KEY_DELETED = "vault.byok_key.deleted"
BYOK_KEY_READ = "vault.byok_key.read"

SUCCESS = "success"
DEFAULT_RETENTION_DAYS = 90
DEFAULT_READ_LIMIT = 100
MAX_READ_LIMIT = 1000
UNAUTHENTICATED_ENVIRONMENT = ""
"""Where events of calls that failed authentication go: they belong to no environment."""


# What an event keeps of the request's fields, whatever the request held (a refused call's
# fields were never validated): at most the largest valid context, name and id, so one event
# stays a few KiB and ListAuditEvents always pages (SECURITY.md section 5).
MAX_KEY_IDS = 32
MAX_FIELD_CHARS = 128
TRUNCATED = "…"
"""Ends a field that was cut short; a dropped context item's place is taken by the item
`{TRUNCATED: "<number of items dropped>"}`."""


def _clip(text: str, limit: int = MAX_FIELD_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + TRUNCATED


def bounded_context(
    context: Mapping[str, str] | None, hash_value: Callable[[str], str] | None = None
) -> dict[str, str]:
    """At most MAX_CONTEXT_ITEMS items, keys clipped to their valid length, values hashed
    (`hash_value`, fixed size, the whole value) or else clipped."""
    items = list((context or {}).items())
    kept = {
        _clip(k, MAX_CONTEXT_KEY_CHARS): (
            hash_value(v) if hash_value else _clip(v, MAX_CONTEXT_VALUE_CHARS)
        )
        for k, v in items[:MAX_CONTEXT_ITEMS]
    }
    if len(items) > MAX_CONTEXT_ITEMS:
        kept[TRUNCATED] = str(len(items) - MAX_CONTEXT_ITEMS)
    return kept


@dataclass(frozen=True, slots=True)
class Subject:
    """What a call touched, as far as it is known: ids and names only."""

    object_id: str = ""
    object_name: str = ""
    key_ids: Sequence[str] = ()
    key_context: Mapping[str, str] | None = None
    data_key_id: str = ""
    api_key_id: str = ""


@dataclass(frozen=True, slots=True)
class Origin:
    """Who acted and through which request; `actor` None when the caller is unknown."""

    environment_id: str
    actor: Actor | None
    request_id: str = ""
    method: str = ""
    peer: str = ""


ORIGIN: ContextVar[Origin | None] = ContextVar("vaultd_audit_origin", default=None)
"""The call being served in this task (each call runs in its own task, with its own copy), for
the events core writes from deeper down and the quotas that count per caller."""


class AuditLog:
    def __init__(
        self,
        store: AuditStore,
        retention: timedelta = timedelta(days=DEFAULT_RETENTION_DAYS),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        keys: AuditKeys | None = None,
    ) -> None:
        self._store = store
        self._retention = retention
        self._clock = clock
        # With keys, events are chained and context values stored as keyed hashes
        # (auditchain.py); every vaultd process and CLI passes them.
        self.keys = keys
        self._chain = Chain(keys) if keys is not None else None
        self._batches: GroupCommit[AuditEvent] = GroupCommit(self._write)

    async def record(
        self, kind: str, origin: Origin, outcome: str = SUCCESS, subject: Subject = Subject()
    ) -> AuditEvent:
        """Store one event; BackendUnavailable if the store cannot take it."""
        now = self._clock()
        actor = origin.actor or Actor("", "")
        event = AuditEvent(
            id=f"event_{ULID.from_datetime(now)}",
            type=kind,
            time=now,
            environment_id=origin.environment_id,
            actor_id=actor.id,
            actor_name=actor.name,
            outcome=outcome,
            request_id=_clip(origin.request_id),
            method=_clip(origin.method),
            peer=_clip(origin.peer),
            object_id=_clip(subject.object_id),
            object_name=_clip(subject.object_name, MAX_NAME_CHARS),
            key_ids=tuple(_clip(k) for k in list(subject.key_ids)[:MAX_KEY_IDS]),
            key_context=bounded_context(
                subject.key_context, self.keys.field_hash if self.keys else None
            ),
            data_key_id=_clip(subject.data_key_id),
            api_key_id=_clip(subject.api_key_id),
        )
        if self._chain is not None:
            event = self._chain.link(event)  # no await since the chain's last link: in order
        with store_errors():
            await self._batches.add(event)
        return event

    async def kek_created(self, environment_id: str, kek_id: str, kek: KekVersion) -> None:
        """The Keyring's report of a KEK version it made: a vault.kek.created event, made by the
        call being served (or by nobody in particular, for a job)."""
        origin = ORIGIN.get() or Origin(environment_id, None)
        subject = Subject(
            key_ids=(key_id(kek_id, kek.version),), key_context={kek.item_key: kek.item_value}
        )
        await self.record(KEK_CREATED, origin, subject=subject)

    async def flush(self) -> None:
        """Wait for the events being written (a cancelled call's event is written anyway)."""
        await self._batches.flush()

    async def _write(self, events: Sequence[AuditEvent]) -> None:
        await self._store.append_audit_events(events, self._clock() - self._retention)

    async def read(self, environment_id: str, query: AuditQuery) -> AuditPage:
        """One page of an environment's events, oldest first; limit 0 means the default."""
        limit = query.limit or DEFAULT_READ_LIMIT
        if not 1 <= limit <= MAX_READ_LIMIT:
            raise InvalidArgument("limit", f"must be between 1 and {MAX_READ_LIMIT}")
        with store_errors():
            try:
                return await self._store.read_audit_events(
                    environment_id,
                    AuditQuery(query.after, query.since, query.type, limit),
                )
            except BadCursor:
                raise InvalidCursor("after", "is not a cursor from a previous list") from None


def kek_created_sink(audit_log: AuditLog) -> Callable[[str, str, KekVersion], Awaitable[None]]:
    """For the Keyring (its `on_kek_created`): the audit log's own report of a KEK made."""
    return audit_log.kek_created


def purged_sink(audit_log: AuditLog, actor: Actor) -> Callable[[DeletedObject], Awaitable[None]]:
    """For the PurgeJob (its `on_purged`): a vault.data.purged event per object it destroyed.
    No caller asked for it, so `actor` is vaultd's own."""

    async def purged(deleted: DeletedObject) -> None:
        origin = Origin(deleted.environment_id, actor)
        await audit_log.record(DATA_PURGED, origin, subject=Subject(object_id=deleted.object_id))

    return purged


def event_json(event: AuditEvent) -> dict[str, Any]:
    """An event as JSON, with the fields of AdminService's AuditEvent message: what `vaultd
    audit tail` prints and the console exports. Times are UTC with a `Z`."""
    return {
        "id": event.id,
        "type": event.type,
        "time": event.time.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "environment_id": event.environment_id,
        "actor": {"id": event.actor_id, "name": event.actor_name},
        "outcome": event.outcome,
        "request_id": event.request_id,
        "method": event.method,
        "peer": event.peer,
        "object_id": event.object_id,
        "object_name": event.object_name,
        "key_ids": list(event.key_ids),
        "key_context": dict(event.key_context),
        "data_key_id": event.data_key_id,
        "api_key_id": event.api_key_id,
    }
