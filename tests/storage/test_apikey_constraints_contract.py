"""Context-scoped API keys (issue 16.1) as stored: the constraints round-trip on every store, an
unscoped key is stored byte for byte as before scoping existed, and an older SQLite file opens."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from tests.storage.contract import new_api_key, new_env
from vaultd.storage import SqliteStore, Store, codec
from vaultd.storage.records import ApiKeyRecord

CONSTRAINTS = (("organization_id", "org_A"), ("organization_id", "org_B*"), ("région", "eu-ß"))


async def test_constraints_read_back_by_id_hash_list_and_revoke(store: Store) -> None:
    record = replace(new_api_key(new_env()), context_constraints=CONSTRAINTS)
    assert await store.add_api_key(record)
    assert await store.get_api_key(record.id) == record
    assert await store.find_api_key(record.secret_hash) == record
    assert record in await store.list_api_keys()
    revoked = await store.revoke_api_key(record.id, datetime(2026, 2, 1, tzinfo=UTC))
    assert revoked is not None and revoked.context_constraints == CONSTRAINTS


async def test_an_unscoped_key_reads_back_unscoped(store: Store) -> None:
    record = new_api_key(new_env())
    await store.add_api_key(record)
    found = await store.get_api_key(record.id)
    assert found is not None and found.context_constraints == ()


def test_an_unscoped_record_is_stored_byte_for_byte_as_before_scoping() -> None:
    # docs/FORMAT.md: six fields, so a record an older vaultd wrote reads the same and an
    # unscoped key written now is what an older vaultd can read.
    created = datetime(2026, 1, 1, tzinfo=UTC)
    key = ApiKeyRecord("key_1", "deploy", "default", ("keys:use",), "ab", created)
    assert codec.encode_api_key(key).hex() == (
        "01"
        "00000005" + b"key_1".hex()
        + "00000006" + b"deploy".hex()
        + "00000007" + b"default".hex()
        + "0000000c" + "00000008" + b"keys:use".hex()
        + "00000002" + b"ab".hex()
        + "00000010" + b"1767225600000000".hex()
    )  # fmt: skip
    scoped = replace(key, context_constraints=(("org", "A*"),))
    assert codec.encode_api_key(scoped) == codec.encode_api_key(key) + bytes.fromhex(
        "0000000d" + "00000003" + b"org".hex() + "00000002" + b"A*".hex()
    )
    assert codec.decode_api_key(codec.encode_api_key(scoped), None) == scoped


async def test_sqlite_opens_a_file_made_before_scoped_keys(tmp_path: Path) -> None:
    path = tmp_path / "vaultd.db"
    store = SqliteStore(path)
    old = new_api_key(new_env())
    assert await store.add_api_key(old)
    await store.close()
    # The file as an older vaultd left it: no `context_constraints` column.
    with sqlite3.connect(path) as conn:
        conn.execute("ALTER TABLE api_keys DROP COLUMN context_constraints")
    conn.close()

    reopened = SqliteStore(path)
    try:
        assert await reopened.get_api_key(old.id) == old
        scoped = replace(new_api_key(new_env()), context_constraints=CONSTRAINTS)
        assert await reopened.add_api_key(scoped)
        assert await reopened.find_api_key(scoped.secret_hash) == scoped
    finally:
        await reopened.close()
