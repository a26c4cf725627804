"""KEKs in the embedded store (the KekStore part of SqliteStore).

kek_versions holds every version; keks holds each KEK's item and lifecycle state, and outlives
its versions as a shred's tombstone. Databases made before keks existed get their rows from
kek_versions at connect (schema.py).
"""

from __future__ import annotations

import contextlib
import itertools
import sqlite3
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from vaultd.storage import codec
from vaultd.storage.errors import KekChanged
from vaultd.storage.records import KekRecord, KekStamp, KekVersion
from vaultd.storage.sqlite.connection import SqliteConnection, check_ids, transaction


class SqliteKeks(SqliteConnection):
    """KekStore on SQLite."""

    async def get_kek(self, environment_id: str, kek_id: str) -> KekRecord | None:
        check_ids(environment_id, kek_id=kek_id)
        found = await self._run(lambda c: _keks(c, environment_id, kek_id))
        return found[0] if found else None

    async def add_kek_version(self, environment_id: str, kek_id: str, kek: KekVersion) -> bool:
        check_ids(environment_id, kek_id=kek_id)
        return await self._run(lambda c: _add_kek(c, environment_id, kek_id, kek))

    async def list_keks(self, environment_id: str) -> list[KekRecord]:
        check_ids(environment_id)
        return await self._run(lambda c: _keks(c, environment_id, None))

    async def rewrap_kek_version(
        self, environment_id: str, kek_id: str, expected: KekVersion, rewrapped: KekVersion
    ) -> bool:
        check_ids(environment_id, kek_id=kek_id)
        # One statement, its own transaction: the WHERE is the compare, the SET the swap.
        sql = (
            "UPDATE kek_versions SET provider_uri = ?, wrapped_key = ?, secondary = ?"
            " WHERE environment_id = ? AND kek_id = ? AND version = ? AND item_key = ?"
            " AND item_value = ? AND provider_uri = ? AND wrapped_key = ? AND created_at = ?"
            " AND secondary = ?"
        )
        params = (
            rewrapped.provider_uri,
            rewrapped.wrapped_key,
            codec.encode_secondary(rewrapped.secondary),
            environment_id,
            kek_id,
            *_kek_row(expected),
        )
        return await self._run(lambda c: c.execute(sql, params).rowcount == 1)

    async def set_min_decryption_version(
        self, environment_id: str, kek_id: str, version: int
    ) -> bool:
        check_ids(environment_id, kek_id=kek_id)
        # Versions run 1..newest without gaps, so "has `version`" is a range check.
        sql = (
            "UPDATE keks SET min_decryption_version = ?"
            " WHERE environment_id = ? AND kek_id = ? AND shredded_at IS NULL AND ? BETWEEN 1 AND"
            " (SELECT COALESCE(MAX(version), 0) FROM kek_versions"
            "  WHERE environment_id = ? AND kek_id = ?)"
        )
        params = (version, environment_id, kek_id, version, environment_id, kek_id)
        return await self._run(lambda c: c.execute(sql, params).rowcount == 1)

    async def shred_kek(
        self, environment_id: str, kek_id: str, item_key: str, item_value: str, at: datetime
    ) -> bool:
        check_ids(environment_id, kek_id=kek_id)
        ids = (environment_id, kek_id)
        micros = codec.to_micros(at)

        def shred(conn: sqlite3.Connection) -> bool:
            with transaction(conn):
                # The tombstone of a KEK never made; an existing KEK keeps its own item.
                conn.execute(
                    "INSERT OR IGNORE INTO keks VALUES (?, ?, ?, ?, 1, NULL)",
                    (*ids, item_key, item_value),
                )
                shredded = conn.execute(
                    "UPDATE keks SET shredded_at = ?"
                    " WHERE environment_id = ? AND kek_id = ? AND shredded_at IS NULL",
                    (micros, *ids),
                ).rowcount
                if not shredded:
                    return False
                conn.execute(
                    "DELETE FROM kek_versions WHERE environment_id = ? AND kek_id = ?", ids
                )
            # secure_delete zeroed the rows in the pages written; truncating the WAL drops the
            # older copies of those pages. Best effort, after the commit: a reader may hold
            # the WAL, and the shred is done either way.
            with contextlib.suppress(sqlite3.OperationalError):
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            return True

        return await self._run(shred)


