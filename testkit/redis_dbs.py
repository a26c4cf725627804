"""The Redis database each test suite owns on the session's redis-server: one table, so no two
suites can pick the same number.

Why suites need databases of their own: a store remembers the root key that made it, and vaultd
refuses to start on a store made with another ("another root key", vaultd/core/storeguard.py);
some suites also flush their database, list every KEK or scan every key. `SHARED` is the
database the session-wide servers (tests/conftest.py's `running`) and the storage contract use.

Add a suite by adding a member here; `@unique` makes a repeated number fail at import.
"""

from __future__ import annotations

from enum import IntEnum, unique


@unique
class RedisDb(IntEnum):
    SHARED = 0
    KEK_INDEX_MIGRATION = 5  # tests/storage/test_kek_index_migration.py: flushes it
    CONTEXT_INDEX_BACKFILL = 6  # tests/storage/test_context_index_backfill.py: clears markers
    LIFECYCLE = 7  # tests/lifecycle: `--all` and the job list see only its own KEKs
    FUZZ = 8  # tests/fuzz: thousands of hostile objects, KEKs and API keys
    SOAK = 9  # tests/bench/test_soak.py: scans every key of its server
    AMPLIFICATION = 10  # tests/security/test_amplification.py
    HTTP = 11  # tests/http
    WORKOS_SDK = 12  # tests/workos_sdk
    CONTRACT = 13  # tests/storage/test_apikeys_contract.py: flushes it
    STORE_GUARD = 14  # tests/faults/test_store_guard.py: flushes it
    IDENTITY = 15  # tests/storage/test_identity_contract.py: flushes it


def redis_db_url(server_url: str, db: RedisDb) -> str:
    """`server_url` (redis://host:port/N) pointed at database `db` instead."""
    return server_url.rpartition("/")[0] + f"/{int(db)}"
