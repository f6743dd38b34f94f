"""Fleet-wide order counts (by status, delivered, on time, click-to-door), counted exactly once.

An order's record and the counters live in different slots, so no single write moves both,
and a process or a Redis node may fail between them. Counting is therefore made repeatable:

1. ``mark`` (in the order's slot) compares the status the order is counted under
   (``counted_status``) with its status now; on a change it writes the change as the order's
   ``count_pending``, tagged with a number unique to the order (``count_seq``), and records the
   new status as counted. An unfinished change found there is handed back first.
2. ``apply`` (in the counters' slot) applies a change once: the tag of every change applied in
   the last six hours is kept (``counts:{orders}:applied``), so applying it again does nothing.
3. ``clear`` (in the order's slot) forgets the pending change once applied.

A failure anywhere leaves the change pending (or never marked), and the next ``count`` of that
order (the follow-up repair, the order's next step, a retried create) applies it: exactly once.
"""
from __future__ import annotations

from dataclasses import dataclass

from tracker.orders.store import order_key
from tracker.redis_client import AnyRedis

BY_STATUS_KEY = "counts:{orders}:by_status"
SERVICE_KEY = "counts:{orders}:service"  # delivered, on_time, ctd_minutes_sum
APPLIED_KEY = "counts:{orders}:applied"  # tags of the changes applied, scored by when
APPLIED_KEEP_MS = 6 * 3600 * 1000  # far longer than a repair takes
_LEGACY = {BY_STATUS_KEY: "orders:by_status", SERVICE_KEY: "orders:service"}  # before counting was repeatable
_MIGRATED_KEY = "counts:{orders}:migrated"

# KEYS[1]: the order. ARGV[1]: its id; ARGV[2]: the status it was counted under if its record
# does not say. Returns the change to apply ('' for none): tag|before|now|placed_at|delivered_at
# (the two times only when this change counts the delivery).
_MARK = """
local h = redis.call('HMGET', KEYS[1], 'status', 'counted_status', 'count_pending', 'counted_delivered',
                     'placed_at', 'delivered_at')
if not h[1] then return '' end
if h[3] then return h[3] end
local before = h[2] or ARGV[2]
local delivery = h[1] == 'delivered' and not h[4] and h[5] and h[6]
if before == h[1] and not delivery then return '' end
local change = ARGV[1] .. '#' .. redis.call('HINCRBY', KEYS[1], 'count_seq', 1) .. '|' .. before .. '|' .. h[1]
if delivery then
  change = change .. '|' .. h[5] .. '|' .. h[6]
  redis.call('HSET', KEYS[1], 'counted_delivered', '1')
else
  change = change .. '||'
end
redis.call('HSET', KEYS[1], 'counted_status', h[1], 'count_pending', change)
return change
"""

# KEYS: by status, service, applied. ARGV: tag, before, now, click-to-door minutes or '', the
# on-time target in minutes. 1 when applied now, 0 when it had been.
_APPLY = """
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if redis.call('ZSCORE', KEYS[3], ARGV[1]) then return 0 end
if ARGV[2] ~= ARGV[3] then
  if ARGV[2] ~= '' then redis.call('HINCRBY', KEYS[1], ARGV[2], -1) end
  redis.call('HINCRBY', KEYS[1], ARGV[3], 1)
end
if ARGV[4] ~= '' then
  local minutes = tonumber(ARGV[4])
  redis.call('HINCRBY', KEYS[2], 'delivered', 1)
  if minutes <= tonumber(ARGV[5]) then redis.call('HINCRBY', KEYS[2], 'on_time', 1) end
  redis.call('HINCRBYFLOAT', KEYS[2], 'ctd_minutes_sum', ARGV[4])
end
redis.call('ZADD', KEYS[3], now_ms, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now_ms - tonumber(ARGV[6]))
return 1
"""

# KEYS[1]: the order; ARGV[1]: the change applied. Forgets it if it is still the pending one.
_CLEAR = """
if redis.call('HGET', KEYS[1], 'count_pending') == ARGV[1] then redis.call('HDEL', KEYS[1], 'count_pending') end
return 0
"""


@dataclass(frozen=True)
class Change:
    """One change of an order's counts, as ``mark`` wrote it."""

    tag: str
    before: str
    now: str
    minutes: float | None  # click-to-door, when this change counts the delivery

    @classmethod
    def parse(cls, raw: str) -> "Change":
        tag, before, now, placed, delivered = raw.split("|")
        minutes = (int(delivered) - int(placed)) / 60000 if placed and delivered else None
        return cls(tag, before, now, minutes)


async def count(redis: AnyRedis, order: dict[str, str], counted_as: str, target_min: float) -> list[Change]:
    """Bring the counts in line with ``order``'s record in Redis; ``counted_as``: the status it
    was counted under if its record does not say ('' for not counted). Returns the changes
    this call applied (an unfinished earlier one first, then the order's own)."""
    key = order_key(order["merchant_id"], order["id"])
    applied = []
    for _ in range(3):  # an unfinished change, then the order's own; one more for a step in between
        raw = await redis.eval(_MARK, 1, key, order["id"], counted_as)
        if not raw:
            break
        change = Change.parse(raw)
        minutes = "" if change.minutes is None else repr(change.minutes)
        if await redis.eval(_APPLY, 3, BY_STATUS_KEY, SERVICE_KEY, APPLIED_KEY, change.tag, change.before,
                            change.now, minutes, target_min, APPLIED_KEEP_MS):
            applied.append(change)
        await redis.eval(_CLEAR, 1, key, raw)
    return applied


async def migrate_legacy(redis: AnyRedis) -> None:
    """Carry counts kept before counting was repeatable into the new keys, once per Redis."""
    if not await redis.set(_MIGRATED_KEY, "1", nx=True):
        return
    for new, old in _LEGACY.items():
        values = await redis.hgetall(old)
        for field, value in values.items():
            if value.lstrip("-").isdigit():
                await redis.hincrby(new, field, int(value))
            else:
                await redis.hincrbyfloat(new, field, float(value))
        if values:
            await redis.delete(old)
