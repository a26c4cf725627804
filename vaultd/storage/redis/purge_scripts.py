"""The Lua scripts of soft delete (redis/deleted.py) and of named leases (redis/jobs.py), each
with the KEYS and ARGV it takes; the rules of scripts.py hold here too (every key in KEYS,
every check before the first write, times in µs since the epoch)."""

from vaultd.storage.redis.context_scripts import CONTEXT_INDEX

UNDELETE = """
-- Clear an object's deleted mark, if it is deleted and was deleted at or after ARGV[2] (still
-- within its retention); its versions were kept, so it reads back exactly as it was.
-- KEYS[1] object hash  KEYS[2] deleted zset
-- ARGV[1] object id  ARGV[2] the earliest deleted_at still recoverable (µs)
-- Returns 1 if restored, else 0 (no such object, not deleted, or past its retention).
local deleted = redis.call("HGET", KEYS[1], "deleted")
if not deleted or tonumber(deleted) < tonumber(ARGV[2]) then return 0 end
redis.call("HDEL", KEYS[1], "deleted")
redis.call("ZREM", KEYS[2], ARGV[1])
return 1
"""

PURGE = (
    CONTEXT_INDEX
    + """
-- Destroy a deleted object for good: the one hard-delete path. Its hash, every version, its
-- history, its name (freed), its scan entries, its deleted mark and its entries in the key
-- context index go in one step.
-- KEYS[1] object hash  KEYS[2] versions hash  KEYS[3] history list
-- KEYS[4] names hash   KEYS[5] objects zset   KEYS[6] digests hash  KEYS[7] deleted zset
-- KEYS[8..] the zsets of its key context items, as read before the call
-- ARGV[1] object id  ARGV[2] purge only if deleted at or before this (µs); "": whenever
-- ARGV[3] its key context (JSON) as read before the call
-- Returns "purged", "missing" (no such object), "live" (not deleted), "not_due" (deleted
-- after ARGV[2]: undeleted and deleted again since the caller looked) or "context_changed"
-- (the context read is not the stored one: the index keys named may be the wrong ones).
local meta = redis.call("HMGET", KEYS[1], "name", "deleted", "ctx")
if not meta[1] then return "missing" end
if not meta[2] then return "live" end
if ARGV[2] ~= "" and tonumber(meta[2]) > tonumber(ARGV[2]) then return "not_due" end
if meta[3] ~= ARGV[3] then return "context_changed" end
-- The name is freed only if it still names this object (an index never points elsewhere).
if redis.call("HGET", KEYS[4], meta[1]) == ARGV[1] then redis.call("HDEL", KEYS[4], meta[1]) end
redis.call("ZREM", KEYS[5], ARGV[1])
redis.call("HDEL", KEYS[6], ARGV[1])
redis.call("ZREM", KEYS[7], ARGV[1])
unindex_context(8, #KEYS, ARGV[1])
redis.call("DEL", KEYS[1], KEYS[2], KEYS[3])
return "purged"
"""
)

COUNT_LIVE = """
-- How many live objects an environment has: every object less the deleted ones, from one
-- snapshot.
-- KEYS[1] objects zset  KEYS[2] deleted zset
return redis.call("ZCARD", KEYS[1]) - redis.call("ZCARD", KEYS[2])
"""

TAKE_LEASE = """
-- Take or extend a named lease, unless another owner holds it until now or later.
-- KEYS[1] leases hash
-- ARGV[1] lease name  ARGV[2] owner  ARGV[3] until (µs)  ARGV[4] now (µs)
-- Returns 1 if ARGV[2] now holds it until ARGV[3], else 0.
local held = redis.call("HGET", KEYS[1], ARGV[1])
if held then
  local space = string.find(held, " ", 1, true)
  local lease, owner = tonumber(string.sub(held, 1, space - 1)), string.sub(held, space + 1)
  if owner ~= ARGV[2] and lease >= tonumber(ARGV[4]) then return 0 end
end
redis.call("HSET", KEYS[1], ARGV[1], ARGV[3] .. " " .. ARGV[2])
return 1
"""

RELEASE_LEASE = """
-- Give up a named lease, if this owner holds it (another may have taken it over).
-- KEYS[1] leases hash
-- ARGV[1] lease name  ARGV[2] owner
-- Returns 1 if released, else 0.
local held = redis.call("HGET", KEYS[1], ARGV[1])
if not held then return 0 end
if string.sub(held, string.find(held, " ", 1, true) + 1) ~= ARGV[2] then return 0 end
redis.call("HDEL", KEYS[1], ARGV[1])
return 1
"""
