-- KEYS[1]: a stream. ARGV[1]: the window's cutoff id ("<ms>-0").
-- Trims the stream below the oldest entry any consumer group still needs
-- (its oldest pending entry, else the first entry after its last delivered
-- one), and never above the cutoff; returns {minid, entries trimmed, the
-- oldest needed id or ""}. See retention.go.
local function parse(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local function less(a, b)
  local am, as = parse(a)
  local bm, bs = parse(b)
  return am < bm or (am == bm and as < bs)
end
local needed = nil
for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local f = {}
  for i = 1, #g, 2 do f[g[i]] = g[i + 1] end
  local need = nil
  if tonumber(f['pending']) > 0 then
    need = redis.call('XPENDING', KEYS[1], f['name'])[2]
  else
    local next = redis.call('XRANGE', KEYS[1], '(' .. f['last-delivered-id'], '+', 'COUNT', 1)
    if #next > 0 then need = next[1][1] end
  end
  if need and (needed == nil or less(need, needed)) then needed = need end
end
local min = ARGV[1]
if needed and less(needed, min) then min = needed end
return {min, redis.call('XTRIM', KEYS[1], 'MINID', min), needed or ''}
