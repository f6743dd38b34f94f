-- Redis Cluster: write one rider's record (KEYS[1]) if guard_fix.lua's rule lets the fix
-- replace it. ARGV[1]: the rider's row of fixes_payload (JSON); ARGV[2]: the rule (JSON);
-- ARGV[3]: the record's TTL in seconds. Returns {'refused', guard_fix.lua's refusal...}, or
-- {'written', the region the record was in before (or '')}.
local f = cjson.decode(ARGV[1])
f[1] = KEYS[1]
local why, stored = overruled(f, cjson.decode(ARGV[2]))
if why then
  local reply = refusal(f[2], why, stored)
  table.insert(reply, 1, 'refused')
  return reply
end
local fields = {'lat', f[3], 'lng', f[4], 'ts', f[5], 'cell', f[6], 'region', f[7]}
for name, value in pairs(f[10]) do
  fields[#fields + 1] = name
  fields[#fields + 1] = value
end
redis.call('HSET', KEYS[1], unpack(fields))
if f[9] == 1 then
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
end
return {'written', stored[6] or f[8]}
