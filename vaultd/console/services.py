"""What the console does, as calls to the core services, each audited as its RPC is.

Every action here is one core call (KeyLifecycle, ApiKeys, AuditLog, ByokKeys) in the signed-in
key's environment, followed by the audit event the matching AdminService RPC records (same type,
same subject, same outcome rule; `method` says "console:<Rpc>" so the two front doors can be
told apart). As in vaultd.api.auth: a success is shown only once its event is stored, and a
failure's event is written best effort. No rule lives here: the core decides what is allowed.

Nothing here reads an object's value or a data key: the console has no path to one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeVar

from providers import ProviderError, ProviderRegistry
from vaultd.api import auth
from vaultd.core import audit
from vaultd.core.apikeys import ApiKeys, NewApiKey
from vaultd.core.audit import AuditLog, Origin, Subject
from vaultd.core.byok import ByokKeys
from vaultd.core.errors import VaultError
from vaultd.core.lifecycle import KekSelector, KeyLifecycle, parse_item
from vaultd.core.objects import ObjectVault
from vaultd.core.rules import KeyRules
from vaultd.core.types import Actor
from vaultd.metrics import Metrics
from vaultd.storage.records import (
    ApiKeyRecord,
    AuditPage,
    AuditQuery,
    ByokKeyRecord,
    KekRecord,
    RewrapJob,
)

log = logging.getLogger(__name__)

T = TypeVar("T")
METHOD_PREFIX = "console:"


@dataclass(frozen=True, slots=True)
class Verification:
    """The last check of one provider key URI (BYOK page, overview)."""

    uri: str
    at: datetime
    ok: bool
    detail: str


@dataclass
class Console:
    """The core services the console calls, built by vaultd/app.py and handed over by server.py."""

    vault: ObjectVault  # count only: the overview's object count, never a value
    api_keys: ApiKeys
    audit_log: AuditLog
    lifecycle: KeyLifecycle
    rules: KeyRules
    providers: ProviderRegistry
    metrics: Metrics | None
    verifications: dict[str, Verification] = field(default_factory=dict)
    byok_keys: ByokKeys | None = None  # the run-time BYOK keys; None lists none


@dataclass(frozen=True, slots=True)
class Signed:
    """Who is signed in: the key's id, environment and actor (never its secret)."""

    api_key_id: str
    environment_id: str
    actor: Actor


