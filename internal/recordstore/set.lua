-- Writes many state items in one step, each only if its condition holds.
-- KEYS: the items' keys. ARGV: four per key, in order:
--   etag   the version the item must have ("" for none)
--   first  "1": first-write — without an etag the key must be absent
--   ttl    seconds to live; "0" leaves the expiry as it is, "-1" removes it
--   data   the value
-- The layout is components-contrib's state.redis one (a hash with data,
-- version and, for first-write items, first-write), so either component
-- reads what the other wrote. Returns the 1-based indexes of the items
-- refused (an etag that does not match, or a first-write item already
-- there); the others are written.
local ok = {}
for i, key in ipairs(KEYS) do
  local etag, first = ARGV[4 * i - 3], ARGV[4 * i - 2]
  local kind = redis.call("TYPE", key)["ok"]
  if kind == "none" then
    ok[i] = etag == ""
  elseif kind ~= "hash" then
    return redis.error_reply("WRONGTYPE key " .. key .. " is a " .. kind .. ", not a state item")
  else
    local version = redis.call("HGET", key, "version")
    if etag ~= "" then
      ok[i] = version == etag
    else
      ok[i] = first ~= "1"
    end
  end
end
local refused = {}
for i, key in ipairs(KEYS) do
  if ok[i] then
    local first, ttl, data = ARGV[4 * i - 2], tonumber(ARGV[4 * i - 1]), ARGV[4 * i]
    redis.call("HSET", key, "data", data)
    if first == "1" then
      redis.call("HSET", key, "first-write", 0)
    end
    redis.call("HINCRBY", key, "version", 1)
    if ttl > 0 then
      redis.call("EXPIRE", key, ttl)
    elseif ttl < 0 then
      redis.call("PERSIST", key)
    end
  else
    refused[#refused + 1] = i
  end
end
return refused
