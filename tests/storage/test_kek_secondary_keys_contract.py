"""A KEK version wrapped by several provider keys (a rule's primary and secondary keys), on
every store: stored and read back whole, stamped, swapped by a rewrap, and compatible with the
records an older vaultd wrote (docs/FORMAT.md section 10.2)."""

from __future__ import annotations

import os
import sqlite3
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from tests.storage.contract import kek_versions, new_env, new_kek, new_kek_id
from vaultd.storage import SqliteStore, Store, codec
from vaultd.storage.records import KekVersion, Wrapping

SECONDARY = (
    Wrapping("gcp-kms://projects/p/locations/europe-west1/keyRings/r/cryptoKeys/k", b"\x0a" * 90),
    Wrapping("hcvault://transit/keys/tenant", b"vault:v1:" + b"Q" * 40),
)


def two_keyed(version: int) -> KekVersion:
    return replace(new_kek(version), secondary=SECONDARY)


async def test_every_wrapping_of_a_version_reads_back_in_order(store: Store) -> None:
    env, kek_id = new_env(), new_kek_id()
    one, two = new_kek(1), two_keyed(2)
    assert await store.add_kek_version(env, kek_id, one)
    assert await store.add_kek_version(env, kek_id, two)

    stored_one, stored_two = await kek_versions(store, env, kek_id)
    assert (stored_one, stored_two) == (one, two)
    assert stored_one.secondary == ()
    assert stored_two.key_uris == (two.provider_uri, *(w.provider_uri for w in SECONDARY))
    assert stored_two.wrappings[1:] == SECONDARY
    # The stamp covers the secondary keys too: the same version with one key less differs.
    assert stored_two.stamp == codec.kek_stamp(codec.encode_kek(two))
    assert stored_two.stamp != codec.kek_stamp(codec.encode_kek(replace(two, secondary=())))


async def test_a_rewrap_replaces_the_whole_key_set_by_compare_and_set(store: Store) -> None:
    env, kek_id = new_env(), new_kek_id()
    assert await store.add_kek_version(env, kek_id, new_kek(1))
    (v1,) = await kek_versions(store, env, kek_id)

    # One key -> two keys (a secondary added to the tenant's rule).
    grown = replace(v1, provider_uri="aws-kms://arn:new", wrapped_key=os.urandom(60))
    grown = replace(grown, secondary=SECONDARY[:1])
    assert await store.rewrap_kek_version(env, kek_id, v1, grown)
    (after,) = await kek_versions(store, env, kek_id)
    assert after == grown and after.created_at == v1.created_at
    # A writer that read the version before the swap is refused, and its stamp is stale.
    assert not await store.rewrap_kek_version(env, kek_id, v1, two_keyed(1))
    assert after.stamp != v1.stamp

    # Two keys -> one key: the secondary is dropped for good.
    shrunk = replace(after, secondary=())
    assert await store.rewrap_kek_version(env, kek_id, after, shrunk)
    (last,) = await kek_versions(store, env, kek_id)
    assert last.secondary == () and last.wrapped_key == grown.wrapped_key
    assert last.stamp == codec.kek_stamp(codec.encode_kek(shrunk))


def test_a_one_key_record_is_stored_byte_for_byte_as_before_secondary_keys() -> None:
    # docs/FORMAT.md 10.2: six fields, so an older vaultd's record (and its stamp) is unchanged.
    created = datetime(2026, 1, 1, tzinfo=UTC)
    kek = KekVersion("organization_id", "org_1", 1, "internal://root", b"\x01wrapped", created)
    assert codec.encode_kek(kek).hex() == (
        "01"
        "0000000f" + b"organization_id".hex()
        + "00000005" + b"org_1".hex()
        + "00000001" + b"1".hex()
        + "0000000f" + b"internal://root".hex()
        + "00000008" + b"\x01wrapped".hex()
        + "00000010" + b"1767225600000000".hex()
    )  # fmt: skip
    two = replace(kek, secondary=(Wrapping("aws-kms://arn:2", b"w2"),))
    assert codec.encode_kek(two) == codec.encode_kek(kek) + bytes.fromhex(
        "00000019" + "0000000f" + b"aws-kms://arn:2".hex() + "00000002" + b"w2".hex()
    )
    assert codec.decode_kek(codec.encode_kek(two)) == two


async def test_sqlite_opens_a_file_made_before_secondary_keys(tmp_path: Path) -> None:
    path = tmp_path / "vaultd.db"
    env, kek_id = new_env(), new_kek_id()
    store = SqliteStore(path)
    assert await store.add_kek_version(env, kek_id, new_kek(1))
    (before,) = await kek_versions(store, env, kek_id)
    await store.close()
    # The file as an older vaultd left it: no `secondary` column.
    with sqlite3.connect(path) as conn:
        conn.execute("ALTER TABLE kek_versions DROP COLUMN secondary")
    conn.close()

    reopened = SqliteStore(path)
    try:
        (after,) = await kek_versions(reopened, env, kek_id)
        assert after == before and after.stamp == before.stamp and after.secondary == ()
        assert await reopened.add_kek_version(env, kek_id, two_keyed(2))
        assert (await kek_versions(reopened, env, kek_id))[1].secondary == SECONDARY
    finally:
        await reopened.close()
