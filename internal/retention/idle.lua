-- KEYS[1]: a stream. ARGV[1]: a consumer group. ARGV[2]: idle ms.
-- Removes the group's consumers that hold no pending entry and were idle at
-- least ARGV[2] ms; returns their names. See retention.go.
local removed = {}
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local f = {}
  for i = 1, #c, 2 do f[c[i]] = c[i + 1] end
  if tonumber(f['pending']) == 0 and tonumber(f['idle']) >= tonumber(ARGV[2]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], f['name'])
    table.insert(removed, f['name'])
  end
end
return removed
