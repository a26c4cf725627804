"""Every Redis key name vaultd uses comes from `key()`, and nowhere else.

Layout, where `{env}` is the environment id inside a Redis Cluster hash tag:

    vaultd:{env}:objects                zset  every object id, all scored 0, so ZRANGE BYLEX walks
                                              them in creation order (ids are ULIDs)
    vaultd:{env}:digests                hash  object id -> "<updated_at µs> <name>": what a scan
                                              filters on without opening each object
    vaultd:{env}:names                  hash  name -> object id (a deleted object's too, until it
                                              is purged: its name stays reserved)
    vaultd:{env}:deleted                zset  ids of deleted (not yet purged) objects, scored by
                                              when they were deleted (µs): what the purge job reads
    vaultd:{env}:obj:<object_id>        hash  name, ctx, created, current (version id), and
                                              deleted (µs) once the object is deleted
    vaultd:{env}:obj:<object_id>:versions  hash  version id -> version record (codec.py)
    vaultd:{env}:obj:<object_id>:history   list  version info records, oldest first
    vaultd:{env}:ctx:<item hash>        zset  the ids of the objects whose key context holds one
                                              item, all scored 0 (creation order by ZRANGE BYLEX);
                                              <item hash> = hex SHA-256 of "<key>\0<value>"
    vaultd:{env}:ctx-indexed            string  set once every object of the environment written
                                              before the ctx:* index existed is entered in it
    vaultd:{env}:kek:<kek_id>           list  KEK version records; index i holds version i + 1
    vaultd:{env}:kek:<kek_id>:state     hash  item_key, item_value (the first writer's), min
                                              (min_decryption_version, absent: 1), shredded
                                              (µs, set once: the KEK is a tombstone from then)
    vaultd:{env}:keks                   set   every KEK id of the environment, shredded too
    vaultd:{env}:fence                  string  a counter, incremented by a durable KEK read so
                                              that a WAIT after it confirms what the read saw
    vaultd:{env}:audit                  stream  the environment's audit events (codec records)
    vaultd:{env}:byok                   hash  BYOK key id -> record (redis/byok.py)
    vaultd:{env}:byok-matches           hash  "<item key>\0<pattern>" -> BYOK key id: one per match
    vaultd:{env}:kek-counts             hash  API key id -> new KEKs admitted for it (the per-key
                                              total KEK quota, redis/kek_counts.py)

API keys belong to no environment, so they live under one fixed tag, `{@auth}`; `@` is never
in an environment id, so no environment can share (or collide with) these names:

    vaultd:{@auth}:apikeys              hash  key id -> API key record (codec.py)
    vaultd:{@auth}:apikey-hashes        hash  SHA-256 of the secret (hex) -> key id
    vaultd:{@auth}:apikeys-revoked      hash  key id -> revoked_at (µs); set once, never cleared
    vaultd:{@auth}:audit                stream  audit events of calls that failed authentication

Rewrap jobs belong to no environment either (every process resumes from one list), so they
live under another fixed tag, `{@jobs}`:

    vaultd:{@jobs}:rewrap               hash  job id -> rewrap job record (codec.py)
    vaultd:{@jobs}:rewrap-holders       hash  job id -> "<lease_until µs, 0: none> <owner>": what
                                              the save script checks without decoding a record
    vaultd:{@jobs}:migrations           hash  name -> when this database was upgraded so (µs);
                                              "object-context-index": every environment has its
                                              ctx:* index (new ones have it from their start)
    vaultd:{@jobs}:leases               hash  lease name -> "<until µs> <owner>" (the purge job's)
    vaultd:{@jobs}:deleted-environments set  every environment that ever had an object deleted:
                                              where the purge job looks (never shrinks)

The store's identity (which deployment's store this is) has a tag of its own, `{@store}`:

    vaultd:{@store}:identity            hash  id, created (µs), and one `root:<fingerprint>`
                                              field per root key version that served it

Every input is checked against a strict pattern before it is placed in a name, so no `{`, `}`
or `:` from a caller can move a key into another environment's slot or namespace, and an
empty id can never produce a `::` name (rq's `rq:job::id` bug).
"""

from __future__ import annotations

import hashlib
import re
from enum import Enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vaultd.storage.records import RewrapJob

PREFIX = "vaultd"
ENVIRONMENT_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
OBJECT_ID = re.compile(r"secret_[0-9A-Z]{26}")
KEK_ID = re.compile(r"kek_[0-9a-f]{32}")
API_KEY_ID = re.compile(r"key_[0-9A-Z]{26}")
SECRET_HASH = re.compile(r"[0-9a-f]{64}")
REWRAP_JOB_ID = re.compile(r"rewrap_[0-9A-Z]{26}")
CONTEXT_ITEM_HASH = re.compile(r"[0-9a-f]{64}")
LEASE_NAME = re.compile(r"[a-z][a-z0-9-]{0,31}")
AUTH_TAG = "@auth"
JOBS_TAG = "@jobs"
STORE_TAG = "@store"
IDENTITY_KEY = f"{PREFIX}:{{{STORE_TAG}}}:identity"


