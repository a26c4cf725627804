"""Serve only a store that keeps what it acknowledges, and only the store this deployment owns.

Two checks, when vaultd opens its store and every `check_seconds` while it serves:

- **Durability.** The store says what an acknowledged write survives (Store.durability). A store
  that would lose acknowledged writes on a restart (Redis without an AOF) is refused unless the
  operator opted in (`allow_volatile_redis`, for caches and tests); one that will not say is
  served with a warning.
- **Identity.** A store carries an identity, written once: a store id and the fingerprints of
  the root key versions that served it. The host remembers the store id it served (KnownStore).
  vaultd refuses a store whose fingerprints its root key has none of (another deployment's
  store), a store other than the one it remembers, and a store without identity when it
  remembers one: such a store was emptied (Redis restarted without persistence) or replaced,
  and bootstrapping it afresh would hide that; `vaultd store init` says so explicitly. A store
  an older vaultd filled (data, no identity) gets one on first open.

A check that fails while serving makes every call fail UNAVAILABLE with the reason
(STORE_IDENTITY_MISMATCH, STORE_NOT_DURABLE) until a later check passes; an unreachable store
is no verdict either way (calls fail on their own).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from ulid import ULID

from vaultd.core.errors import StoreIdentityMismatch, StoreNotDurable, VaultError
from vaultd.storage.base import Store
from vaultd.storage.errors import StoreUnavailable
from vaultd.storage.records import StoreIdentity

log = logging.getLogger(__name__)

SUSPECT_INTERVAL_SECONDS = 1.0
"""How often a suspicion (an unknown API key) may trigger an identity check of its own."""


class StoreRefused(Exception):
    """vaultd must not serve this store. The message is one line for the operator; exit_code
    is 2 for a setting to change, 1 for the state of the store."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True, slots=True)
class KnownStore:
    """What this host remembers of its store: the id it served (None: never one), and how to
    remember a store id."""

    store_id: str | None
    remember: Callable[[str], None]


