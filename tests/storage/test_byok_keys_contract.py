"""BYOK key records: the same contract in every store (SQLite, Redis)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import cast

from ulid import ULID

from vaultd.storage import Store
from vaultd.storage.base import ByokKeyStore
from vaultd.storage.codec import decode_byok_key, encode_byok_key
from vaultd.storage.records import ByokKeyRecord

AT = datetime(2026, 12, 4, 12, 0, 0, 123456, tzinfo=UTC)


def new_env() -> str:
    return f"env_{ULID()}"


def record(env: str, pattern: str = "org_*", uri: str = "aws-kms://arn:x") -> ByokKeyRecord:
    return ByokKeyRecord(f"byok_{ULID()}", env, "organization_id", pattern, uri, AT)


async def test_added_records_read_back_and_list_per_environment(store: Store) -> None:
    keys = cast(ByokKeyStore, store)
    env, other = new_env(), new_env()
    first, second = record(env, "org_a"), record(env, "org_b*")
    assert await keys.add_byok_key(first) is None
    assert await keys.add_byok_key(second) is None
    assert await keys.add_byok_key(record(other, "org_a")) is None
    assert await keys.get_byok_key(env, first.id) == first
    assert await keys.get_byok_key(other, first.id) is None
    listed = await keys.list_byok_keys(env)
    assert listed == sorted([first, second], key=lambda r: r.id)


async def test_a_match_is_held_once_and_a_rival_learns_the_holder(store: Store) -> None:
    keys = cast(ByokKeyStore, store)
    env = new_env()
    rivals = [record(env, "org_same*", f"hcvault://k{i}") for i in range(10)]
    answers = await asyncio.gather(*(keys.add_byok_key(r) for r in rivals))
    winners = [r for r, a in zip(rivals, answers, strict=True) if a is None]
    assert len(winners) == 1
    assert {a for a in answers if a is not None} == {winners[0]}
    assert await keys.list_byok_keys(env) == winners


async def test_verification_is_recorded_and_delete_frees_the_match(store: Store) -> None:
    keys = cast(ByokKeyStore, store)
    env = new_env()
    added = record(env)
    await keys.add_byok_key(added)
    later = AT + timedelta(minutes=5)
    failed = await keys.set_byok_verification(env, added.id, later, False, "denied")
    assert (failed.verified, failed.verified_at, failed.verification_error) == (
        False,
        later,
        "denied",
    )
    ok = await keys.set_byok_verification(env, added.id, later, True, "ignored")
    assert (ok.verified, ok.verification_error) == (True, "")
    assert await keys.get_byok_key(env, added.id) == ok
    assert await keys.delete_byok_key(env, added.id) == ok
    assert await keys.delete_byok_key(env, added.id) is None
    assert await keys.set_byok_verification(env, added.id, later, True, "") is None
    assert await keys.add_byok_key(record(env)) is None, "the match is free again"


def test_record_format_vector() -> None:
    """The stored bytes (docs/FORMAT.md, "BYOK key records"): a newer vaultd reads these."""
    stored = (
        b'{"created_at":1796385600123456,"environment_id":"environment_default",'
        b'"id":"byok_01JEX0000000000000000000AA","item_key":"organization_id",'
        b'"key_uri":"aws-kms://arn:aws:kms:eu-west-1:111122223333:key/k","pattern":"org_acme",'
        b'"v":1,"verification_error":"","verified":true,"verified_at":1796385600123456}'
    )
    expected = ByokKeyRecord(
        "byok_01JEX0000000000000000000AA",
        "environment_default",
        "organization_id",
        "org_acme",
        "aws-kms://arn:aws:kms:eu-west-1:111122223333:key/k",
        AT,
        AT,
        True,
        "",
    )
    assert decode_byok_key(stored) == expected
    assert encode_byok_key(expected) == stored
