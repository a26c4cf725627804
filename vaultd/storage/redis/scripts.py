"""Every Lua script of the Redis store, each with the KEYS and ARGV it takes.

Scripts declare every key they touch in KEYS (the Redis Cluster rule: a script's keys share one
slot, which the environment's hash tag gives them) and never build key names, so the layout
lives in storage/keys.py alone. Each does all its checks before its first write: Redis stops a
script whose first write meets a full memory with nothing written, and a check that fails
returns before anything changed. Times are microseconds since the epoch (codec.to_micros).
The scripts of the key context index are in context_scripts.py.
"""

from vaultd.storage.redis.context_scripts import CONTEXT_INDEX

KEKS_CHANGED = """
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

CREATE = (
    KEKS_CHANGED
    + CONTEXT_INDEX
    + """
-- Create an object with its first version, unless its name or id is in use or a KEK changed.
-- KEYS[1] object hash  KEYS[2] versions hash  KEYS[3] history list
-- KEYS[4] names hash   KEYS[5] objects zset   KEYS[6] digests hash
-- KEYS[7..6+n] the zsets of its n key context items (keys.context_item_key)
-- KEYS[7+n..] the version lists of the KEKs that wrapped its DEK
-- ARGV[1] object id  ARGV[2] name  ARGV[3] key context (JSON)  ARGV[4] created_at (µs)
-- ARGV[5] version id  ARGV[6] version record  ARGV[7] version info record
-- ARGV[8] updated_at (µs)  ARGV[9] n  ARGV[10..] (version, stamp) per KEK of KEYS[7+n..]
-- Returns "ok", "name_taken", "id_taken" or "kek_changed:<n>" (the n-th KEK named).
local items = tonumber(ARGV[9])
local changed = keks_changed(7 + items, 10)
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
index_context(7, 6 + items, ARGV[1])
return "ok"
"""
)

GET = """
-- An object with one of its versions, in one round trip.
-- KEYS[1] object hash  KEYS[2] versions hash  KEYS[3] history list
-- ARGV[1] version id, or "" for the current version
-- Returns {name, key context, created_at, version record, newest version's info record, place},
-- or nil if either is missing or the object is deleted. place: for the current version, how
-- many versions there are (the newest's number); for another, every info record, oldest
-- first, to find it among.
local meta = redis.call("HMGET", KEYS[1], "name", "ctx", "created", "current", "deleted")
if not meta[1] or meta[5] then return nil end
local version_id = ARGV[1]
if version_id == "" then version_id = meta[4] end
local record = redis.call("HGET", KEYS[2], version_id)
if not record then return nil end
local place
if ARGV[1] == "" then place = redis.call("LLEN", KEYS[3]) else
  place = redis.call("LRANGE", KEYS[3], 0, -1) end
return {meta[1], meta[2], meta[3], record, redis.call("LINDEX", KEYS[3], -1) or "", place}
"""

LIST_VERSIONS = """
-- An object's current version id and every version's info, oldest first.
-- KEYS[1] object hash  KEYS[2] history list
-- Returns {current version id, info record, ...}, or nil if no such object (or deleted).
local meta = redis.call("HMGET", KEYS[1], "current", "deleted")
local current = meta[1]
if not current or meta[2] then return nil end
local reply = redis.call("LRANGE", KEYS[2], 0, -1)
table.insert(reply, 1, current)
return reply
"""

UPDATE = (
    KEKS_CHANGED
    + """
-- Make a new version current, if the object exists, the check (if any) holds and no KEK changed.
-- KEYS[1] object hash  KEYS[2] versions hash  KEYS[3] history list  KEYS[4] digests hash
-- KEYS[5..] the version lists of the KEKs that wrapped the version's DEK
-- ARGV[1] object id  ARGV[2] version id  ARGV[3] version record  ARGV[4] version info record
-- ARGV[5] updated_at (µs)  ARGV[6] expected current version id ("": last write wins)
-- ARGV[7..] (version, stamp) per KEK of KEYS[5..]
-- Returns {"ok", the new version's number}, {"missing"}, {"mismatch", current version id},
-- {"version_taken"} or {"kek_changed", n} (the n-th KEK named).
local changed = keks_changed(5, 7)
if changed > 0 then return {"kek_changed", changed} end
local meta = redis.call("HMGET", KEYS[1], "current", "name", "deleted")
if not meta[1] or meta[3] then return {"missing"} end
if ARGV[6] ~= "" and ARGV[6] ~= meta[1] then return {"mismatch", meta[1]} end
if redis.call("HEXISTS", KEYS[2], ARGV[2]) == 1 then return {"version_taken"} end
redis.call("HSET", KEYS[2], ARGV[2], ARGV[3])
local number = redis.call("RPUSH", KEYS[3], ARGV[4])
redis.call("HSET", KEYS[1], "current", ARGV[2])
redis.call("HSET", KEYS[4], ARGV[1], ARGV[5] .. " " .. meta[2])
return {"ok", number}
"""
)

DELETE = """
-- Mark a live object deleted, if the check (if any) holds: every read, list and count leaves
-- it out at once, while its versions, its name and its place in the objects zset (which a
-- rewrap walks: an undeleted object must still open) stay until PURGE (purge_scripts.py).
-- KEYS[1] object hash  KEYS[2] deleted zset
-- ARGV[1] object id  ARGV[2] expected current version id ("": delete whatever is current)
-- ARGV[3] deleted_at (µs)
-- Returns {"ok"}, {"missing"} (no such object, or deleted already) or
-- {"mismatch", current version id}.
local meta = redis.call("HMGET", KEYS[1], "current", "deleted")
if not meta[1] or meta[2] then return {"missing"} end
if ARGV[2] ~= "" and ARGV[2] ~= meta[1] then return {"mismatch", meta[1]} end
redis.call("HSET", KEYS[1], "deleted", ARGV[3])
redis.call("ZADD", KEYS[2], ARGV[3], ARGV[1])
return {"ok"}
"""

SCAN = """
-- One bounded step of a scan: examine at most ARGV[4] ids past the cursor, keep those that pass.
-- KEYS[1] objects zset  KEYS[2] digests hash  KEYS[3] deleted zset (its ids are skipped)
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
      and (after == nil or updated > after)
      and not redis.call("ZSCORE", KEYS[3], id) then
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

GET_KEKS = """
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

ADD_KEK = """
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

INDEX_KEK = """
-- Enter a KEK into its environment's list, keeping any item its state already names.
-- KEYS[1] KEK state hash  KEYS[2] KEK index set
-- ARGV[1] KEK id  ARGV[2] item key  ARGV[3] item value
redis.call("HSETNX", KEYS[1], "item_key", ARGV[2])
redis.call("HSETNX", KEYS[1], "item_value", ARGV[3])
redis.call("SADD", KEYS[2], ARGV[1])
return 1
"""

REWRAP_KEK = """
-- Replace one KEK version's record if it is still the one expected, byte for byte.
-- KEYS[1] KEK list
-- ARGV[1] version number (>= 1)  ARGV[2] expected record  ARGV[3] new record
-- Returns 1 if replaced, 0 if the version is missing (or shredded) or differs.
if redis.call("LINDEX", KEYS[1], tonumber(ARGV[1]) - 1) ~= ARGV[2] then return 0 end
redis.call("LSET", KEYS[1], tonumber(ARGV[1]) - 1, ARGV[3])
return 1
"""

SET_MIN_VERSION = """
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

SHRED_KEK = """
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

GET_VERSIONS = """
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

REPLACE_KEYS = (
    KEKS_CHANGED
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

SAVE_REWRAP_JOB = """
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

ADD_API_KEY = """
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

GET_API_KEY = """
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

REVOKE_API_KEY = """
-- Revoke an API key. HSETNX: a key revoked twice keeps its first revocation time.
-- KEYS[1] apikeys hash  KEYS[2] apikeys-revoked hash
-- ARGV[1] key id  ARGV[2] revoked_at (µs)
-- Returns {record, revoked_at}, or nil if there is no such key.
local record = redis.call("HGET", KEYS[1], ARGV[1])
if not record then return nil end
redis.call("HSETNX", KEYS[2], ARGV[1], ARGV[2])
return {record, redis.call("HGET", KEYS[2], ARGV[1])}
"""

LIST_API_KEYS = """
-- Every API key record and every revocation, from one snapshot.
-- KEYS[1] apikeys hash  KEYS[2] apikeys-revoked hash
-- Returns {{record, ...}, {key id, revoked_at, ...}}.
return {redis.call("HVALS", KEYS[1]), redis.call("HGETALL", KEYS[2])}
"""

CREATE_IDENTITY = """
-- Write the store's identity, unless it has one.
-- KEYS[1] identity hash
-- ARGV[1] store id  ARGV[2] created_at (µs)  ARGV[3..] root key fingerprints
-- Returns 1 if written, 0 if the store already had an identity.
if redis.call("EXISTS", KEYS[1]) == 1 then return 0 end
redis.call("HSET", KEYS[1], "id", ARGV[1], "created", ARGV[2])
for i = 3, #ARGV do redis.call("HSET", KEYS[1], "root:" .. ARGV[i], "1") end
return 1
"""

ADD_ROOT_FINGERPRINTS = """
-- Add root key fingerprints to an existing identity (never create one without its id).
-- KEYS[1] identity hash  ARGV[1..] fingerprints
-- Returns 1 if the identity exists, else 0.
if redis.call("EXISTS", KEYS[1]) == 0 then return 0 end
for i = 1, #ARGV do redis.call("HSET", KEYS[1], "root:" .. ARGV[i], "1") end
return 1
"""


# BYOK key records (redis/byok.py): a hash of records by id, and a hash from each match to its id.
ADD_BYOK_KEY = """
-- Add a BYOK key record, unless another record already holds its match.
-- KEYS[1] BYOK records hash (id -> record)  KEYS[2] BYOK matches hash (match -> id)
-- ARGV[1] record id  ARGV[2] its match (codec.byok_match)  ARGV[3] record (codec.encode_byok_key)
-- Returns nil if added, else the record holding the match.
local holder = redis.call('HGET', KEYS[2], ARGV[2])
if holder then return redis.call('HGET', KEYS[1], holder) end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[1])
return false
"""

REPLACE_BYOK_KEY = """
-- Replace a BYOK key record that exists (its match is unchanged).
-- KEYS[1] BYOK records hash  KEYS[2] BYOK matches hash (unused, for the common key list)
-- ARGV[1] record id  ARGV[2] new record
-- Returns 1 if replaced, 0 if there is no such record.
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""

DELETE_BYOK_KEY = """
-- Remove a BYOK key record and free its match.
-- KEYS[1] BYOK records hash  KEYS[2] BYOK matches hash
-- ARGV[1] record id  ARGV[2] its match
-- Returns the removed record, or nil if there was none.
local record = redis.call('HGET', KEYS[1], ARGV[1])
if not record then return false end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[2])
return record
"""

ADMIT_NEW_KEK = """
-- Count one more new KEK for an API key, unless the limit is reached (redis/kek_counts.py).
-- KEYS[1] the environment's KEK count hash (API key id -> count)
-- ARGV[1] API key id  ARGV[2] the limit
-- Returns 1 when counted, 0 when the limit is reached.
local n = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if n >= tonumber(ARGV[2]) then return 0 end
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
return 1
"""