class StoreGuard:
    def __init__(
        self,
        store: Store,
        root_fingerprints: frozenset[str],
        known: KnownStore,
        *,
        allow_volatile: bool = False,
        check_seconds: float = 5.0,
    ) -> None:
        self._store = store
        self._fingerprints = root_fingerprints
        self._known = known
        self._allow_volatile = allow_volatile
        self._check_seconds = check_seconds
        self._on_health: Callable[[bool], None] | None = None
        self._identity: StoreIdentity | None = None
        self._problem: VaultError | None = None
        self._warned_unknown = False
        self._last_check = 0.0

    @property
    def store(self) -> Store:
        return self._store

    @property
    def identity(self) -> StoreIdentity | None:
        return self._identity

    async def open(self) -> StoreIdentity:
        """Check the store before serving it; StoreRefused says why not."""
        await self._check_durability(at_start=True)
        found = await self._store.get_identity()
        if found is None:
            found = await self._first_identity()
        self._check_owned(found)
        missing = self._fingerprints - found.root_fingerprints
        if missing:  # a root key version added since (vaultd root rotate)
            await self._store.add_root_fingerprints(missing)
        self._adopt(found)
        return found

    async def init(self) -> StoreIdentity:
        """`vaultd store init`: give a store without identity one on purpose, or adopt one made
        with this root key; either way the root key remembers it from now on."""
        found = await self._store.get_identity()
        if found is None:
            identity = await self._create()
        elif found.root_fingerprints.isdisjoint(self._fingerprints):
            raise StoreRefused(
                f"store {found.store_id} is already initialised, with another root key: it is"
                " another deployment's store"
            )
        else:
            identity = found  # served on purpose from now on; its identity stays as it is
        self._adopt(identity)
        return identity

    def check_serving(self) -> None:
        """Raise the store's problem, if a check found one; cheap, for every call."""
        if self._problem is not None:
            raise self._problem

    async def suspect(self) -> None:
        """Something looked like a store that lost its data (an API key it no longer knows):
        check the identity now, at most once a second, so the caller hears the real cause."""
        if time.monotonic() - self._last_check >= SUSPECT_INTERVAL_SECONDS:
            await self.check()
        self.check_serving()

    async def watch(self, on_health: Callable[[bool], None] | None = None) -> None:
        """Check every `check_seconds` until cancelled, telling `on_health` when the verdict
        changes (True: serving again)."""
        self._on_health = on_health
        while True:
            await asyncio.sleep(self._check_seconds)
            await self.check()

    async def check(self) -> None:
        """Check durability and identity once, and serve or refuse by the result."""
        self._last_check = time.monotonic()
        try:
            problem = await self._check_durability(at_start=False)
            if problem is None:
                problem = await self._identity_problem()
        except StoreUnavailable:
            return  # no verdict: calls fail on their own while the store is away
        self._set_problem(problem)

    async def _check_durability(self, *, at_start: bool) -> VaultError | None:
        durability = await self._store.durability()
        if at_start:
            log.info("store durability: %s", durability.description)
        if durability.durable is None and not self._warned_unknown:
            self._warned_unknown = True
            log.warning(
                "cannot tell whether the store keeps acknowledged writes over a restart: %s",
                durability.description,
            )
        if durability.durable is not False or self._allow_volatile:
            return None
        message = (
            f"the store would lose acknowledged writes on a restart ({durability.description});"
            " turn on Redis's AOF (appendonly yes), or set storage.allow_volatile_redis: true"
            " for a cache or a test"
        )
        if at_start:
            raise StoreRefused(message, exit_code=2)
        return StoreNotDurable(message)

    async def _identity_problem(self) -> VaultError | None:
        found = await self._store.get_identity()
        expected = self._identity
        if expected is None or (found is not None and found.store_id == expected.store_id):
            return None
        if found is None:
            what = "has no identity any more: it was emptied (a restart without persistence?)"
        else:
            what = f"is now store {found.store_id}: it was replaced"
        return StoreIdentityMismatch(
            f"the store vaultd serves (store {expected.store_id}) {what}; restore it, or run"
            " `vaultd store init` and restart to serve it as a new store"
        )

    def _set_problem(self, problem: VaultError | None) -> None:
        if (problem is None) == (self._problem is None):
            self._problem = problem
            return
        self._problem = problem
        if problem is None:
            log.warning("the store is healthy again; serving")
        else:
            log.error("refusing every call: %s", problem.message)
        if self._on_health is not None:
            self._on_health(problem is None)

    async def _first_identity(self) -> StoreIdentity:
        if self._known.store_id is not None:
            raise StoreRefused(
                f"the store has no identity, but this vaultd served store {self._known.store_id}:"
                " it was emptied or replaced; restore it, or run `vaultd store init` to start"
                " afresh"
            )
        if await self._store.has_data():
            log.info("giving the store, filled by an earlier vaultd, an identity")
        return await self._create()

    async def _create(self) -> StoreIdentity:
        identity = StoreIdentity(f"store_{ULID()}", datetime.now(UTC), self._fingerprints)
        if await self._store.create_identity(identity):
            log.info("initialised the store as %s", identity.store_id)
            return identity
        found = await self._store.get_identity()  # another process was first
        if found is None:
            raise StoreRefused("the store's identity vanished while it was being written")
        return found

    def _check_owned(self, found: StoreIdentity) -> None:
        if found.root_fingerprints.isdisjoint(self._fingerprints):
            raise StoreRefused(
                f"store {found.store_id} was initialised with another root key: this vaultd's"
                " root key file belongs to another deployment (check root_key_file and the"
                " store URL)"
            )
        known = self._known.store_id
        if known is not None and known != found.store_id:
            raise StoreRefused(
                f"this vaultd served store {known}, but the store it reaches is {found.store_id}"
                " (check the store URL); run `vaultd store init` only to serve it on purpose"
            )

    def _adopt(self, identity: StoreIdentity) -> None:
        self._identity = identity
        if self._known.store_id != identity.store_id:
            self._known.remember(identity.store_id)
