-- KEYS[1]: a stream. ARGV[1]: the window's cutoff id ("<ms>-0").
-- Trims the stream to the lowest id any consumer group still needs, never
-- above the cutoff; returns {minid, entries trimmed}. See retention.go.
local function parse(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local function less(a, b)
  local am, as = parse(a)
  local bm, bs = parse(b)
  return am < bm or (am == bm and as < bs)
end
local min = ARGV[1]
for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local f = {}
  for i = 1, #g, 2 do f[g[i]] = g[i + 1] end
  local need = f['last-delivered-id']
  if tonumber(f['pending']) > 0 then
    need = redis.call('XPENDING', KEYS[1], f['name'])[2]
  end
  if less(need, min) then min = need end
end
return {min, redis.call('XTRIM', KEYS[1], 'MINID', min)}
