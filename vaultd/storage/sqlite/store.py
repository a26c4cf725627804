"""The embedded store: the composition of one mixin per aggregate (objects.py, keks.py, ...),
each on the shared plumbing of connection.py; the schema is in schema.py."""

from __future__ import annotations

from vaultd.storage.sqlite.apikeys import SqliteApiKeys
from vaultd.storage.sqlite.audit import SqliteAudit
from vaultd.storage.sqlite.byok import SqliteByokKeys
from vaultd.storage.sqlite.deleted import SqliteDeletedObjects
from vaultd.storage.sqlite.identity import SqliteIdentity
from vaultd.storage.sqlite.jobs import SqliteJobs
from vaultd.storage.sqlite.kek_counts import SqliteKekCounts
from vaultd.storage.sqlite.keks import SqliteKeks
from vaultd.storage.sqlite.objects import SqliteObjects


class SqliteStore(
    SqliteObjects,
    SqliteDeletedObjects,
    SqliteKeks,
    SqliteApiKeys,
    SqliteAudit,
    SqliteJobs,
    SqliteByokKeys,
    SqliteKekCounts,
    SqliteIdentity,
):
    """A Store in one SQLite file, created (owner-only) with its schema if missing."""
