-- One atomic step on the orders of ONE merchant (all keys share the {m:<merchant>} tag):
-- check every order's state, then for each: append the event to the order's stream and to
-- the merchant feed, update the order hash, and publish the event on the live channels.
-- The state and its history can never disagree; publication order is commit order.
-- Returns {'ok', event id, previous status, ...} per order, or {error, order id, ...}: a refused
-- transition as {'invalid_transition', order id, its status, '1' when it already took this step}.
--
-- KEYS: feed, feed_last, feed_origin (the first id the feed ever held: while the feed still
--       holds it, nothing was trimmed), feed_open (the merchant's orders that have not ended:
--       while it holds any, the feed and its ids do not expire), then (order hash, order events) for each order, then
--       (with a fence) each order's offer lock.
-- ARGV: 1 mode ("create" | "step"), 2 merchant id, 3 the server's time in ms (not read here), 4 feed retention ms,
--       5 allowed statuses (space separated, "" = any), 6 new status ("" = keep),
--       7 required rider ("" = no check), 8 "1" when orders must have no rider,
--       9 hash fields JSON (applied to every order), 10 create fingerprint (create mode),
--       11 a hash field that must still be empty ("" = no check),
--       12 ms an order that ends (delivered, cancelled, failed) is kept: its hash and stream expire then,
--       13 fence: the offer id every order's lock must still hold ("" = no check; an accept whose
--          claim lapsed and was settled by another process meanwhile must not assign),
--       14 hash fields JSON every order must still hold as given ("" = no check; a step computed
--          from what was read, e.g. a delay from the food's estimate, is refused when it changed),
--       15 the hash field this step stamps when taken ("" = none): an order refused the step that
--          already holds it took this very step before (a press repeated after an uncertain answer),
--       then per order: order id, event JSON base, per-order hash fields JSON.
local mode, merchant = ARGV[1], ARGV[2]
-- The feed's entry ids are Redis's own clock ('*'), so its retention counts on that clock too
-- (``now``, from the prelude store.py puts before this script), not on the server's (ARGV[3],
-- which a replay may run faster than real time).
local minid = string.format('%.0f', now - tonumber(ARGV[4]))
local allowed, new_status, rider, unassigned = ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local fields = cjson.decode(ARGV[9])
local n = (#ARGV - 15) / 3
local done = ARGV[15]
local fence = ARGV[13]
local unchanged = ARGV[14] ~= '' and cjson.decode(ARGV[14]) or nil

local unset = ARGV[11]

local retention = tonumber(ARGV[12])
local ends = new_status == 'delivered' or new_status == 'cancelled' or new_status == 'failed'

local function order_arg(i, k) return ARGV[15 + (i - 1) * 3 + k] end

if fence ~= '' then
  for i = 1, n do
    if redis.call('GET', KEYS[4 + 2 * n + i]) ~= fence then return {'fenced', order_arg(i, 1)} end
  end
end

for i = 1, n do
  local h = KEYS[4 + (i - 1) * 2 + 1]
  local oid = order_arg(i, 1)
  if mode == 'create' then
    if redis.call('EXISTS', h) == 1 then
      if redis.call('HGET', h, 'body') == ARGV[10] then return {'exists', oid} end
      return {'conflict', oid}
    end
  else
    local status = redis.call('HGET', h, 'status')
    if not status then return {'not_found', oid} end
    local current_rider = redis.call('HGET', h, 'rider_id') or ''
    if rider ~= '' and current_rider ~= rider then return {'forbidden', oid} end
    if allowed ~= '' and not string.find(' ' .. allowed .. ' ', ' ' .. status .. ' ', 1, true) then
      local taken = done ~= '' and (redis.call('HGET', h, done) or '') ~= ''
      return {'invalid_transition', oid, status, taken and '1' or ''}
    end
    if unassigned == '1' and current_rider ~= '' then return {'conflict', oid} end
    if unset ~= '' and (redis.call('HGET', h, unset) or '') ~= '' then return {'already', oid, status} end
    if unchanged then
      for k, v in pairs(unchanged) do
        if (redis.call('HGET', h, k) or '') ~= v then return {'changed', oid} end
      end
    end
  end
end

local out = {'ok'}
for i = 1, n do
  local h, e = KEYS[4 + (i - 1) * 2 + 1], KEYS[4 + (i - 1) * 2 + 2]
  local oid, base, own = order_arg(i, 1), order_arg(i, 2), cjson.decode(order_arg(i, 3))
  local prev = redis.call('HGET', h, 'last_event_id') or ''
  local old = redis.call('HGET', h, 'status') or ''
  if mode == 'create' then redis.call('DEL', e) end  -- a used-again id starts a history of its own
  local id = redis.call('XADD', e, '*', 'e', base)
  local update = {'last_event_id', id}
  if new_status ~= '' then table.insert(update, 'status'); table.insert(update, new_status) end
  for k, v in pairs(fields) do table.insert(update, k); table.insert(update, tostring(v)) end
  for k, v in pairs(own) do table.insert(update, k); table.insert(update, tostring(v)) end
  redis.call('HSET', h, unpack(update))
  if ends then
    redis.call('PEXPIRE', h, retention)
    redis.call('PEXPIRE', e, retention)
  end
  local body = string.sub(base, 2)
  redis.call('PUBLISH', 'order:' .. oid .. ':live',
    '{"id":"' .. id .. '","prev":"' .. prev .. '",' .. body)
  local fprev = redis.call('GET', KEYS[2]) or ''
  local fid = redis.call('XADD', KEYS[1], 'MINID', '~', minid, '*', 'e', base, 'o', id)
  redis.call('SET', KEYS[2], fid)
  redis.call('SET', KEYS[3], fid, 'NX')
  if ends then redis.call('SREM', KEYS[4], oid) else redis.call('SADD', KEYS[4], oid) end
  -- A merchant that goes quiet (a closed restaurant, a load test's) must not keep its feed for
  -- good: the feed expires with its retention after its last event, its newest and first ids
  -- (tiny) with the orders' retention, so a resume after the feed expired still reads as trimmed.
  -- Not while one of its orders is still open (a scheduled one, quiet for hours): a board must
  -- still rebuild it from the feed, which has no other source.
  if redis.call('SCARD', KEYS[4]) > 0 then
    redis.call('PERSIST', KEYS[1])
    redis.call('PERSIST', KEYS[2])
    redis.call('PERSIST', KEYS[3])
  else
    redis.call('PEXPIRE', KEYS[1], ARGV[4])
    redis.call('PEXPIRE', KEYS[2], math.max(tonumber(ARGV[4]), retention))
    redis.call('PEXPIRE', KEYS[3], math.max(tonumber(ARGV[4]), retention))
  end
  redis.call('PUBLISH', 'merchant:' .. merchant .. ':live',
    '{"id":"' .. fid .. '","prev":"' .. fprev .. '","order_event_id":"' .. id .. '",' .. body)
  table.insert(out, id)
  table.insert(out, old)
end
return out