def _add_kek(conn: sqlite3.Connection, environment_id: str, kek_id: str, kek: KekVersion) -> bool:
    ids = (environment_id, kek_id)
    with transaction(conn):
        (shredded, newest) = conn.execute(
            "SELECT EXISTS (SELECT 1 FROM keks WHERE environment_id = ? AND kek_id = ?"
            "               AND shredded_at IS NOT NULL),"
            " (SELECT COALESCE(MAX(version), 0) FROM kek_versions"
            "  WHERE environment_id = ? AND kek_id = ?)",
            ids + ids,
        ).fetchone()
        if shredded or newest != kek.version - 1:
            return False
        conn.execute(
            "INSERT INTO kek_versions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", ids + _kek_row(kek)
        )
        # Every add, not only version 1's, so a KEK an older release made joins the list too.
        conn.execute(
            "INSERT OR IGNORE INTO keks (environment_id, kek_id, item_key, item_value)"
            " VALUES (?, ?, ?, ?)",
            (*ids, kek.item_key, kek.item_value),
        )
        return True


def _kek_row(kek: KekVersion) -> tuple[Any, ...]:
    """A version's kek_versions columns after its ids, in table order."""
    return (
        kek.version,
        kek.item_key,
        kek.item_value,
        kek.provider_uri,
        kek.wrapped_key,
        codec.to_micros(kek.created_at),
        codec.encode_secondary(kek.secondary),
    )


def _kek_version(columns: Sequence[Any]) -> KekVersion:
    """A KEK version from its columns (item_key ... secondary), stamped as Redis stamps it:
    the SHA-1 of its codec record (codec.kek_stamp)."""
    item_key, item_value, version, uri, wrapped, created, secondary = columns
    kek = KekVersion(
        item_key,
        item_value,
        version,
        uri,
        wrapped,
        codec.from_micros(created),
        secondary=codec.decode_secondary(secondary),
    )
    return replace(kek, stamp=codec.kek_stamp(codec.encode_kek(kek)))


def check_keks(conn: sqlite3.Connection, environment_id: str, keks: Sequence[KekStamp]) -> None:
    """KekChanged unless every KEK version named is stored as stamped (inside the caller's
    transaction, so the write that follows sees the same)."""
    for k in keks:
        row = conn.execute(
            "SELECT item_key, item_value, version, provider_uri, wrapped_key, created_at,"
            " secondary FROM kek_versions WHERE environment_id = ? AND kek_id = ? AND version = ?",
            (environment_id, k.kek_id, k.version),
        ).fetchone()
        if row is None or _kek_version(row).stamp != k.stamp:
            raise KekChanged(k.kek_id)


def _keks(conn: sqlite3.Connection, environment_id: str, kek_id: str | None) -> list[KekRecord]:
    """One KEK (or all the environment's), with its versions, read in one statement (one
    snapshot), ordered as list_keks promises."""
    sql = (
        "SELECT k.kek_id, k.item_key, k.item_value, k.min_decryption_version, k.shredded_at,"
        "       v.item_key, v.item_value, v.version, v.provider_uri, v.wrapped_key, v.created_at,"
        "       v.secondary"
        " FROM keks k LEFT JOIN kek_versions v"
        "   ON v.environment_id = k.environment_id AND v.kek_id = k.kek_id"
        " WHERE k.environment_id = ?"
    )
    params = [environment_id]
    if kek_id is not None:
        sql += " AND k.kek_id = ?"
        params.append(kek_id)
    sql += " ORDER BY k.item_key, k.item_value, k.kek_id, v.version"
    records: list[KekRecord] = []
    for (kid, item_key, item_value, min_version, shredded), rows in itertools.groupby(
        conn.execute(sql, params), key=lambda row: row[:5]
    ):
        # A KEK without versions has one LEFT JOIN row, its version columns NULL.
        versions = tuple(_kek_version(row[5:]) for row in rows if row[7] is not None)
        shredded_at = None if shredded is None else codec.from_micros(shredded)
        records.append(KekRecord(kid, item_key, item_value, versions, min_version, shredded_at))
    return records
