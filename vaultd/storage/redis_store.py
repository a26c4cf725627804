"""The Redis store: one Lua script per change, every key of an environment in one hash slot.

Key names come from `keys.key()`; each carries its environment id as a Redis Cluster hash tag
(`vaultd:{env}:...`). All of one environment's keys therefore live in one slot, so a script may
touch an object, its versions, the name index and the scan index together and still be legal on
Redis Cluster, where a script's keys must share a slot; and a script runs atomically, so no
reader ever sees half a change and no crash leaves one. The cost: one environment's data and
traffic sit on one shard. Environments spread over the cluster; one huge environment does not.

Scripts declare every key they touch in KEYS (the Cluster rule) and never build key names, so
the layout lives in keys.py alone. Each does all its checks before its first write: Redis stops a
script whose first write meets a full memory with nothing written, and a check that fails
returns before anything changed.

The client made by `from_url` does not retry commands: a reply lost to a dropped connection
leaves the write's outcome unknown, and a replayed create would report NameTaken for its own
name. Such failures surface as StoreUnavailable, which the caller may retry.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, ParamSpec, TypeVar

from redis import exceptions as redis_errors
from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from vaultd.storage import codec
from vaultd.storage.autopipeline import AutoPipeline
from vaultd.storage.base import (
    ApiKeyRecord,
    AuditEvent,
    AuditPage,
    AuditQuery,
    BadCursor,
    Direction,
    Durability,
    KekChanged,
    KekRecord,
    KekStamp,
    KekVersion,
    NameTaken,
    ObjectEntry,
    ObjectMissing,
    ObjectVersions,
    RewrapJob,
    ScanFilter,
    StoredObject,
    StoredVersion,
    StoreError,
    StoreIdentity,
    StoreUnavailable,
    VersionInfo,
    VersionMismatch,
)
from vaultd.storage.byok_redis import RedisByokKeys
from vaultd.storage.kek_counts_redis import RedisKekCounts
from vaultd.storage.keys import (
    API_KEY_ID,
    ENVIRONMENT_ID,
    IDENTITY_KEY,
    KEK_LIST,
    OBJECT_ID,
    PREFIX,
    REWRAP_JOB_ID,
    SECRET_HASH,
    AuthKind,
    JobKind,
    Kind,
    audit_key,
    auth_key,
    check,
    check_rewrap_job,
    job_key,
    key,
)
from vaultd.storage.redis_durability import read_persistence, summarize
from vaultd.storage.redis_urls import RedisClient, redis_client, wait_replicas

REPLICA_TIMEOUT_MS = 2000
DEFAULT_TIMEOUT_SECONDS = 5.0
KEKS_PER_READ = 256
"""Most KEKs one script of list_keks reads."""
SCAN_BUDGET = 256
"""Most ids one scan step examines, so a filtered scan of a huge environment never holds Redis
for more than a moment; the scan continues in further steps."""

# BusyLoadingError (a restarted server still reading its data) is a ConnectionError, and
# MasterDownError a ClusterDownError. A read-only replica (failover) or a full memory cannot take
# the write now, but may soon: the caller should retry, as for a network failure.
_UNAVAILABLE = (
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    redis_errors.ClusterDownError,
    redis_errors.TryAgainError,
    redis_errors.ReadOnlyError,
    redis_errors.OutOfMemoryError,
)

_KEKS_CHANGED = """
-- Shared by the scripts that store wrapped DEKs: the first KEK version, of those the write
-- names, that the store does not hold exactly as stamped (codec.kek_stamp), or 0 if none.
-- KEYS[first_key..] KEK version lists (index i holds version i + 1)
-- ARGV[first_arg..] per KEK, in the same order: its version, its stamp
local function keks_changed(first_key, first_arg)
  for i = first_key, #KEYS do
    local at = first_arg + 2 * (i - first_key)
    local record = redis.call("LINDEX", KEYS[i], tonumber(ARGV[at]) - 1)
    if not record or redis.sha1hex(record) ~= ARGV[at + 1] then return i - first_key + 1 end
  end
  return 0
end
"""

_CREATE = (
    _KEKS_CHANGED
    + """
-- Create an object with its first version, unless its name or id is in use or a KEK changed.
-- KEYS[1] object hash  KEYS[2] versions hash  KEYS[3] history list
-- KEYS[4] names hash   KEYS[5] objects zset   KEYS[6] digests hash
-- KEYS[7..] the version lists of the KEKs that wrapped its DEK
-- ARGV[1] object id  ARGV[2] name  ARGV[3] key context (JSON)  ARGV[4] created_at (µs)
-- ARGV[5] version id  ARGV[6] version record  ARGV[7] version info record
-- ARGV[8] updated_at (µs)  ARGV[9..] (version, stamp) per KEK of KEYS[7..]
-- Returns "ok", "name_taken", "id_taken" or "kek_changed:<n>" (the n-th KEK named).
local changed = keks_changed(7, 9)
if changed > 0 then return "kek_changed:" .. changed end
if redis.call("HEXISTS", KEYS[4], ARGV[2]) == 1 then return "name_taken" end
if redis.call("EXISTS", KEYS[1]) == 1 then return "id_taken" end
redis.call("HSET", KEYS[1], "name", ARGV[2], "ctx", ARGV[3], "created", ARGV[4],
           "current", ARGV[5])
