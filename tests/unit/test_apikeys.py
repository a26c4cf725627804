"""ApiKeys on a real (embedded) store: key shape, lookups, the cache and what it promises."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from vaultd.core.apikeys import (
    ApiKeyRevoked,
    ApiKeys,
    looks_like_secret,
    new_secret,
    parse_permissions,
    secret_hash,
)
from vaultd.core.cache import TtlCache
from vaultd.core.errors import ApiKeyInvalid, ApiKeyMalformed, InvalidArgument
from vaultd.storage import ApiKeyRecord, SqliteStore


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    opened = SqliteStore(tmp_path / "vaultd.db")
    yield opened
    await opened.close()


def test_new_secrets_have_the_documented_shape() -> None:
    secrets = {new_secret() for _ in range(100)}
    assert len(secrets) == 100
    assert all(looks_like_secret(s) and len(s) == 46 for s in secrets)
    assert not looks_like_secret("sk_" + "é" * 43)
    assert secret_hash("sk_x") == hashlib.sha256(b"sk_x").hexdigest()


def test_permissions_are_known_unique_and_in_a_fixed_order() -> None:
    assert parse_permissions(["admin", "objects:read", "admin"]) == ("objects:read", "admin")
    for bad in ([], ["objects:delete"], ["Admin"]):
        with pytest.raises(InvalidArgument):
            parse_permissions(bad)


async def test_a_key_works_from_its_creation_and_stops_at_its_revocation(
    store: SqliteStore,
) -> None:
    clock = Clock()
    keys = ApiKeys(store, TtlCache(5.0, 100, clock=clock))
    secret = new_secret()
    with pytest.raises(ApiKeyInvalid):
        await keys.authenticate(secret)  # unknown: not cached, so ...
    record = ApiKeyRecord(
        "key_01J9Z3K4ABCDEFGHJKMNPQRSTV", "k", "default", ("admin",), secret_hash(secret),
        datetime.now(UTC),
    )  # fmt: skip
    await store.add_api_key(record)
    assert await keys.authenticate(secret) == record  # ... it works once it exists

    revoked = await keys.revoke(record.id)  # through this process: evicted at once
    with pytest.raises(ApiKeyRevoked) as caught:
        await keys.authenticate(secret)
    assert caught.value.key == revoked and caught.value.reason == "API_KEY_INVALID"


async def test_another_processs_revocation_is_seen_when_the_cache_entry_expires(
    store: SqliteStore,
) -> None:
    clock = Clock()
    keys = ApiKeys(store, TtlCache(5.0, 100, clock=clock))
    made = await keys.create("default", ["objects:read"], "reader")
    await keys.authenticate(made.secret)
    await store.revoke_api_key(made.record.id, datetime.now(UTC))  # as another process would

    clock.now = 4.9
    assert await keys.authenticate(made.secret) == made.record
    clock.now = 5.0
    with pytest.raises(ApiKeyRevoked):
        await keys.authenticate(made.secret)


async def test_malformed_keys_cost_no_lookup(store: SqliteStore) -> None:
    await store.close()  # any lookup would now fail as unavailable
    keys = ApiKeys(store, TtlCache(5.0, 100))
    for bad in ("", "sk_", "Bearer sk_x", "sk_" + "A" * 42, new_secret() + "A"):
        with pytest.raises(ApiKeyMalformed):
            await keys.authenticate(bad)


async def test_bootstrap_makes_one_admin_key_on_an_empty_store_only(store: SqliteStore) -> None:
    keys = ApiKeys(store, TtlCache(5.0, 100))
    with pytest.raises(ValueError, match="VAULTD_BOOTSTRAP_API_KEY") as refused:
        await keys.bootstrap("sk_hunter2")
    assert "hunter2" not in str(refused.value)

    made = await keys.bootstrap(None)
    assert made is not None and looks_like_secret(made.secret)
    assert (made.record.environment_id, made.record.permissions) == ("default", ("admin",))
    assert await keys.bootstrap(None) is None
    assert await keys.bootstrap(new_secret()) is None
    assert await store.list_api_keys() == [made.record]
