"""The embedded SQLite store (store.py): one module per aggregate, its schema in schema.py."""

from __future__ import annotations

from vaultd.storage.sqlite.store import SqliteStore

__all__ = ["SqliteStore"]
