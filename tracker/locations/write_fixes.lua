-- Store a batch of accepted location fixes in one atomic step.
--
-- ARGV[1]: JSON from tracker.locations.store.fixes_payload (which owns every key name):
--   riders: one entry per rider:
--     [record key, rider, lat, lng, ts, cell, region, previous_region or "", renew_ttl (0/1),
--      {optional fields}, the latitude to index (lat clamped to Redis GEO's +-85.05112878),
--      confirmed (1: accepted by confirming fixes, see guard_fix.lua),
--      backlog ms (how long a stalled link may have held the fix back, see guard_fix.lua)]
--   (numbers as strings, so the hash keeps exactly what was accepted)
--   rule: guard_fix.lua's rule (prepended to this script)
--   region_keys: {region: [geoset key, staleness key]} for every region named above
--   active: the set of regions that hold riders
-- ARGV[2]: the rider record's TTL in seconds
--
-- Per region: one GEOADD and one ZADD (the staleness index) for all its riders; then per rider
-- an HSET of its record (and EXPIRE when asked); ZREM from the old region's sets for riders who
-- moved (the region its record names, else the one the writer knew). One SADD of the regions
-- touched. The script runs atomically, so a rider moving between regions is never seen in two
-- geosets or in none. A fix guard_fix.lua refuses (older than, or implausible from, the stored
-- one) writes nothing. Returns the refusals: {rider, why, stored ts, lat, lng, client_ts, accuracy}.
local batch = cjson.decode(ARGV[1])
local ttl = tonumber(ARGV[2])
local keys = batch.region_keys

local CHUNK = 3000 -- stay far below Lua's limit on unpack()

local function call_chunked(cmd, key, values, width)
  local n = #values
  local step = CHUNK - (CHUNK % width)
  for i = 1, n, step do
    local j = math.min(i + step - 1, n)
    redis.call(cmd, key, unpack(values, i, j))
  end
end

local geo, seen, leaving, regions, records, refused = {}, {}, {}, {}, {}, {}
for _, f in ipairs(batch.riders) do
  local why, stored = overruled(f, batch.rule)
  if why then
    refused[#refused + 1] = refusal(f[2], why, stored)
  else
    local key, rider, lat, lng, ts, cell, region, previous, renew, extra, geo_lat =
      f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8], f[9], f[10], f[11]
    local fields = {'lat', lat, 'lng', lng, 'ts', ts, 'cell', cell, 'region', region}
    for name, value in pairs(extra) do
      fields[#fields + 1] = name
      fields[#fields + 1] = value
    end
    records[#records + 1] = {key, fields, renew}
    if not geo[region] then
      geo[region], seen[region] = {}, {}
      regions[#regions + 1] = region
    end
    local g, s = geo[region], seen[region]
    g[#g + 1] = lng
    g[#g + 1] = geo_lat
    g[#g + 1] = rider
    s[#s + 1] = ts
    s[#s + 1] = rider
    previous = stored[6] or previous
    if previous ~= '' and previous ~= region then
      leaving[previous] = leaving[previous] or {}
      table.insert(leaving[previous], rider)
    end
  end
end

-- The index first: a write Redis refuses there (a key of another type in the way) fails the
-- script before any record moved, so a record never holds a position its geoset lacks.
for _, region in ipairs(regions) do
  call_chunked('GEOADD', keys[region][1], geo[region], 3)
  call_chunked('ZADD', keys[region][2], seen[region], 2)
end
for _, r in ipairs(records) do
  redis.call('HSET', r[1], unpack(r[2]))
  if r[3] == 1 then
    redis.call('EXPIRE', r[1], ttl)
  end
end
for region, riders in pairs(leaving) do
  call_chunked('ZREM', keys[region][1], riders, 1)
  call_chunked('ZREM', keys[region][2], riders, 1)
end
if #regions > 0 then
  call_chunked('SADD', batch.active, regions, 1)
end
return refused
