"""API keys: who may call, in which environment, with which permissions.

A key is `sk_` followed by 32 random bytes in base64url (43 characters). It is shown once, when
created, and stored only as its SHA-256: a 256-bit random secret cannot be guessed, so the slow,
salted hashes that protect passwords add nothing here, and an unsalted digest lets a presented
key be found with one indexed lookup instead of a comparison against every stored hash.

Each key is bound to one environment, and acts in that environment only. Permissions:
`objects:read`, `objects:write`, `keys:use`, and `admin`, which implies the other three and
manages the API keys and reads the audit events of the key's own environment. Keys for another
environment are made with `vaultd apikey create` on the store itself: whoever can reach the
store is already trusted with every environment, while an admin key is not.

Looked-up keys are cached for a few seconds (a TtlCache keyed by the hash, never the key), so a
call costs no store round trip. Revoking a key evicts it from this process's cache at once;
other processes sharing the store stop accepting it when their entry expires, within the TTL.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from ulid import ULID

from vaultd.core.cache import TtlCache
from vaultd.core.errors import (
    ApiKeyInvalid,
    ApiKeyMalformed,
    ApiKeyNotFound,
    InvalidArgument,
    PermissionDenied,
)
from vaultd.core.scope import ContextScope, parse_constraints
from vaultd.core.types import Actor, store_errors
from vaultd.core.validation import validate_name
from vaultd.storage.base import ApiKeyStore
from vaultd.storage.keys import API_KEY_ID, ENVIRONMENT_ID
from vaultd.storage.records import ApiKeyRecord

log = logging.getLogger(__name__)

DEFAULT_ENVIRONMENT = "default"
BOOTSTRAP_KEY_NAME = "bootstrap"
SECRET_PREFIX = "sk_"
_SECRET_BYTES = 32
_SECRET_CHARS = 43  # base64url of 32 bytes, without padding
_BASE64URL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


class Permission(StrEnum):
    OBJECTS_READ = "objects:read"
    OBJECTS_WRITE = "objects:write"
    KEYS_USE = "keys:use"
    ADMIN = "admin"


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(_SECRET_BYTES)


def looks_like_secret(text: str) -> bool:
    """Whether `text` has the shape of a key; checked before any lookup is spent on it."""
    body = text[len(SECRET_PREFIX) :]
    return (
        text.startswith(SECRET_PREFIX)
        and len(body) == _SECRET_CHARS
        and _BASE64URL.issuperset(body)
    )


def check_bootstrap_secret(secret: str) -> str:
    """`secret` if it has the shape of a key; else ValueError, which never repeats it."""
    if not looks_like_secret(secret):
        raise ValueError(
            "VAULTD_BOOTSTRAP_API_KEY must be sk_ followed by 43 base64url characters "
            "(32 random bytes), e.g. from: "
            "python -c 'import secrets; print(\"sk_\" + secrets.token_urlsafe(32))'"
        )
    return secret


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def actor_of(key: ApiKeyRecord) -> Actor:
    return Actor(key.id, key.name)


def scope_of(key: ApiKeyRecord) -> ContextScope:
    """The key contexts the key may touch (core/scope.py)."""
    return ContextScope(key.context_constraints)


def require(key: ApiKeyRecord, permission: Permission) -> None:
    """PermissionDenied, naming the permission, unless the key has it (or admin)."""
    if permission in key.permissions or Permission.ADMIN in key.permissions:
        return
    raise PermissionDenied(
        f"API key {key.id} lacks the {permission} permission",
        metadata={"permission": str(permission), "api_key_id": key.id},
    )


def parse_permissions(names: Iterable[str], field: str = "permissions") -> tuple[str, ...]:
    """Known permission names, without repeats, in the order Permission lists them."""
    given = {name.strip() for name in names}
    unknown = given - set(Permission)
    if unknown:
        raise InvalidArgument(
            field,
            f"unknown permission {sorted(unknown)[0]!r}; choose from " + ", ".join(Permission),
            reason="INVALID_PERMISSION",
        )
    if not given:
        raise InvalidArgument(
            field, "must name at least one permission", reason="INVALID_PERMISSION"
        )
    return tuple(p.value for p in Permission if p in given)


def validate_environment_id(environment_id: str, field: str = "environment_id") -> str:
    if not ENVIRONMENT_ID.fullmatch(environment_id):
        raise InvalidArgument(
            field,
            "must be 1 to 64 letters, digits, '_' or '-'",
            reason="INVALID_ENVIRONMENT",
        )
    return environment_id


class ApiKeyRevoked(ApiKeyInvalid):
    """A revoked key: the caller sees API_KEY_INVALID; the audit trail can name the key."""

    def __init__(self, key: ApiKeyRecord) -> None:
        super().__init__("the API key is not valid")
        self.key = key


@dataclass(frozen=True, slots=True)
class NewApiKey:
    """A key just made: its secret, to be shown once, and what is stored of it."""

    secret: str
    record: ApiKeyRecord


class ApiKeys:
    def __init__(
        self,
        store: ApiKeyStore,
        cache: TtlCache[str, ApiKeyRecord],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self.cache = cache
        self._clock = clock

    async def create(
        self,
        environment_id: str,
        permissions: Iterable[str],
        name: str = "",
        *,
        scope: str | None = None,
        context_constraints: Iterable[str] = (),
    ) -> NewApiKey:
        """A new key. `scope`: the environment an admin caller may act in (None: any).
        `context_constraints`: `key=value` / `key=prefix*` texts confining it (core/scope.py)."""
        validate_environment_id(environment_id)
        _check_scope(environment_id, scope)
        granted = parse_permissions(permissions)
        constraints = parse_constraints(context_constraints)
        if constraints and Permission.ADMIN in granted:
            # An admin key makes keys in its environment, unscoped ones too: confining it to a
            # tenant would promise what it does not keep (docs/AUTH.md).
            raise InvalidArgument(
                "context_constraints",
                "an admin key cannot be context-scoped: it can create unscoped keys",
                reason="INVALID_CONTEXT_CONSTRAINT",
            )
        new = self._new(environment_id, granted, name, constraints=constraints)
        with store_errors():
            await self._store.add_api_key(new.record)
        return new

    async def list(self, environment_id: str | None = None) -> list[ApiKeyRecord]:
        """The keys of one environment (None: every environment), oldest first."""
        with store_errors():
            keys = await self._store.list_api_keys()
        return [k for k in keys if environment_id in (None, k.environment_id)]

    async def revoke(self, key_id: str, *, scope: str | None = None) -> ApiKeyRecord:
        """Revoke a key for good. Another environment's key, to a scoped caller, is NOT_FOUND."""
        if not API_KEY_ID.fullmatch(key_id):
            raise InvalidArgument("id", "is not an API key id (key_ followed by 26 characters)")
        with store_errors():
            found = await self._store.get_api_key(key_id)
            if found is None or scope not in (None, found.environment_id):
                raise ApiKeyNotFound(f"no API key with id {key_id}", metadata={"id": key_id})
            revoked = await self._store.revoke_api_key(key_id, self._clock())
        if revoked is None:
            raise ApiKeyNotFound(f"no API key with id {key_id}", metadata={"id": key_id})
        self.cache.discard(revoked.secret_hash)
        return revoked

    async def authenticate(self, secret: str) -> ApiKeyRecord:
        """The live key with this secret; ApiKeyMalformed, ApiKeyInvalid or ApiKeyRevoked."""
        if not looks_like_secret(secret):
            raise ApiKeyMalformed(
                "the bearer token is not a vaultd API key (sk_ followed by 43 characters)"
            )
        digest = secret_hash(secret)

        async def load() -> ApiKeyRecord:
            with store_errors():
                found = await self._store.find_api_key(digest)
            if found is None:
                # Not cached: a key created a moment later must work at once.
                raise ApiKeyInvalid("the API key is not valid")
            return found

        key = await self.cache.get_or_load(digest, load)
        if key.revoked_at is not None:
            raise ApiKeyRevoked(key)
        return key

    async def bootstrap(self, supplied: str | None) -> NewApiKey | None:
        """The first admin key of a store that has none, made from `supplied` or generated.

        None when the store already has a key: only the first start of a fresh store, of all
        the processes sharing it, makes one.
        """
        secret = check_bootstrap_secret(supplied) if supplied is not None else new_secret()
        new = self._new(DEFAULT_ENVIRONMENT, (Permission.ADMIN.value,), BOOTSTRAP_KEY_NAME, secret)
        with store_errors():
            if await self._store.add_api_key(new.record, only_if_none=True):
                return new
            if (
                supplied is not None
                and await self._store.find_api_key(new.record.secret_hash) is None
            ):
                log.warning(
                    "VAULTD_BOOTSTRAP_API_KEY is ignored: the store already has API keys "
                    "(manage them with `vaultd apikey`)"
                )
        return None

    def _new(
        self,
        environment_id: str,
        permissions: tuple[str, ...],
        name: str,
        secret: str = "",
        *,
        constraints: tuple[tuple[str, str], ...] = (),
    ) -> NewApiKey:
        key_id = f"key_{ULID()}"
        secret = secret or new_secret()
        record = ApiKeyRecord(
            id=key_id,
            name=validate_name(name) if name else key_id,
            environment_id=environment_id,
            permissions=permissions,
            secret_hash=secret_hash(secret),
            created_at=self._clock(),
            context_constraints=constraints,
        )
        return NewApiKey(secret, record)


def _check_scope(environment_id: str, scope: str | None) -> None:
    if scope is not None and environment_id != scope:
        raise PermissionDenied(
            f"an admin key manages its own environment ({scope}) only; make keys for "
            f"{environment_id} with `vaultd apikey create` on the store",
            metadata={"environment_id": environment_id},
        )
