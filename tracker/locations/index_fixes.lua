-- Redis Cluster: index riders in one region (KEYS[1] its geoset, KEYS[2] its staleness index,
-- one hash slot), each only if its fix is newer than the one indexed there: two processes'
-- writes landing in either order leave the newer position and score.
-- ARGV[1]: JSON list of [rider, lng, latitude to index, ts].
for _, r in ipairs(cjson.decode(ARGV[1])) do
  local score = redis.call('ZSCORE', KEYS[2], r[1])
  if not score or tonumber(score) < tonumber(r[4]) then
    redis.call('GEOADD', KEYS[1], r[2], r[3], r[1])
    redis.call('ZADD', KEYS[2], r[4], r[1])
  end
end
return 1