class Acting:
    """One console request acting for a signed-in admin key."""

    def __init__(self, console: Console, who: Signed, request_id: str, peer: str) -> None:
        self._c = console
        self._who = who
        self._request_id = request_id
        self._peer = peer

    @property
    def environment_id(self) -> str:
        return self._who.environment_id

    def _origin(self, rpc: str) -> Origin:
        return Origin(
            self._who.environment_id,
            self._who.actor,
            request_id=self._request_id,
            method=METHOD_PREFIX + rpc,
            peer=self._peer,
        )

    async def _audited(
        self,
        rpc: str,
        event: str,
        work: Callable[[], Awaitable[T]],
        subject: Callable[[T | None], Subject],
    ) -> T:
        origin = self._origin(rpc)
        # A KEK made during the call is recorded with this call as its origin, as for an RPC.
        audit.ORIGIN.set(origin)
        try:
            result = await work()
        except VaultError as exc:
            record = self._c.audit_log.record(event, origin, exc.reason, subject(None))
            try:
                await asyncio.wait_for(asyncio.shield(record), auth.FAILURE_AUDIT_WAIT_SECONDS)
            except (TimeoutError, VaultError):
                log.error("could not store the audit event of a failed console %s", rpc)
            raise
        # Shown only once recorded: if the event cannot be stored, this raises instead.
        await self._c.audit_log.record(event, origin, subject=subject(result))
        return result

    # Keys -----------------------------------------------------------------------------------

    async def list_keks(self) -> list[KekRecord]:
        env = self.environment_id
        return await self._audited(
            "ListKeks", audit.KEK_LISTED, lambda: self._c.lifecycle.list_keks(env), _nothing
        )

    async def rotate(self, item: str) -> KekRecord:
        key, value = parse_item(item)
        selector = KekSelector(items=((key, value),))

        async def work() -> KekRecord:
            (record,) = await self._c.lifecycle.rotate(self.environment_id, selector)
            return record

        return await self._audited("RotateKeks", audit.KEK_ROTATED, work, _kek(key, value))

    async def shred(self, item: str) -> KekRecord:
        key, value = parse_item(item)
        env = self.environment_id
        return await self._audited(
            "ShredKek",
            audit.KEK_SHREDDED,
            lambda: self._c.lifecycle.shred(env, (key, value)),
            _kek(key, value),
        )

    async def start_rewrap(self, item: str) -> RewrapJob:
        key, value = parse_item(item)
        selector = KekSelector(items=((key, value),))
        env = self.environment_id

        def subject(job: RewrapJob | None) -> Subject:
            if job is None:
                return Subject(key_context={key: value})
            return Subject(key_ids=job.kek_ids)

        return await self._audited(
            "StartRewrap",
            audit.REWRAP_STARTED,
            lambda: self._c.lifecycle.start_rewrap(env, selector),
            subject,
        )

    async def jobs(self) -> list[RewrapJob]:
        env = self.environment_id
        return await self._audited(
            "ListRewrapJobs", audit.REWRAP_READ, lambda: self._c.lifecycle.jobs(env), _nothing
        )

    # API keys -------------------------------------------------------------------------------

    async def list_api_keys(self) -> list[ApiKeyRecord]:
        env = self.environment_id
        return await self._audited(
            "ListApiKeys", audit.APIKEY_LISTED, lambda: self._c.api_keys.list(env), _nothing
        )

    async def create_api_key(self, name: str, permissions: Sequence[str]) -> NewApiKey:
        env = self.environment_id

        def subject(new: NewApiKey | None) -> Subject:
            return Subject(api_key_id=new.record.id if new else "")

        return await self._audited(
            "CreateApiKey",
            audit.APIKEY_CREATED,
            lambda: self._c.api_keys.create(env, permissions, name, scope=env),
            subject,
        )

    async def revoke_api_key(self, key_id: str) -> ApiKeyRecord:
        env = self.environment_id
        return await self._audited(
            "RevokeApiKey",
            audit.APIKEY_REVOKED,
            lambda: self._c.api_keys.revoke(key_id, scope=env),
            lambda _: Subject(api_key_id=key_id),
        )

    # Run-time BYOK keys ---------------------------------------------------------------------

    async def list_byok_keys(self) -> list[ByokKeyRecord]:
        keys = self._c.byok_keys
        if keys is None:
            return []
        env = self.environment_id
        return await self._audited(
            "ListByokKeys", audit.BYOK_KEY_READ, lambda: keys.list(env), _nothing
        )

    async def verify_byok_key(self, byok_key_id: str) -> ByokKeyRecord:
        """Verify one run-time key again; the record holds the outcome (a failed check is a
        result, not an error, exactly as VerifyByokKey returns it)."""
        keys = self._c.byok_keys
        if keys is None:
            raise RuntimeError("this console was assembled without BYOK keys")
        env = self.environment_id
        return await self._audited(
            "VerifyByokKey",
            audit.BYOK_KEY_VERIFIED,
            lambda: keys.verify(env, byok_key_id),
            _byok_key(byok_key_id),
        )

    # Audit ----------------------------------------------------------------------------------

    async def read_audit(self, query: AuditQuery) -> AuditPage:
        env = self.environment_id
        return await self._audited(
            "ListAuditEvents",
            audit.AUDIT_READ,
            lambda: self._c.audit_log.read(env, query),
            _nothing,
        )

    # Without an RPC of their own ---------------------------------------------------------

    async def count_objects(self) -> int:
        """The environment's object count: metadata, never a value."""
        return await self._c.vault.count(self.environment_id)

    async def verify_byok(self) -> list[Verification]:
        """Check every provider key the settings name (as `vaultd byok verify` does)."""
        results = []
        for uri in key_uris(self._c.rules):
            try:
                await self._c.providers.for_uri(uri).verify(uri)
                found = Verification(uri, datetime.now(UTC), True, "ok")
            except ProviderError as exc:
                found = Verification(uri, datetime.now(UTC), False, str(exc))
            self._c.verifications[uri] = found
            results.append(found)
        return results


def key_uris(rules: KeyRules) -> list[str]:
    """The default key and every rule's key, each once, in the order the settings name them."""
    return list(dict.fromkeys([rules.default_uri, *(r.key_uri for r in rules.rules)]))


def _nothing(_: object) -> Subject:
    return Subject()


def _kek(key: str, value: str) -> Callable[[KekRecord | None], Subject]:
    """What RotateKeks / ShredKek record for one item: its KEK id and the item."""

    def subject(record: KekRecord | None) -> Subject:
        if record is None:
            return Subject(key_context={key: value})
        return Subject(key_ids=(record.kek_id,), key_context={key: value})

    return subject


def _byok_key(byok_key_id: str) -> Callable[[ByokKeyRecord | None], Subject]:
    """What VerifyByokKey records: the key's id, and its match as a one-item context."""

    def subject(record: ByokKeyRecord | None) -> Subject:
        if record is None:
            return Subject(key_ids=tuple(filter(None, [byok_key_id])))
        return Subject(key_ids=(record.id,), key_context={record.item_key: record.pattern})

    return subject