redis.call("HSET", KEYS[2], ARGV[5], ARGV[6])
redis.call("RPUSH", KEYS[3], ARGV[7])
redis.call("HSET", KEYS[4], ARGV[2], ARGV[1])
redis.call("ZADD", KEYS[5], 0, ARGV[1])
redis.call("HSET", KEYS[6], ARGV[1], ARGV[8] .. " " .. ARGV[2])
return "ok"
"""
)

_GET = """
-- An object with one of its versions, in one round trip.
-- KEYS[1] object hash  KEYS[2] versions hash  KEYS[3] history list
-- ARGV[1] version id, or "" for the current version
-- Returns {name, key context, created_at, version record, newest version's info record}, or
-- nil if either is missing.
local meta = redis.call("HMGET", KEYS[1], "name", "ctx", "created", "current")
if not meta[1] then return nil end
local version_id = ARGV[1]
if version_id == "" then version_id = meta[4] end
local record = redis.call("HGET", KEYS[2], version_id)
if not record then return nil end
return {meta[1], meta[2], meta[3], record, redis.call("LINDEX", KEYS[3], -1) or ""}
"""

_LIST_VERSIONS = """
-- An object's current version id and every version's info, oldest first.
-- KEYS[1] object hash  KEYS[2] history list
-- Returns {current version id, info record, ...}, or nil if no such object.
local current = redis.call("HGET", KEYS[1], "current")
if not current then return nil end
local reply = redis.call("LRANGE", KEYS[2], 0, -1)
table.insert(reply, 1, current)
return reply
"""

_UPDATE = (
    _KEKS_CHANGED
    + """
-- Make a new version current, if the object exists, the check (if any) holds and no KEK changed.
-- KEYS[1] object hash  KEYS[2] versions hash  KEYS[3] history list  KEYS[4] digests hash
-- KEYS[5..] the version lists of the KEKs that wrapped the version's DEK
-- ARGV[1] object id  ARGV[2] version id  ARGV[3] version record  ARGV[4] version info record
-- ARGV[5] updated_at (µs)  ARGV[6] expected current version id ("": last write wins)
-- ARGV[7..] (version, stamp) per KEK of KEYS[5..]
-- Returns {"ok"}, {"missing"}, {"mismatch", current version id}, {"version_taken"} or
-- {"kek_changed", n} (the n-th KEK named).
local changed = keks_changed(5, 7)
if changed > 0 then return {"kek_changed", changed} end
local meta = redis.call("HMGET", KEYS[1], "current", "name")
if not meta[1] then return {"missing"} end
if ARGV[6] ~= "" and ARGV[6] ~= meta[1] then return {"mismatch", meta[1]} end
if redis.call("HEXISTS", KEYS[2], ARGV[2]) == 1 then return {"version_taken"} end
redis.call("HSET", KEYS[2], ARGV[2], ARGV[3])
redis.call("RPUSH", KEYS[3], ARGV[4])
redis.call("HSET", KEYS[1], "current", ARGV[2])
redis.call("HSET", KEYS[4], ARGV[1], ARGV[5] .. " " .. meta[2])
return {"ok"}
"""
)

_DELETE = """
-- Delete an object, its versions, its name and its place in scans, if the check (if any) holds.
-- KEYS[1] object hash  KEYS[2] versions hash  KEYS[3] history list
-- KEYS[4] names hash   KEYS[5] objects zset   KEYS[6] digests hash
-- ARGV[1] object id  ARGV[2] expected current version id ("": delete whatever is current)
-- Returns {"ok"}, {"missing"} or {"mismatch", current version id}.
local meta = redis.call("HMGET", KEYS[1], "current", "name")
if not meta[1] then return {"missing"} end
if ARGV[2] ~= "" and ARGV[2] ~= meta[1] then return {"mismatch", meta[1]} end
redis.call("HDEL", KEYS[4], meta[2])
redis.call("ZREM", KEYS[5], ARGV[1])
redis.call("HDEL", KEYS[6], ARGV[1])
redis.call("DEL", KEYS[1], KEYS[2], KEYS[3])
return {"ok"}
"""

_SCAN = """
-- One bounded step of a scan: examine at most ARGV[4] ids past the cursor, keep those that pass.
-- KEYS[1] objects zset  KEYS[2] digests hash
-- ARGV[1] "asc" or "desc"  ARGV[2] cursor: the id to continue after ("" to start at the end)
-- ARGV[3] entries still wanted  ARGV[4] most ids to examine
-- ARGV[5] name prefix ("" for any)  ARGV[6] updated after, µs ("" for any)
-- Returns {next cursor, id, digest, id, digest, ...}; the next cursor is the last id examined,
-- or "" once no ids are left.
local start, stop, rev = "-", "+", nil
if ARGV[1] == "desc" then start, stop, rev = "+", "-", "REV" end
if ARGV[2] ~= "" then start = "(" .. ARGV[2] end
local ids
if rev then
  ids = redis.call("ZRANGE", KEYS[1], start, stop, "BYLEX", "REV", "LIMIT", 0, ARGV[4])
else
  ids = redis.call("ZRANGE", KEYS[1], start, stop, "BYLEX", "LIMIT", 0, ARGV[4])
end
local wanted, prefix, after = tonumber(ARGV[3]), ARGV[5], tonumber(ARGV[6])
local reply, found = {""}, 0
for _, id in ipairs(ids) do
  local digest = redis.call("HGET", KEYS[2], id)
  local space = string.find(digest, " ", 1, true)
  local updated = tonumber(string.sub(digest, 1, space - 1))
  if string.sub(digest, space + 1, space + #prefix) == prefix
      and (after == nil or updated > after) then
    table.insert(reply, id)
    table.insert(reply, digest)
    found = found + 1
    if found == wanted then
      reply[1] = id
      return reply
    end
  end
end
if #ids == tonumber(ARGV[4]) then reply[1] = ids[#ids] end
return reply
"""

_GET_KEKS = """
-- Every version and the state of each KEK named, from one snapshot.
-- KEYS[2i-1] a KEK's version list  KEYS[2i] its state hash
-- ARGV[1] "fence": KEYS[#KEYS] is the environment's fence counter, to increment. A WAIT after
-- this write on the same connection then confirms the replicas hold all the script read.
-- Returns {{version record, ...}, {field, value, ...}} per KEK, in the order named.
local last = #KEYS
if ARGV[1] == "fence" then
  redis.call("INCR", KEYS[last])
  last = last - 1
end
local reply = {}
for i = 1, last, 2 do
  table.insert(reply, {redis.call("LRANGE", KEYS[i], 0, -1), redis.call("HGETALL", KEYS[i + 1])})
end
return reply
"""

_ADD_KEK = """
-- Append a KEK version if it directly follows the newest one and the KEK is not shredded.
-- KEYS[1] KEK list (index i holds version i + 1)  KEYS[2] KEK state hash  KEYS[3] KEK index set
-- ARGV[1] the new version's number  ARGV[2] its record  ARGV[3] KEK id
-- ARGV[4] item key  ARGV[5] item value
-- Versions are only ever appended here, one at a time, so the length is the newest version.
-- Returns 1 if added, 0 if another writer got there first or the KEK was shredded.
if redis.call("HEXISTS", KEYS[2], "shredded") == 1 then return 0 end
if redis.call("LLEN", KEYS[1]) ~= tonumber(ARGV[1]) - 1 then return 0 end
redis.call("RPUSH", KEYS[1], ARGV[2])
-- On every add, not only version 1's, so a KEK an older release made joins the index too.
redis.call("HSETNX", KEYS[2], "item_key", ARGV[4])
redis.call("HSETNX", KEYS[2], "item_value", ARGV[5])
redis.call("SADD", KEYS[3], ARGV[3])
return 1
"""

_INDEX_KEK = """
-- Enter a KEK into its environment's list, keeping any item its state already names.
-- KEYS[1] KEK state hash  KEYS[2] KEK index set
-- ARGV[1] KEK id  ARGV[2] item key  ARGV[3] item value
redis.call("HSETNX", KEYS[1], "item_key", ARGV[2])
redis.call("HSETNX", KEYS[1], "item_value", ARGV[3])
redis.call("SADD", KEYS[2], ARGV[1])
return 1
"""

_REWRAP_KEK = """
-- Replace one KEK version's record if it is still the one expected, byte for byte.
-- KEYS[1] KEK list
-- ARGV[1] version number (>= 1)  ARGV[2] expected record  ARGV[3] new record
-- Returns 1 if replaced, 0 if the version is missing (or shredded) or differs.
if redis.call("LINDEX", KEYS[1], tonumber(ARGV[1]) - 1) ~= ARGV[2] then return 0 end
redis.call("LSET", KEYS[1], tonumber(ARGV[1]) - 1, ARGV[3])
return 1
"""

_SET_MIN_VERSION = """
-- Set a KEK's min_decryption_version, if the KEK has that version and is not shredded.
-- KEYS[1] KEK list  KEYS[2] KEK state hash
-- ARGV[1] version
-- Returns 1 if set, else 0.
local version = tonumber(ARGV[1])
if redis.call("HEXISTS", KEYS[2], "shredded") == 1 then return 0 end
if version < 1 or version > redis.call("LLEN", KEYS[1]) then return 0 end
redis.call("HSET", KEYS[2], "min", ARGV[1])
return 1
"""

_SHRED_KEK = """
-- Destroy a KEK's versions and leave its tombstone, unless it was shredded before.
-- KEYS[1] KEK list  KEYS[2] KEK state hash  KEYS[3] KEK index set
-- ARGV[1] KEK id  ARGV[2] item key  ARGV[3] item value  ARGV[4] shredded_at (µs)
-- Returns 1 if this call shredded it, 0 if it was shredded before (its time stays).
if redis.call("HEXISTS", KEYS[2], "shredded") == 1 then return 0 end
redis.call("DEL", KEYS[1])
-- A KEK that exists keeps its own item; a KEK never made gets the one named.
redis.call("HSETNX", KEYS[2], "item_key", ARGV[2])
redis.call("HSETNX", KEYS[2], "item_value", ARGV[3])
redis.call("HSET", KEYS[2], "shredded", ARGV[4])
redis.call("SADD", KEYS[3], ARGV[1])
return 1
"""

_GET_VERSIONS = """
-- Every version of each object named, from one snapshot.
-- KEYS[2i-1] an object's history list  KEYS[2i] its versions hash
-- Returns {{info record, ...}, {version record, ...}} per object, in the order named: the
-- history gives the order, the hash the records; both are empty for an object deleted since.
local reply = {}
for i = 1, #KEYS, 2 do
  table.insert(reply, {redis.call("LRANGE", KEYS[i], 0, -1), redis.call("HVALS", KEYS[i + 1])})
end
return reply
"""

_REPLACE_KEYS = (
    _KEKS_CHANGED
    + """
-- Swap a version's key_ids and encrypted_keys in its record, if its encrypted_keys are still
-- the ones expected and no KEK changed. The record is spliced in place, so every other byte of
-- it (the ciphertext above all) is kept exactly as stored and never leaves Redis.
-- KEYS[1] versions hash  KEYS[2..] the version lists of the KEKs that wrapped the new keys
-- ARGV[1] version id  ARGV[2] expected encrypted_keys
-- ARGV[3] the new key_ids and encrypted_keys fields, framed (codec.encode_version_keys)
-- ARGV[4] record format byte  ARGV[5] fields before key_ids (codec.VERSION_FIELDS_BEFORE_KEYS)
-- ARGV[6..] (version, stamp) per KEK of KEYS[2..]
-- A record is its format byte, then per field a 4-byte big-endian length and the bytes.
-- Returns 1 if swapped, 0 if the version is gone (its object deleted) or was rewrapped,
-- "kek_changed:<n>" if the n-th KEK named changed.
local changed = keks_changed(2, 6)
if changed > 0 then return "kek_changed:" .. changed end
local record = redis.call("HGET", KEYS[1], ARGV[1])
if not record then return 0 end
if string.byte(record, 1) ~= tonumber(ARGV[4]) then
  return redis.error_reply("unreadable record: unknown format")
end
local function skip(at)
  local length, data_at = struct.unpack(">I4", record, at)
  return data_at + length, data_at, length
end
local at = 2
for _ = 1, tonumber(ARGV[5]) do at = skip(at) end
local keys_at = at
at = skip(at)
local after_keys, data_at, length = skip(at)
if string.sub(record, data_at, data_at + length - 1) ~= ARGV[2] then return 0 end
redis.call("HSET", KEYS[1], ARGV[1],
           string.sub(record, 1, keys_at - 1) .. ARGV[3] .. string.sub(record, after_keys))
return 1
"""
)

_SAVE_REWRAP_JOB = """
-- Store a rewrap job unless another owner holds it under a lease not yet ended.
-- KEYS[1] rewrap jobs hash  KEYS[2] rewrap holders hash
-- ARGV[1] job id  ARGV[2] record  ARGV[3] "<lease_until µs, 0: none> <owner>"  ARGV[4] now (µs)
-- Returns 1 if stored, else 0.
local held = redis.call("HGET", KEYS[2], ARGV[1])
if held then
  local space = string.find(held, " ", 1, true)
  local lease, owner = tonumber(string.sub(held, 1, space - 1)), string.sub(held, space + 1)
  local mine = string.sub(ARGV[3], string.find(ARGV[3], " ", 1, true) + 1)
  if owner ~= mine and lease >= tonumber(ARGV[4]) then return 0 end
end
redis.call("HSET", KEYS[1], ARGV[1], ARGV[2])
redis.call("HSET", KEYS[2], ARGV[1], ARGV[3])
return 1
"""

_ADD_API_KEY = """
-- Store a new API key, unless its id or secret hash is in use, or (when asked) any key exists.
-- KEYS[1] apikeys hash  KEYS[2] apikey-hashes hash
-- ARGV[1] key id  ARGV[2] secret hash  ARGV[3] record  ARGV[4] "1": only if no key exists yet
-- Returns "ok", "exists" (ARGV[4] is "1" and a key exists) or "taken".
if ARGV[4] == "1" and redis.call("HLEN", KEYS[1]) > 0 then return "exists" end
if redis.call("HEXISTS", KEYS[1], ARGV[1]) == 1 or redis.call("HEXISTS", KEYS[2], ARGV[2]) == 1
then return "taken" end
redis.call("HSET", KEYS[1], ARGV[1], ARGV[3])
redis.call("HSET", KEYS[2], ARGV[2], ARGV[1])
return "ok"
"""

_GET_API_KEY = """
-- An API key and its revocation time, by id or by secret hash, in one round trip.
-- KEYS[1] apikeys hash  KEYS[2] apikey-hashes hash  KEYS[3] apikeys-revoked hash
-- ARGV[1] "id" or "hash"  ARGV[2] the key id or the secret hash
-- Returns {record, revoked_at in µs or ""}, or nil if there is no such key.
local id = ARGV[2]
if ARGV[1] == "hash" then
  id = redis.call("HGET", KEYS[2], ARGV[2])
  if not id then return nil end
end
local record = redis.call("HGET", KEYS[1], id)
if not record then return nil end
return {record, redis.call("HGET", KEYS[3], id) or ""}
"""

_REVOKE_API_KEY = """
-- Revoke an API key. HSETNX: a key revoked twice keeps its first revocation time.
-- KEYS[1] apikeys hash  KEYS[2] apikeys-revoked hash
-- ARGV[1] key id  ARGV[2] revoked_at (µs)
-- Returns {record, revoked_at}, or nil if there is no such key.
local record = redis.call("HGET", KEYS[1], ARGV[1])
if not record then return nil end
redis.call("HSETNX", KEYS[2], ARGV[1], ARGV[2])
return {record, redis.call("HGET", KEYS[2], ARGV[1])}
"""

_LIST_API_KEYS = """
-- Every API key record and every revocation, from one snapshot.
-- KEYS[1] apikeys hash  KEYS[2] apikeys-revoked hash
-- Returns {{record, ...}, {key id, revoked_at, ...}}.
return {redis.call("HVALS", KEYS[1]), redis.call("HGETALL", KEYS[2])}
"""

_CREATE_IDENTITY = """
-- Write the store's identity, unless it has one.
-- KEYS[1] identity hash
-- ARGV[1] store id  ARGV[2] created_at (µs)  ARGV[3..] root key fingerprints
-- Returns 1 if written, 0 if the store already had an identity.
if redis.call("EXISTS", KEYS[1]) == 1 then return 0 end
redis.call("HSET", KEYS[1], "id", ARGV[1], "created", ARGV[2])
for i = 3, #ARGV do redis.call("HSET", KEYS[1], "root:" .. ARGV[i], "1") end
return 1
"""

_ADD_ROOT_FINGERPRINTS = """
-- Add root key fingerprints to an existing identity (never create one without its id).
-- KEYS[1] identity hash  ARGV[1..] fingerprints
-- Returns 1 if the identity exists, else 0.
if redis.call("EXISTS", KEYS[1]) == 0 then return 0 end
for i = 1, #ARGV do redis.call("HSET", KEYS[1], "root:" .. ARGV[i], "1") end
return 1
"""

AUDIT_READ_BATCH = 500
"""Stream entries one XRANGE fetches while looking for events that pass a query's filters."""
AUDIT_CLOCK_MARGIN_MS = 60_000
"""How far before `since` a read starts: stream ids carry Redis's clock, events vaultd's."""
_STREAM_ID = re.compile(r"[0-9]{1,20}-[0-9]{1,20}")
_LAST_STREAM_ID = f"{2**64 - 1}-{2**64 - 1}"


def _is_stream_id(text: str) -> bool:
    """Whether `text` is an id Redis could have given a stream entry: two unsigned 64-bit
    halves (20 digits can hold more, which Redis refuses with an error)."""
    return _STREAM_ID.fullmatch(text) is not None and all(
        int(half) < 2**64 for half in text.split("-")
    )


_REWRAP_KEYS = [job_key(JobKind.REWRAP), job_key(JobKind.REWRAP_HOLDERS)]
_MIGRATIONS = job_key(JobKind.MIGRATIONS)
_KEK_INDEX_MIGRATION = "kek-index"
_API_KEY_KEYS = [
    auth_key(AuthKind.API_KEYS),
    auth_key(AuthKind.API_KEY_HASHES),
    auth_key(AuthKind.API_KEYS_REVOKED),
]

P = ParamSpec("P")
T = TypeVar("T")
log = logging.getLogger(__name__)


def _available(method: Callable[P, Awaitable[T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    """Turn Redis being unreachable, loading, failing over, full or slow into StoreUnavailable.

    A method of RedisStore: the whole operation, however many commands it sends, is bounded by
    the store's timeout, so a call with no deadline of its own still fails in bounded time.
    """

    @functools.wraps(method)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        timeout: float | None = getattr(args[0], "timeout", None)
        try:
            async with asyncio.timeout(timeout):
                return await method(*args, **kwargs)
        except TimeoutError:
            raise StoreUnavailable(
                f"redis did not answer within {timeout:g}s (store_timeout_seconds)", "TIMEOUT"
            ) from None
        except _UNAVAILABLE as exc:
            # The class name only: enough to tell a timeout from a refusal, and never a value.
            raise StoreUnavailable(
                f"redis is unavailable ({type(exc).__name__})", _cause(exc)
            ) from exc
        except redis_errors.ResponseError as exc:
            if not str(exc).startswith("MISCONF"):
                raise
            # Redis refuses writes while it cannot persist them (its disk is full, say).
            cause = "ENOSPC" if "No space left" in str(exc) else "MISCONF"
            log.error("redis refuses writes: it cannot persist them (%s)", cause)
            raise StoreUnavailable(f"redis cannot persist writes ({cause})", cause) from exc

    return wrapper


def _cause(error: Exception) -> str:
    """The StoreUnavailable cause for one of the _UNAVAILABLE errors."""
    if isinstance(error, redis_errors.TimeoutError):
        return "TIMEOUT"
    if isinstance(error, redis_errors.ReadOnlyError):
        return "READONLY"
    if isinstance(error, redis_errors.OutOfMemoryError):
        return "OOM"
    if isinstance(error, redis_errors.BusyLoadingError):
        return "LOADING"
    return "UNREACHABLE"


class _ObjectKeys:
    """The keys one object's scripts touch."""

    def __init__(self, environment_id: str, object_id: str) -> None:
        self.object = key(environment_id, Kind.OBJECT, object_id)
        self.versions = key(environment_id, Kind.VERSIONS, object_id)
        self.history = key(environment_id, Kind.HISTORY, object_id)
        self.names = key(environment_id, Kind.NAMES)
        self.objects = key(environment_id, Kind.OBJECTS)
        self.digests = key(environment_id, Kind.DIGESTS)

    def all(self) -> list[str]:
        """In the order _CREATE and _DELETE declare them."""
        return [self.object, self.versions, self.history, self.names, self.objects, self.digests]


class _KekKeys:
    """The keys one KEK's scripts touch."""

    def __init__(self, environment_id: str, kek_id: str) -> None:
        self.versions = key(environment_id, Kind.KEK, kek_id)
        self.state = key(environment_id, Kind.KEK_STATE, kek_id)
        self.index = key(environment_id, Kind.KEKS)


class RedisStore(RedisByokKeys, RedisKekCounts):
    """A Store on Redis, through redis-py asyncio."""

    def __init__(
        self,
        client: RedisClient,
        *,
        scan_budget: int = SCAN_BUDGET,
        wait_replicas: int = 0,
        replica_timeout_ms: int = REPLICA_TIMEOUT_MS,
        timeout: float | None = None,
    ) -> None:
        if client.get_connection_kwargs().get("decode_responses"):
            raise ValueError("RedisStore needs a client with decode_responses=False")
        self._redis = client
        self.timeout = timeout
        """Most seconds one operation may take, all its commands together; None: unbounded."""
        self._scan_budget = scan_budget
        self._wait_replicas = wait_replicas
        self._replica_timeout_ms = replica_timeout_ms
        self._create = client.register_script(_CREATE)
        self._get = client.register_script(_GET)
        self._list_versions = client.register_script(_LIST_VERSIONS)
        self._update = client.register_script(_UPDATE)
        self._delete = client.register_script(_DELETE)
        self._scan = client.register_script(_SCAN)
        self._get_keks = client.register_script(_GET_KEKS)
        self._add_kek = client.register_script(_ADD_KEK)
        self._rewrap_kek = client.register_script(_REWRAP_KEK)
        self._index_kek = client.register_script(_INDEX_KEK)
        self._set_min_version = client.register_script(_SET_MIN_VERSION)
        self._shred_kek = client.register_script(_SHRED_KEK)
        self._get_versions = client.register_script(_GET_VERSIONS)
        self._replace_keys = client.register_script(_REPLACE_KEYS)
        self._save_rewrap_job = client.register_script(_SAVE_REWRAP_JOB)
        self._add_api_key = client.register_script(_ADD_API_KEY)
        self._get_api_key = client.register_script(_GET_API_KEY)
        self._revoke_api_key = client.register_script(_REVOKE_API_KEY)
        self._list_api_keys = client.register_script(_LIST_API_KEYS)
        self._create_identity = client.register_script(_CREATE_IDENTITY)
        self._add_root_fingerprints = client.register_script(_ADD_ROOT_FINGERPRINTS)
        # The hot path (object get, create, update, audit events) shares round trips between
        # concurrent calls. Not with wait_replicas: WAIT covers only its own connection's
        # writes, so those writes and their WAIT keep to one connection, unpipelined.
        self._auto = AutoPipeline(client) if not wait_replicas else None

    @classmethod
    def from_url(cls, url: str, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> RedisStore:
        """A store on one server, a Cluster or a Sentinel-monitored master (redis_urls.py),
        each operation bounded by `timeout` seconds."""
        plain_url, replicas = wait_replicas(url)
        return cls(redis_client(plain_url, timeout), wait_replicas=replicas, timeout=timeout)

    async def _write(
        self,
        script: AsyncScript,
        keys: Sequence[Any],
        args: Sequence[Any],
        changed: Callable[[Any], bool] = bool,
    ) -> Any:
        """Run a write script, and acknowledge what it changed only once enough replicas hold
        it (see redis_urls.py).

        WAIT counts the writes of its own connection, so with wait_replicas the script and its
        WAIT go down one connection in one pipeline (and one round trip). `changed(reply)` says
        whether the script wrote anything; a refusal needs no replica.
        """
        if not self._wait_replicas:
            return await self._script(script, keys, args)
        assert isinstance(self._redis, Redis), "redis_urls refuses wait_replicas on a Cluster"
        pipe = self._redis.pipeline(transaction=False)
        # Queued, not sent; the pipeline first loads the script if the server lacks it.
        await script(keys=keys, args=args, client=pipe)
        pipe.wait(self._wait_replicas, self._replica_timeout_ms)
        reply, confirmed = await pipe.execute()
        if changed(reply):
            await self._check_replicas(confirmed)
        return reply

    async def _check_replicas(self, confirmed: int) -> None:
        """StoreUnavailable, saying why, when fewer replicas confirmed a write than required."""
        if confirmed >= self._wait_replicas:
            return
        wanted = self._wait_replicas
        info = await self._redis.info("replication")
        connected = int(info.get("connected_slaves", 0)) if isinstance(info, dict) else -1
        if 0 <= connected < wanted:
            cause = "NO_REPLICA"
            why = f"only {connected} replica(s) connected, wait_replicas={wanted}"
        else:
            cause = "REPLICA_TIMEOUT"
            why = (
                f"{confirmed} of {wanted} replica(s) confirmed within {self._replica_timeout_ms} ms"
            )
        log.warning("a write was not confirmed: %s; its outcome is unknown", why)
        raise StoreUnavailable(f"write not confirmed ({why}); outcome unknown", cause)

    @_available
    async def get_kek(self, environment_id: str, kek_id: str) -> KekRecord | None:
        found = await self._keks(environment_id, [kek_id])
        return found[0] if found else None

    @_available
    async def add_kek_version(self, environment_id: str, kek_id: str, kek: KekVersion) -> bool:
        k = _KekKeys(environment_id, kek_id)
        return bool(
            await self._write(
                self._add_kek,
                keys=[k.versions, k.state, k.index],
                args=[kek.version, codec.encode_kek(kek), kek_id, kek.item_key, kek.item_value],
            )
        )

    @_available
    async def index_unlisted_keks(self, *, force: bool = False) -> int:
        """Enter KEKs an older vaultd stored (a version list, no state) into list_keks.

        Once per database (a marker records it), unless `force`: one SCAN over every node,
        so `kek rotate --all`, `kek rewrap --all` and `root retire` see every KEK. Returns how
        many KEKs it entered (again, for those entered already: the script is idempotent).
        """
        if not force and await self._redis.hexists(_MIGRATIONS, _KEK_INDEX_MIGRATION):
            return 0
        entered = 0
        async for name in self._redis.scan_iter(match="vaultd:{*}:kek:*", count=1000, _type="list"):
            found = KEK_LIST.fullmatch(_text(name))
            first = await self._redis.lindex(name, 0) if found else None
            if found is None or first is None:
                continue
            environment_id, kek_id = found.groups()
            kek = codec.decode_kek(_bytes(first))
            k = _KekKeys(environment_id, kek_id)
            await self._write(
                self._index_kek,
                keys=[k.state, k.index],
                args=[kek_id, kek.item_key, kek.item_value],
            )
            entered += 1
        await self._redis.hset(
            _MIGRATIONS, _KEK_INDEX_MIGRATION, codec.to_micros(datetime.now(UTC))
        )
        return entered

    @_available
    async def list_keks(self, environment_id: str) -> list[KekRecord]:
        kek_ids = await self._redis.smembers(key(environment_id, Kind.KEKS))
        # Several scripts when there are many KEKs, so none holds Redis for long.
        ids = sorted(_text(i) for i in kek_ids)
        records: list[KekRecord] = []
        for start in range(0, len(ids), KEKS_PER_READ):
            records += await self._keks(environment_id, ids[start : start + KEKS_PER_READ])
        return sorted(records, key=lambda r: (r.item_key, r.item_value, r.kek_id))

    @_available
    async def rewrap_kek_version(
        self, environment_id: str, kek_id: str, expected: KekVersion, rewrapped: KekVersion
    ) -> bool:
        versions = _KekKeys(environment_id, kek_id).versions
        if expected.version < 1:
            return False  # no such version (and LINDEX would read -1 as the newest)
        new = replace(
            expected,
            provider_uri=rewrapped.provider_uri,
            wrapped_key=rewrapped.wrapped_key,
            secondary=rewrapped.secondary,
        )
        return bool(
            await self._write(
                self._rewrap_kek,
                keys=[versions],
                args=[expected.version, codec.encode_kek(expected), codec.encode_kek(new)],
            )
        )

    @_available
    async def set_min_decryption_version(
        self, environment_id: str, kek_id: str, version: int
    ) -> bool:
        k = _KekKeys(environment_id, kek_id)
        return bool(
            await self._write(self._set_min_version, keys=[k.versions, k.state], args=[version])
        )

    @_available
    async def shred_kek(
        self, environment_id: str, kek_id: str, item_key: str, item_value: str, at: datetime
    ) -> bool:
        k = _KekKeys(environment_id, kek_id)
        return bool(
            await self._write(
                self._shred_kek,
                keys=[k.versions, k.state, k.index],
                args=[kek_id, item_key, item_value, codec.to_micros(at)],
            )
        )

    @_available
    async def create_object(self, obj: StoredObject, keks: Sequence[KekStamp] = ()) -> None:
        v = obj.version
        kek_keys, kek_args = _kek_checks(obj.environment_id, keks)
        reply = await self._write(
            self._create,
            keys=_ObjectKeys(obj.environment_id, obj.id).all() + kek_keys,
            args=[
                obj.id,
                obj.name,
                codec.encode_context(obj.key_context),
                codec.to_micros(obj.created_at),
                v.version_id,
                codec.encode_version(v),
                codec.encode_version_info(v.info()),
                codec.to_micros(v.created_at),
                *kek_args,
            ],
            changed=lambda reply: reply == b"ok",
        )
        _raise_if_kek_changed(reply, keks)
        if reply == b"name_taken":
            raise NameTaken("name taken")
        if reply == b"id_taken":
            raise StoreError("object id already in use")

    @_available
    async def get_object(self, environment_id: str, object_id: str) -> StoredObject | None:
        return await self._get_object(environment_id, object_id, "")

    @_available
    async def get_object_by_name(self, environment_id: str, name: str) -> StoredObject | None:
        # Two round trips: a script may only touch keys named in its call, and the object's key
        # is known only once the name is resolved. An object deleted in between reads as None,
        # as it would a moment later.
        object_id = await self._redis.hget(key(environment_id, Kind.NAMES), name)
        if object_id is None:
            return None
        return await self._get_object(environment_id, _text(object_id), "")

    @_available
    async def get_object_version(
        self, environment_id: str, object_id: str, version_id: str
    ) -> StoredObject | None:
        return await self._get_object(environment_id, object_id, version_id)

    @_available
    async def list_versions(
        self, environment_id: str, object_id: str
    ) -> tuple[Sequence[VersionInfo], str] | None:
        o = _ObjectKeys(environment_id, object_id)
        reply = await self._list_versions(keys=[o.object, o.history])
        if reply is None:
            return None
        current, *infos = reply
        return [codec.decode_version_info(info) for info in infos], _text(current)

    @_available
    async def update_object(
        self,
        environment_id: str,
        object_id: str,
        version: StoredVersion,
        expected_version_id: str | None,
        keks: Sequence[KekStamp] = (),
    ) -> None:
        o = _ObjectKeys(environment_id, object_id)
        kek_keys, kek_args = _kek_checks(environment_id, keks)
        reply = await self._write(
            self._update,
            keys=[o.object, o.versions, o.history, o.digests, *kek_keys],
            args=[
                object_id,
                version.version_id,
                codec.encode_version(version),
                codec.encode_version_info(version.info()),
                codec.to_micros(version.created_at),
                expected_version_id or "",
                *kek_args,
            ],
            changed=_ok,
        )
        if reply[0] == b"kek_changed":
            raise KekChanged(keks[int(reply[1]) - 1].kek_id)
        _raise_for(reply)

    @_available
    async def delete_object(
        self, environment_id: str, object_id: str, expected_version_id: str | None
    ) -> None:
        reply = await self._write(
            self._delete,
            keys=_ObjectKeys(environment_id, object_id).all(),
            args=[object_id, expected_version_id or ""],
            changed=_ok,
        )
        _raise_for(reply)

    @_available
    async def count_objects(self, environment_id: str) -> int:
        return int(await self._redis.zcard(key(environment_id, Kind.OBJECTS)))

    @_available
    async def scan_object_versions(
        self, environment_id: str, after: str, limit: int
    ) -> list[ObjectVersions]:
        if after:
            check(OBJECT_ID, after, "object id")
        if limit < 1:
            return []
        # Two steps: a script may only touch keys named in its call, and the versions' keys are
        # known only once the ids are read. An object deleted in between is left out.
        objects = key(environment_id, Kind.OBJECTS)
        start = f"({after}" if after else "-"
        ids = [_text(i) for i in await self._redis.zrangebylex(objects, start, "+", 0, limit)]
        if not ids:
            return []
        object_keys = [_ObjectKeys(environment_id, i) for i in ids]
        reply = await self._get_versions(
            keys=[name for o in object_keys for name in (o.history, o.versions)]
        )
        found: list[ObjectVersions] = []
        for object_id, (infos, records) in zip(ids, reply, strict=True):
            by_id = {v.version_id: v for v in map(codec.decode_version, records)}
            order = [codec.decode_version_info(info).version_id for info in infos]
            if order:
                found.append(ObjectVersions(object_id, tuple(by_id[vid] for vid in order)))
        return found

    @_available
    async def replace_encrypted_keys(
        self,
        environment_id: str,
        object_id: str,
        expected: StoredVersion,
        encrypted_keys: bytes,
        key_ids: tuple[str, ...],
        keks: Sequence[KekStamp] = (),
    ) -> bool:
        kek_keys, kek_args = _kek_checks(environment_id, keks)
        swapped = await self._write(
            self._replace_keys,
            keys=[_ObjectKeys(environment_id, object_id).versions, *kek_keys],
            args=[
                expected.version_id,
                expected.encrypted_keys,
                codec.encode_version_keys(key_ids, encrypted_keys),
                codec.FORMAT,
                codec.VERSION_FIELDS_BEFORE_KEYS,
                *kek_args,
            ],
            changed=lambda reply: reply == 1,
        )
        _raise_if_kek_changed(swapped, keks)
        return bool(swapped)

    @_available
    async def scan_objects(
        self,
        environment_id: str,
        direction: Direction,
        cursor: str | None,
        limit: int,
        scan_filter: ScanFilter,
    ) -> list[ObjectEntry]:
        after = scan_filter.updated_after
        fixed = [
            scan_filter.name_prefix,
            "" if after is None else codec.to_micros(after),
        ]
        keys = [key(environment_id, Kind.OBJECTS), key(environment_id, Kind.DIGESTS)]
        entries: list[ObjectEntry] = []
        position = cursor or ""
        while len(entries) < limit:
            wanted = limit - len(entries)
            reply = await self._scan(
                keys=keys, args=[direction.value, position, wanted, self._scan_budget, *fixed]
            )
            position = _text(reply[0])
            entries += (_entry(i, d) for i, d in zip(reply[1::2], reply[2::2], strict=True))
            if not position:
                break
        return entries

    @_available
    async def add_api_key(self, record: ApiKeyRecord, *, only_if_none: bool = False) -> bool:
        _check_api_key(record)
        reply = await self._write(
            self._add_api_key,
            keys=_API_KEY_KEYS[:2],
            args=[record.id, record.secret_hash, codec.encode_api_key(record), int(only_if_none)],
            changed=lambda reply: reply == b"ok",
        )
        if reply == b"taken":
            raise StoreError("api key id or secret already in use")
        return bool(reply == b"ok")

    @_available
    async def get_api_key(self, key_id: str) -> ApiKeyRecord | None:
        check(API_KEY_ID, key_id, "api key id")
        return _api_key(await self._get_api_key(keys=_API_KEY_KEYS, args=["id", key_id]))

    @_available
    async def find_api_key(self, secret_hash: str) -> ApiKeyRecord | None:
        check(SECRET_HASH, secret_hash, "secret hash")
        return _api_key(await self._get_api_key(keys=_API_KEY_KEYS, args=["hash", secret_hash]))

    @_available
    async def list_api_keys(self) -> list[ApiKeyRecord]:
        records, revocations = await self._list_api_keys(keys=[_API_KEY_KEYS[0], _API_KEY_KEYS[2]])
        revoked = dict(zip(revocations[::2], revocations[1::2], strict=True))
        keys = [codec.decode_api_key(_bytes(r), None) for r in records]
        return sorted((_revoked(k, revoked.get(k.id.encode())) for k in keys), key=lambda k: k.id)

    @_available
    async def revoke_api_key(self, key_id: str, revoked_at: datetime) -> ApiKeyRecord | None:
        check(API_KEY_ID, key_id, "api key id")
        reply = await self._write(
            self._revoke_api_key,
            keys=[_API_KEY_KEYS[0], _API_KEY_KEYS[2]],
            args=[key_id, codec.to_micros(revoked_at)],
            changed=lambda reply: reply is not None,
        )
        return _api_key(reply)

    async def append_audit_event(self, event: AuditEvent, keep_after: datetime) -> None:
        await self.append_audit_events((event,), keep_after)

    @_available
    async def append_audit_events(self, events: Sequence[AuditEvent], keep_after: datetime) -> None:
        if not events:
            return
        # MINID trims by stream id, i.e. by Redis's clock at append. Exact, not `~`: approximate
        # trimming drops only whole stream nodes (100 entries), so a quiet environment would keep
        # expired events indefinitely; exact trimming costs a little more per expired event.
        min_id = codec.to_micros(keep_after) // 1000
        # One round trip for the batch (shared with other calls' commands when auto-pipelined):
        # no MULTI, as each XADD is atomic on its own and a batch's streams may sit on several
        # Cluster shards.
        commands = [
            (
                "XADD",
                _audit_stream(event.environment_id),
                "MINID",
                min_id,
                "*",
                b"e",
                codec.encode_audit_event(event),
            )
            for event in events
        ]
        if self._auto is not None:
            await self._auto.execute_many(commands)
            return
        pipe = self._redis.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        if self._wait_replicas:  # on the connection that wrote them (see _write)
            pipe.wait(self._wait_replicas, self._replica_timeout_ms)
            await self._check_replicas((await pipe.execute())[-1])
        else:
            await pipe.execute()

    async def _script(self, script: AsyncScript, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """One script call, auto-pipelined when that is on."""
        if self._auto is not None:
            return await self._auto.script(script, keys, args)
        return await script(keys=list(keys), args=list(args))

    @_available
    async def read_audit_events(self, environment_id: str, query: AuditQuery) -> AuditPage:
        stream = _audit_stream(environment_id)
        if query.after and not _is_stream_id(query.after):
            raise BadCursor("not a cursor from a previous read")
        start = "-"
        if query.after == _LAST_STREAM_ID:
            return AuditPage([], query.after)  # nothing can come after it; Redis would refuse
        if query.after:
            start = "(" + query.after
        elif query.since is not None:
            since_ms = codec.to_micros(query.since) // 1000 - AUDIT_CLOCK_MARGIN_MS
            start = str(max(since_ms, 0))
        events: list[AuditEvent] = []
        cursor = query.after
        # The filters run here, not in Redis: a page may examine many entries to fill `limit`.
        while len(events) < query.limit:
            reply = await self._redis.xrange(stream, min=start, max="+", count=AUDIT_READ_BATCH)
            batch = [(_text(sid), _bytes(f[b"e"])) for sid, f in reply or () if sid and f]
            for stream_id, record in batch:
                cursor = stream_id
                event = codec.decode_audit_event(record)
                if _passes(event, query):
                    events.append(event)
                    if len(events) == query.limit:
                        break
            if len(batch) < AUDIT_READ_BATCH:
                break
            start = "(" + cursor
        return AuditPage(events, cursor)

    @_available
    async def save_rewrap_job(self, job: RewrapJob, now: datetime) -> bool:
        check_rewrap_job(job)
        lease = 0 if job.lease_until is None else codec.to_micros(job.lease_until)
        saved = await self._write(
            self._save_rewrap_job,
            keys=_REWRAP_KEYS,
            args=[
                job.id,
                codec.encode_rewrap_job(job),
                f"{lease} {job.owner}",
                codec.to_micros(now),
            ],
        )
        return bool(saved)

    @_available
    async def get_rewrap_job(self, job_id: str) -> RewrapJob | None:
        check(REWRAP_JOB_ID, job_id, "rewrap job id")
        record = await self._redis.hget(_REWRAP_KEYS[0], job_id)
        return None if record is None else codec.decode_rewrap_job(_bytes(record))

    @_available
    async def list_rewrap_jobs(self) -> list[RewrapJob]:
        records = await self._redis.hvals(_REWRAP_KEYS[0])
        jobs = [codec.decode_rewrap_job(_bytes(r)) for r in records]
        return sorted(jobs, key=lambda j: (j.created_at, j.id))

    @_available
    async def ping(self) -> None:
        await self._redis.ping()

    @_available
    async def durability(self) -> Durability:
        return summarize(await read_persistence(self._redis), self._wait_replicas)

    @_available
    async def get_identity(self) -> StoreIdentity | None:
        fields = {_text(f): _text(v) for f, v in (await self._redis.hgetall(IDENTITY_KEY)).items()}
        if "id" not in fields:
            return None
        return StoreIdentity(
            store_id=fields["id"],
            created_at=codec.from_micros(int(fields["created"])),
            root_fingerprints=frozenset(
                name.removeprefix("root:") for name in fields if name.startswith("root:")
            ),
        )

    @_available
    async def create_identity(self, identity: StoreIdentity) -> bool:
        created = await self._write(
            self._create_identity,
            keys=[IDENTITY_KEY],
            args=[
                identity.store_id,
                codec.to_micros(identity.created_at),
                *sorted(identity.root_fingerprints),
            ],
        )
        return bool(created)

    @_available
    async def add_root_fingerprints(self, fingerprints: frozenset[str]) -> None:
        if not await self._write(
            self._add_root_fingerprints, keys=[IDENTITY_KEY], args=sorted(fingerprints)
        ):
            raise StoreError("the store has no identity to add root key fingerprints to")

    @_available
    async def has_data(self) -> bool:
        async for _ in self._redis.scan_iter(match=f"{PREFIX}:*", count=1000):
            return True
        return False

    async def close(self) -> None:
        await self._redis.aclose()

    async def _keks(self, environment_id: str, kek_ids: Sequence[str]) -> list[KekRecord]:
        """The KEKs that exist among `kek_ids`, from one snapshot, in the order given."""
        kek_keys = [_KekKeys(environment_id, kek_id) for kek_id in kek_ids]
        keys = [n for k in kek_keys for n in (k.versions, k.state)]
        if self._wait_replicas:
            # Durable reads (Store.get_kek): a KEK version written but never confirmed by the
            # replicas (its add timed out waiting for them) must not be put to use.
            fence = key(environment_id, Kind.FENCE)
            reply = await self._write(
                self._get_keks, keys=[*keys, fence], args=["fence"], changed=lambda _: True
            )
        else:
            reply = await self._get_keks(keys=keys, args=[""])
        records = (
            _kek_record(kek_id, records, fields)
            for kek_id, (records, fields) in zip(kek_ids, reply, strict=True)
        )
        return [r for r in records if r is not None]

    async def _get_object(
        self, environment_id: str, object_id: str, version_id: str
    ) -> StoredObject | None:
        # The three keys the read needs, not all six of _ObjectKeys: each name is checked and built.
        keys = [
            key(environment_id, Kind.OBJECT, object_id),
            key(environment_id, Kind.VERSIONS, object_id),
            key(environment_id, Kind.HISTORY, object_id),
        ]
        reply = await self._script(self._get, keys=keys, args=[version_id])
        if reply is None:
            return None
        name, context, created, record, newest = reply
        return StoredObject(
            environment_id=environment_id,
            id=object_id,
            name=_text(name),
            key_context=codec.decode_context(context),
            created_at=codec.from_micros(int(created)),
            version=codec.decode_version(record),
            newest_version_id=codec.decode_version_info(newest).version_id if newest else "",
        )


def _kek_record(kek_id: str, records: list[bytes], fields: list[bytes]) -> KekRecord | None:
    """A KEK from its version records and state hash fields; None if it has neither.

    A KEK an older release made has versions but no state yet: its item is its versions'.
    """
    versions = tuple(codec.decode_kek(_bytes(r)) for r in records)
    state = {_text(f): _text(v) for f, v in zip(fields[::2], fields[1::2], strict=True)}
    if not versions and not state:
        return None
    shredded = state.get("shredded")
    return KekRecord(
        kek_id=kek_id,
        item_key=state["item_key"] if "item_key" in state else versions[0].item_key,
        item_value=state["item_value"] if "item_value" in state else versions[0].item_value,
        versions=versions,
        min_decryption_version=int(state.get("min", 1)),
        shredded_at=None if shredded is None else codec.from_micros(int(shredded)),
    )


def _check_api_key(record: ApiKeyRecord) -> None:
    check(API_KEY_ID, record.id, "api key id")
    check(ENVIRONMENT_ID, record.environment_id, "environment id")
    check(SECRET_HASH, record.secret_hash, "secret hash")


def _api_key(reply: list[bytes] | None) -> ApiKeyRecord | None:
    """The record a get or revoke script returned, with its revocation time, or None."""
    if reply is None:
        return None
    record, revoked_at = reply
    return _revoked(codec.decode_api_key(_bytes(record), None), revoked_at or None)


def _revoked(record: ApiKeyRecord, revoked_at: bytes | None) -> ApiKeyRecord:
    if revoked_at is None:
        return record
    return replace(record, revoked_at=codec.from_micros(int(revoked_at)))


def _audit_stream(environment_id: str) -> str:
    if environment_id:
        check(ENVIRONMENT_ID, environment_id, "environment id")
    return audit_key(environment_id)


def _passes(event: AuditEvent, query: AuditQuery) -> bool:
    return (not query.type or event.type == query.type) and (
        query.since is None or event.time >= query.since
    )


def _kek_checks(environment_id: str, keks: Sequence[KekStamp]) -> tuple[list[str], list[str | int]]:
    """The KEYS and ARGV by which a write script checks KEK stamps (_KEKS_CHANGED)."""
    keys = [key(environment_id, Kind.KEK, k.kek_id) for k in keks]
    args: list[str | int] = [part for k in keks for part in (k.version, k.stamp)]
    return keys, args


def _raise_if_kek_changed(reply: Any, keks: Sequence[KekStamp]) -> None:
    """KekChanged when a create or replace script said "kek_changed:<n>"."""
    if isinstance(reply, bytes) and reply.startswith(b"kek_changed:"):
        raise KekChanged(keks[int(reply.partition(b":")[2]) - 1].kek_id)


def _ok(reply: list[bytes]) -> bool:
    """Whether an update or delete script made its change."""
    return reply[0] == b"ok"


def _raise_for(reply: list[bytes]) -> None:
    """Raise what an update or delete script's refusal means; return on {"ok"}."""
    status = reply[0]
    if status == b"missing":
        raise ObjectMissing("no such object")
    if status == b"mismatch":
        raise VersionMismatch(_text(reply[1]))
    if status == b"version_taken":
        raise StoreError("version id already in use")


def _entry(object_id: bytes, digest: bytes) -> ObjectEntry:
    updated, _, name = digest.partition(b" ")
    return ObjectEntry(_text(object_id), _text(name), codec.from_micros(int(updated)))


def _text(value: bytes | str) -> str:
    return value if isinstance(value, str) else value.decode()


def _bytes(value: bytes | str) -> bytes:
    # Replies are bytes (decode_responses is refused); redis-py's types allow str as well.
    return value if isinstance(value, bytes) else value.encode()