class Kind(Enum):
    """What a key holds: the shape of its name after the tag, and the id it needs, if any."""

    OBJECTS = ("objects", None)
    DIGESTS = ("digests", None)
    NAMES = ("names", None)
    DELETED = ("deleted", None)
    OBJECT = ("obj:{}", OBJECT_ID)
    VERSIONS = ("obj:{}:versions", OBJECT_ID)
    HISTORY = ("obj:{}:history", OBJECT_ID)
    CONTEXT_ITEM = ("ctx:{}", CONTEXT_ITEM_HASH)
    CONTEXT_INDEXED = ("ctx-indexed", None)
    KEK = ("kek:{}", KEK_ID)
    KEK_STATE = ("kek:{}:state", KEK_ID)
    KEKS = ("keks", None)
    FENCE = ("fence", None)
    AUDIT = ("audit", None)
    BYOK = ("byok", None)
    BYOK_MATCHES = ("byok-matches", None)
    KEK_COUNTS = ("kek-counts", None)

    def __init__(self, template: str, id_rule: re.Pattern[str] | None) -> None:
        self.template = template
        self.id_rule = id_rule


def key(environment_id: str, kind: Kind, ident: str | None = None) -> str:
    """The name of the `kind` key of an environment (and of an object or KEK, when it has one)."""
    check(ENVIRONMENT_ID, environment_id, "environment id")
    if kind.id_rule is None:
        if ident is not None:
            raise ValueError(f"a {kind.name} key takes no id")
        suffix = kind.template
    else:
        if ident is None:
            raise ValueError(f"a {kind.name} key needs an id")
        suffix = kind.template.format(check(kind.id_rule, ident, f"the id of a {kind.name} key"))
    return f"{PREFIX}:{{{environment_id}}}:{suffix}"


def context_item_key(environment_id: str, item_key: str, item_value: str) -> str:
    """The index of the objects whose key context holds item_key=item_value.

    Named by a hash of the item: an item may hold any character a key context allows (`:`,
    `{`, `}` among them), none of which may reach a key name. No item has a NUL (validation
    refuses control characters), so "<key>\0<value>" names one item only.
    """
    item = f"{item_key}\0{item_value}".encode()
    return key(environment_id, Kind.CONTEXT_ITEM, hashlib.sha256(item).hexdigest())


class AuthKind(Enum):
    """The keys under the fixed `{@auth}` tag: API keys, and events of unauthenticated calls."""

    API_KEYS = "apikeys"
    API_KEY_HASHES = "apikey-hashes"
    API_KEYS_REVOKED = "apikeys-revoked"
    AUDIT = "audit"


def auth_key(kind: AuthKind) -> str:
    return f"{PREFIX}:{{{AUTH_TAG}}}:{kind.value}"


class JobKind(Enum):
    """The keys under the fixed `{@jobs}` tag."""

    REWRAP = "rewrap"
    REWRAP_HOLDERS = "rewrap-holders"
    MIGRATIONS = "migrations"
    LEASES = "leases"
    DELETED_ENVIRONMENTS = "deleted-environments"


KEK_LIST = re.compile(r"vaultd:\{([A-Za-z0-9_-]{1,64})\}:kek:(kek_[0-9a-f]{32})")
"""A KEK's version list, as an older vaultd left it: (environment id, KEK id)."""


def job_key(kind: JobKind) -> str:
    return f"{PREFIX}:{{{JOBS_TAG}}}:{kind.value}"


def audit_key(environment_id: str) -> str:
    """The stream of an environment's audit events; "" names the unauthenticated calls' one."""
    return auth_key(AuthKind.AUDIT) if environment_id == "" else key(environment_id, Kind.AUDIT)


def check_rewrap_job(job: RewrapJob) -> None:
    """The ids a rewrap job carries into a store: its own, its environment's, its KEKs'."""
    check(REWRAP_JOB_ID, job.id, "rewrap job id")
    check(ENVIRONMENT_ID, job.environment_id, "environment id")
    for kek_id in job.kek_ids:
        check(KEK_ID, kek_id, "kek id")


def check(rule: re.Pattern[str], value: str, what: str) -> str:
    """`value` if it matches `rule` in full; else ValueError (without the value: it may be junk)."""
    if not isinstance(value, str) or not rule.fullmatch(value):
        raise ValueError(f"{what} must match {rule.pattern}")
    return value
