"""The Lua scripts of the key context index (keys.context_item_key), each with its KEYS and
ARGV: the part every index write shares, the filtered scan's check and the backfill's steps.

CREATE (scripts.py) and PURGE (purge_scripts.py) keep the index inside their own atomic step
through CONTEXT_INDEX, so an object is never listed under an item without existing, bar the window a
backfill or a store an older vaultd wrote leaves, which SCAN_CONTEXT's re-check closes.
"""

CONTEXT_INDEX = """
-- Shared by the scripts that enter an object into, or remove it from, the index of each of its
-- key context items (keys.context_item_key): the one place a hard delete unindexes.
-- KEYS[first..last] the item zsets  ARGV: the object id is passed in
local function index_context(first, last, object_id)
  for i = first, last do redis.call("ZADD", KEYS[i], 0, object_id) end
end
local function unindex_context(first, last, object_id)
  for i = first, last do redis.call("ZREM", KEYS[i], object_id) end
end
"""

SCAN_CONTEXT = """
-- Of the candidates an index gave (in its order), those whose object passes the filters: the
-- object itself is read, so an index entry that outlived its object is never believed, and a
-- deleted object (kept, with its entries, until it is purged) is left out.
-- KEYS[1] digests hash  KEYS[2..] the candidates' object hashes
-- ARGV[1] name prefix ("" for any)  ARGV[2] updated after, µs ("" for any)
-- ARGV[3] the context items wanted (JSON object)  ARGV[4..] the candidates' ids, as KEYS[2..]
-- Returns {id, digest, id, digest, ...}.
local prefix, after = ARGV[1], tonumber(ARGV[2])
local wanted = cjson.decode(ARGV[3])
local reply = {}
for i = 2, #KEYS do
  local id = ARGV[i + 2]
  local meta = redis.call("HMGET", KEYS[i], "ctx", "deleted")
  local context = (not meta[2]) and meta[1]  -- a deleted object is left out, as by SCAN
  local digest = context and redis.call("HGET", KEYS[1], id)
  local pass = digest ~= nil and digest ~= false
  if pass then
    local stored = cjson.decode(context)
    for item_key, item_value in pairs(wanted) do
      if stored[item_key] ~= item_value then pass = false break end
    end
  end
  if pass then
    local space = string.find(digest, " ", 1, true)
    local updated = tonumber(string.sub(digest, 1, space - 1))
    if string.sub(digest, space + 1, space + #prefix) == prefix
        and (after == nil or updated > after) then
      table.insert(reply, id)
      table.insert(reply, digest)
    end
  end
end
return reply
"""

INDEX_OBJECT = (
    CONTEXT_INDEX
    + """
-- Enter an object an older vaultd wrote into the index of each of its context items, if it
-- still exists with the context read (a backfill racing a delete enters nothing).
-- KEYS[1] object hash  KEYS[2..] the zsets of its key context items
-- ARGV[1] object id  ARGV[2] its key context (JSON) as read
-- Returns 1 if entered, else 0.
if redis.call("HGET", KEYS[1], "ctx") ~= ARGV[2] then return 0 end
index_context(2, #KEYS, ARGV[1])
return 1
"""
)

GET_CONTEXTS = """
-- The key context (JSON) of each object named, false for one deleted.
-- KEYS[1..] object hashes
local reply = {}
for i = 1, #KEYS do table.insert(reply, redis.call("HGET", KEYS[i], "ctx")) end
return reply
"""
