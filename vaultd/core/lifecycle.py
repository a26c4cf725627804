"""Key lifecycle commands: list, rotate, retire and shred KEKs, and start rewrap jobs.

What they act on is chosen by a KekSelector: context items (a value may end in `*`), the key
URI that governs them, or every KEK of the environment. A shred names exactly one item: it
cannot be undone, so it takes no pattern. It may name the item's key and value separately
(`item_named`), so that a key holding "=" or a value ending in "*" can be named too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from ulid import ULID

from vaultd.core.errors import InvalidArgument, InvalidKeyContext, KekNotFound, RewrapJobNotFound
from vaultd.core.kekrecords import live
from vaultd.core.keyring import Keyring, kek_id_for
from vaultd.core.rewrap import RewrapRunner
from vaultd.core.rules import KeyRules
from vaultd.core.types import store_errors
from vaultd.core.validation import (
    MAX_CONTEXT_KEY_CHARS,
    MAX_CONTEXT_VALUE_CHARS,
    validate_key_context,
    validate_rewrap_job_id,
)
from vaultd.storage.base import JobStore, KekStore
from vaultd.storage.records import KekRecord, RewrapJob, RewrapState

Item = tuple[str, str]


def parse_item(text: str, field: str = "item", *, pattern: bool = False) -> Item:
    """`key=value` as a validated context item; with `pattern`, the value may end in `*`."""
    key, sep, value = text.partition("=")
    if not sep:
        raise InvalidArgument(field, "must be key=value, e.g. organization_id=org_123")
    # A trailing "*" counts as a character here; the item comes back NFC-normalised.
    ((key, value),) = validate_key_context({key: value}, field)
    if value.endswith("*") and not pattern:
        raise InvalidArgument(field, "names one item: a pattern (a trailing *) is not allowed")
    return key, value


def item_named(key: str, value: str, field: str = "item_key") -> tuple[Item, ...]:
    """The items a key and a value given separately may name, most likely first: as today's
    rules normalise them, then exactly as given (an item accepted before NFC normalisation and
    the character rules keeps its own KEK). Nothing is split and `*` is just a character."""
    if not key or not value:
        raise InvalidArgument(field, "item_key and item_value must both be given")
    if len(key) > MAX_CONTEXT_KEY_CHARS or len(value) > MAX_CONTEXT_VALUE_CHARS:
        raise InvalidKeyContext(field, "is longer than any context item can be")
    items: list[Item] = []
    # Refused by today's rules, it may still name an item stored before them.
    with suppress(InvalidKeyContext):
        items.extend(validate_key_context({key: value}, field))
    if (key, value) not in items:
        items.append((key, value))
    return tuple(items)


@dataclass(frozen=True, slots=True)
class KekSelector:
    """Which KEKs a command acts on: exactly one of the three ways is used."""

    items: tuple[Item, ...] = ()
    key_uri_prefix: str = ""
    every: bool = False

    @classmethod
    def parse(cls, items: Sequence[str], key_uri_prefix: str, every: bool) -> KekSelector:
        if sum((bool(items), bool(key_uri_prefix), every)) != 1:
            raise InvalidArgument(
                "items", "name items, or a key URI prefix, or all: exactly one of them"
            )
        parsed = tuple(parse_item(i, "items", pattern=True) for i in items)
        return cls(parsed, key_uri_prefix, every)

    def exact_items(self) -> tuple[Item, ...]:
        return tuple((k, v) for k, v in self.items if not v.endswith("*"))

    def matches(self, record: KekRecord, rules: KeyRules) -> bool:
        if self.every:
            return True
        if self.key_uri_prefix:
            uris = set(rules.key_uris(record.item_key, record.item_value))
            for v in record.versions:
                uris.update(v.key_uris)
            return any(uri.startswith(self.key_uri_prefix) for uri in uris)
        return any(_item_matches(record, k, v) for k, v in self.items)


def _item_matches(record: KekRecord, key: str, value: str) -> bool:
    if record.item_key != key:
        return False
    if value.endswith("*"):
        return record.item_value.startswith(value[:-1])
    return record.item_value == value


class LifecycleStore(KekStore, JobStore, Protocol):
    """What the KEK lifecycle needs of the store: the KEKs it governs, the rewrap jobs it reads."""


class KeyLifecycle:
    def __init__(
        self,
        store: LifecycleStore,
        keyring: Keyring,
        rules: KeyRules,
        runner: RewrapRunner,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._keyring = keyring
        self._rules = rules
        self.runner = runner
        self._clock = clock

    async def list_keks(self, environment_id: str) -> list[KekRecord]:
        with store_errors():
            return await self._store.list_keks(environment_id)

    async def select(self, environment_id: str, selector: KekSelector) -> list[KekRecord]:
        """The existing KEKs the selector names, shredded ones left out."""
        return [
            r
            for r in await self.list_keks(environment_id)
            if r.shredded_at is None and selector.matches(r, self._rules)
        ]

    async def rotate(self, environment_id: str, selector: KekSelector) -> list[KekRecord]:
        """A new version for each selected KEK; an item named exactly gets its first if it has
        none. Returns the KEKs as they are afterwards."""
        items = dict.fromkeys(
            [
                *((r.item_key, r.item_value) for r in await self.select(environment_id, selector)),
                *selector.exact_items(),
            ]
        )
        rotated = []
        for key, value in items:
            await self._keyring.rotate(environment_id, key, value)
            rotated.append(await self._existing(environment_id, (key, value)))
        return rotated

    async def retire(self, environment_id: str, item: Item, min_version: int) -> KekRecord:
        """Refuse entries under versions below `min_version` from now on (1: allow all)."""
        record = live(await self._existing(environment_id, item))
        newest = len(record.versions)
        if not 1 <= min_version <= newest:
            raise InvalidArgument(
                "min_decryption_version", f"must be between 1 and the newest version, {newest}"
            )
        with store_errors():
            await self._store.set_min_decryption_version(environment_id, record.kek_id, min_version)
        # Versions are only ever added, so the store refuses only when a shred came in
        # between, which reading the KEK again reports.
        after = live(await self._existing(environment_id, item))
        self._keyring.forget(environment_id, record)
        return after

    async def shred(self, environment_id: str, *candidates: Item) -> KekRecord:
        """Destroy every version of the item's KEK, for good. Idempotent.

        `candidates` are the spellings the caller's item may have (item_named); the first that
        has a KEK recorded for exactly that item is shredded. None: KEK_NOT_FOUND, because a
        shred that destroys nothing must not read as success (a typo would hide a tenant's
        keys still alive).
        """
        for item in candidates:
            kek_id = kek_id_for(environment_id, *item)
            before = await self._keyring.record(environment_id, kek_id)
            if before is not None and (before.item_key, before.item_value) == item:
                break
        else:
            key, value = candidates[0]
            raise KekNotFound(
                f"no KEK exists for {key}={value}: nothing to shred",
                metadata={"item": f"{key}={value}"},
            )
        with store_errors():
            await self._store.shred_kek(environment_id, kek_id, *item, self._clock())
        self._keyring.forget(environment_id, before)
        return await self._existing(environment_id, item)

    async def start_rewrap(self, environment_id: str, selector: KekSelector) -> RewrapJob:
        """A new job, run by this process from now on."""
        return await self.runner.start(await self._new_job(environment_id, selector))

    async def queue_rewrap(self, environment_id: str, selector: KekSelector) -> RewrapJob:
        """A new job that no process holds: the first watcher to look takes it."""
        return await self.runner.queue(await self._new_job(environment_id, selector))

    async def _new_job(self, environment_id: str, selector: KekSelector) -> RewrapJob:
        records = await self.select(environment_id, selector)
        now = self._clock()
        return RewrapJob(
            id=f"rewrap_{ULID.from_datetime(now)}",
            environment_id=environment_id,
            kek_ids=tuple(r.kek_id for r in records),
            state=RewrapState.RUNNING,
            created_at=now,
            updated_at=now,
        )

    async def job(self, environment_id: str, job_id: str) -> RewrapJob:
        validate_rewrap_job_id(job_id)
        with store_errors():
            job = await self._store.get_rewrap_job(job_id)
        if job is None or job.environment_id != environment_id:
            raise RewrapJobNotFound(f"no rewrap job {job_id} in this environment")
        return job

    async def jobs(self, environment_id: str) -> list[RewrapJob]:
        with store_errors():
            jobs = await self._store.list_rewrap_jobs()
        return [j for j in jobs if j.environment_id == environment_id]

    async def _existing(self, environment_id: str, item: Item) -> KekRecord:
        record = await self._keyring.record(environment_id, kek_id_for(environment_id, *item))
        if record is None:
            raise KekNotFound(
                f"no KEK exists for {item[0]}={item[1]} yet",
                metadata={"item": f"{item[0]}={item[1]}"},
            )
        return record
