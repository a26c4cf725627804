"""The embedded store's schema, created (or completed) on every open; never a breaking change."""

from __future__ import annotations

import sqlite3

# The object's primary key (environment_id, id) is also the scan index: ids sort in creation
# order. versions.seq records insertion order, so versions list oldest first.
# audit_events.seq is the read cursor: AUTOINCREMENT never reuses a number, even once trimming
# has emptied the table, so a reader holding a cursor never skips a later event. An event is
# kept whole as its codec record (the same bytes as on Redis); the columns beside it are what
# reads filter and trimming cuts on.
# object_context_items is the key context index: one row per item of each object, its primary
# key the order a filtered list walks (an item's objects by id, so in creation order). Filled
# in the transaction that writes or deletes the object; objects of a file made before it are
# entered once, in the open's own transaction, which store_migrations then records.
# keks holds each KEK's item and lifecycle state, and outlives its versions as a shred's
# tombstone. Databases made before it existed get their rows from kek_versions at connect.
# objects.deleted_at is NULL for a live object and the deletion time (µs) for a deleted one not
# purged yet; objects_deleted (ADDED_INDEXES) is the purge job's index of them by time.
# leases holds named leases (the purge job's): who holds each, until when.
# rewrap_jobs keeps each job whole as its codec record, beside the columns the lease check and
# listing need. BEGIN IMMEDIATE: the backfill writes, and a deferred transaction upgraded to a
# write after another connection's commit would fail at once instead of waiting its turn.
SCHEMA = """
BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS objects (
    environment_id     TEXT    NOT NULL,
    id                 TEXT    NOT NULL,
    name               TEXT    NOT NULL,
    key_context        TEXT    NOT NULL,
    created_at         INTEGER NOT NULL,
    current_version_id TEXT    NOT NULL,
    updated_at         INTEGER NOT NULL,
    deleted_at         INTEGER,
    PRIMARY KEY (environment_id, id),
    UNIQUE (environment_id, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS object_context_items (
    environment_id TEXT NOT NULL,
    item_key       TEXT NOT NULL,
    item_value     TEXT NOT NULL,
    object_id      TEXT NOT NULL,
    PRIMARY KEY (environment_id, item_key, item_value, object_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS object_context_items_by_object
    ON object_context_items (environment_id, object_id);
CREATE TABLE IF NOT EXISTS store_migrations (
    name TEXT    NOT NULL PRIMARY KEY,
    at   INTEGER NOT NULL
) WITHOUT ROWID;
INSERT OR IGNORE INTO object_context_items (environment_id, item_key, item_value, object_id)
    SELECT o.environment_id, item.key, item.value, o.id
    FROM objects o, json_each(o.key_context) item
    WHERE NOT EXISTS (SELECT 1 FROM store_migrations WHERE name = 'object-context-index');
INSERT OR IGNORE INTO store_migrations
    VALUES ('object-context-index', CAST(strftime('%s', 'now') AS INTEGER) * 1000000);
CREATE TABLE IF NOT EXISTS versions (
    seq             INTEGER PRIMARY KEY,
    environment_id  TEXT    NOT NULL,
    object_id       TEXT    NOT NULL,
    version_id      TEXT    NOT NULL,
    created_at      INTEGER NOT NULL,
    size            INTEGER NOT NULL,
    etag            TEXT    NOT NULL,
    key_ids         TEXT    NOT NULL,
    encrypted_keys  BLOB    NOT NULL,
    ciphertext      BLOB    NOT NULL,
    updated_by_id   TEXT    NOT NULL,
    updated_by_name TEXT    NOT NULL,
    UNIQUE (environment_id, object_id, version_id),
    FOREIGN KEY (environment_id, object_id) REFERENCES objects (environment_id, id)
);
CREATE TABLE IF NOT EXISTS kek_versions (
    environment_id TEXT    NOT NULL,
    kek_id         TEXT    NOT NULL,
    version        INTEGER NOT NULL,
    item_key       TEXT    NOT NULL,
    item_value     TEXT    NOT NULL,
    provider_uri   TEXT    NOT NULL,
    wrapped_key    BLOB    NOT NULL,
    created_at     INTEGER NOT NULL,
    secondary      BLOB    NOT NULL DEFAULT x'',
    PRIMARY KEY (environment_id, kek_id, version)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS keks (
    environment_id         TEXT    NOT NULL,
    kek_id                 TEXT    NOT NULL,
    item_key               TEXT    NOT NULL,
    item_value             TEXT    NOT NULL,
    min_decryption_version INTEGER NOT NULL DEFAULT 1,
    shredded_at            INTEGER,
    PRIMARY KEY (environment_id, kek_id)
) WITHOUT ROWID;
INSERT OR IGNORE INTO keks (environment_id, kek_id, item_key, item_value)
    SELECT DISTINCT environment_id, kek_id, item_key, item_value FROM kek_versions;
CREATE TABLE IF NOT EXISTS rewrap_jobs (
    id          TEXT    NOT NULL PRIMARY KEY,
    created_at  INTEGER NOT NULL,
    owner       TEXT    NOT NULL,
    lease_until INTEGER,
    record      BLOB    NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS leases (
    name        TEXT    NOT NULL PRIMARY KEY,
    owner       TEXT    NOT NULL,
    lease_until INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS api_keys (
    id             TEXT    NOT NULL PRIMARY KEY,
    name           TEXT    NOT NULL,
    environment_id TEXT    NOT NULL,
    permissions    TEXT    NOT NULL,
    secret_hash    TEXT    NOT NULL UNIQUE,
    created_at     INTEGER NOT NULL,
    revoked_at     INTEGER,
    context_constraints BLOB NOT NULL DEFAULT x''
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS audit_events (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    environment_id TEXT    NOT NULL,
    type           TEXT    NOT NULL,
    time           INTEGER NOT NULL,
    record         BLOB    NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_events_by_environment ON audit_events (environment_id, seq);
CREATE INDEX IF NOT EXISTS audit_events_by_time ON audit_events (time);
CREATE TABLE IF NOT EXISTS store_identity (
    singleton   INTEGER NOT NULL PRIMARY KEY CHECK (singleton = 1),
    id          TEXT    NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS store_root_keys (
    fingerprint TEXT    NOT NULL PRIMARY KEY
) WITHOUT ROWID;
COMMIT;
"""

ADDED_COLUMNS = {
    # table -> columns later releases added, with their definitions (defaults keep old rows).
    "kek_versions": {"secondary": "BLOB NOT NULL DEFAULT x''"},
    # A context-scoped API key's constraints (codec.encode_constraints); x'': not scoped.
    "api_keys": {"context_constraints": "BLOB NOT NULL DEFAULT x''"},
    "objects": {"deleted_at": "INTEGER"},
}

ADDED_INDEXES = {
    # name -> definition, made once ADDED_COLUMNS are there (an index on a column an older file
    # lacks cannot be in SCHEMA). Partial: live objects, nearly all of them, cost it nothing.
    "objects_deleted": "objects (deleted_at) WHERE deleted_at IS NOT NULL",
}


def add_missing_columns(conn: sqlite3.Connection) -> None:
    """Give a file an older vaultd made the columns (and their indexes) added since: its rows
    keep their values, and the new columns their defaults (what the older release meant). In
    one IMMEDIATE transaction, so two processes opening the file at once do not both add a
    column."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        for table, columns in ADDED_COLUMNS.items():
            present = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
            for name, definition in columns.items():
                if name not in present:
                    conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {definition}")
        for name, definition in ADDED_INDEXES.items():
            conn.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {definition}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
