-- The store's last word on a fix, shared by write_fixes.lua and record_fix.lua (prepended to
-- each): may row ``f`` (from tracker.locations.store.fixes_payload) replace the rider's stored
-- record? Checked inside the write's own atomic step, so fixes from two sockets, two server
-- processes or a batch written twice can never move a rider back in time or across a country.
--
-- ``rule``: {max_speed (m/s), stale_ms, earth_m (metres), max_slack_m (metres)}.
-- Returns the refusal ('older' or 'implausible'), or false, and the stored fields
-- {ts, lat, lng, client_ts, accuracy, region} (false where absent).
local function haversine_m(lat1, lng1, lat2, lng2, radius)
  local rad = math.pi / 180
  local p1, p2 = lat1 * rad, lat2 * rad
  local dp, dl = p2 - p1, (lng2 - lng1) * rad
  local a = math.sin(dp / 2) ^ 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ^ 2
  return 2 * radius * math.asin(math.min(1, math.sqrt(a)))
end

local function overruled(f, rule)
  local stored = redis.call('HMGET', f[1], 'ts', 'lat', 'lng', 'client_ts', 'accuracy', 'region')
  if not stored[1] or not stored[2] then
    return false, stored -- no fix stored yet (a record may hold only availability or left_at)
  end
  local old_ts, new_ts = tonumber(stored[1]), tonumber(f[5])
  if new_ts <= old_ts then
    return 'older', stored -- received no later than the stored fix
  end
  if new_ts - old_ts > rule.stale_ms then
    return false, stored -- a stale fix anchors nothing
  end
  local extra = f[10]
  local ct, old_ct = extra.client_ts, stored[4]
  if ct ~= '' and old_ct and old_ct ~= '' and tonumber(ct) <= tonumber(old_ct) then
    return 'older', stored -- taken by the phone no later than the stored fix
  end
  if f[12] == 1 then
    return false, stored -- accepted by confirming fixes: the stored one was the glitch
  end
  -- (at least the silence before the backlog the fix arrived in, if any: a stalled link
  -- delivers fixes taken over that long at once; see Fix.backlog_ms)
  local elapsed = math.max(1, (new_ts - old_ts) / 1000, (f[13] and tonumber(f[13]) or 0) / 1000)
  local slack = math.min(rule.max_slack_m, (tonumber(extra.accuracy or '0') or 0) + (tonumber(stored[5] or '0') or 0))
  local distance = haversine_m(tonumber(stored[2]), tonumber(stored[3]), tonumber(f[3]), tonumber(f[4]), rule.earth_m)
  if math.max(0, distance - slack) / elapsed > rule.max_speed then
    return 'implausible', stored
  end
  return false, stored
end

local function refusal(rider, why, stored)
  return {rider, why, stored[1], stored[2], stored[3], stored[4] or '', stored[5] or ''}
end
