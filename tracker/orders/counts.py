"""Fleet-wide order counts (by status, delivered, on time, click-to-door), counted exactly once.

Click-to-door is counted from the order's clock start (``clock_start_at``, see
:func:`tracker.orders.lateness.clock_start_ms`) to its delivery.

An order's record and the counters live in different slots, so no single write moves both,
and a process or a Redis node may fail between them. Counting is therefore made repeatable:

1. ``mark`` (in the order's slot) compares the status the order is counted under
   (``counted_status``) with its status now; on a change it writes the change as the order's
   ``count_pending``, tagged with a number unique to the order (``count_seq``), and records the
   new status as counted. An unfinished change found there is handed back first.
2. ``apply`` (in the counters' slot) applies a change once: the tag of every change applied in
   the last hour is kept (``counts:{orders}:applied``, about 100 bytes a change, some seven
   changes an order), so applying it again does nothing. A change still pending after an hour
   (the counters' node down that long) may be applied twice.
3. ``clear`` (in the order's slot) forgets the pending change once applied.

A failure anywhere leaves the change pending (or never marked), and the next ``count`` of that
order (the follow-up repair, which creates and steps are journaled for, the order's next step, a
retried create) applies it: exactly once. A new order's record starts with ``counted_status``
empty (counted under nothing), so whichever step counts it first counts it from nothing.

Deliveries are counted by click-to-door second (``CTD_SECONDS_KEY``) rather than as on time or
not, so the share is read for the reader's target. A Redis upgraded in place keeps the
``on_time`` counted before that: those deliveries keep the verdict their process gave them (their
click-to-door was never kept), and are added to those within the reader's target.

Counters that versions before this one kept (``orders:by_status``, ``orders:service``, one
``HINCRBY`` per change) are read and added to these, never moved, and an order an earlier
version counted (no ``counted_status``) has its next change counted from the status before
it. Upgrade by stopping the earlier version's processes before starting this one's: an
order stepped by both at once can be counted twice (an old process's step does not say so in
the record).
"""
from __future__ import annotations

from dataclasses import dataclass

from tracker.orders.store import order_key
from tracker.redis_client import LUA_NOW_MS, AnyRedis

BY_STATUS_KEY = "counts:{orders}:by_status"
# delivered, ctd_minutes_sum (and on_time: the deliveries counted on time before the histogram
# below existed, under the target of their day; never written now)
SERVICE_KEY = "counts:{orders}:service"
# Deliveries by click-to-door in whole seconds, rounded up: the on-time share is read from it
# for the reader's own target (a whole number of seconds, settings.on_time_target_s), so it is
# exact whatever target the delivering process had. One field per second seen: some thousands.
CTD_SECONDS_KEY = "counts:{orders}:ctd_seconds"
APPLIED_KEY = "counts:{orders}:applied"  # tags of the changes applied, scored by when
APPLIED_KEEP_MS = 3600 * 1000  # far longer than a repair takes (seconds)
LEGACY_KEYS = {BY_STATUS_KEY: "orders:by_status", SERVICE_KEY: "orders:service"}  # earlier versions' counters

# KEYS[1]: the order. ARGV[1]: its id; ARGV[2]: the status it was counted under if its record
# does not say (an order an earlier version counted; its delivery too, if it was delivered then).
# Returns the change to apply ('' for none): tag|before|now|start|delivered_at (the two times
# only when this change counts the delivery; start: the order's clock start, ``clock_start_at``,
# else ``placed_at`` for a record made before it was stored, as lateness.clock_start reads it).
_MARK = """
local h = redis.call('HMGET', KEYS[1], 'status', 'counted_status', 'count_pending', 'counted_delivered',
                     'placed_at', 'delivered_at', 'clock_start_at')
if not h[1] then return '' end
if h[3] then return h[3] end
local before = h[2] or ARGV[2]
local delivery = h[1] == 'delivered' and before ~= 'delivered' and not h[4] and h[5] and h[6]
if before == h[1] and not delivery then return '' end
-- The tag names this life of the id (its placement time: an id may be used again once an
-- ended order has expired) and the change's number within it.
local change = ARGV[1] .. '@' .. (h[5] or '') .. '#' .. redis.call('HINCRBY', KEYS[1], 'count_seq', 1)
  .. '|' .. before .. '|' .. h[1]
if delivery then
  local start = h[7]
  if not start or start == '' then start = h[5] end
  change = change .. '|' .. start .. '|' .. h[6]
  redis.call('HSET', KEYS[1], 'counted_delivered', '1')
else
  change = change .. '||'
end
redis.call('HSET', KEYS[1], 'counted_status', h[1], 'count_pending', change)
return change
"""

# KEYS: by status, service, applied, click-to-door seconds. ARGV: tag, before, now,
# click-to-door minutes or '', its whole seconds rounded up, how long tags are kept (ms).
# 1 when applied now, 0 when it had been.
_APPLY = LUA_NOW_MS + """
if redis.call('ZSCORE', KEYS[3], ARGV[1]) then return 0 end
if ARGV[2] ~= ARGV[3] then
  if ARGV[2] ~= '' then redis.call('HINCRBY', KEYS[1], ARGV[2], -1) end
  redis.call('HINCRBY', KEYS[1], ARGV[3], 1)
end
if ARGV[4] ~= '' then
  redis.call('HINCRBY', KEYS[2], 'delivered', 1)
  redis.call('HINCRBY', KEYS[4], ARGV[5], 1)
  redis.call('HINCRBYFLOAT', KEYS[2], 'ctd_minutes_sum', ARGV[4])
end
redis.call('ZADD', KEYS[3], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - tonumber(ARGV[6]))
return 1
"""

# KEYS[1]: click-to-door seconds; ARGV[1]: the target in whole seconds. The deliveries within
# it (summed here: only the count crosses the network, not every second's field).
_WITHIN = """
local within = 0
local h = redis.call('HGETALL', KEYS[1])
for i = 1, #h, 2 do
  if tonumber(h[i]) <= tonumber(ARGV[1]) then within = within + tonumber(h[i + 1]) end
end
return within
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
    ms: int | None  # click-to-door, when this change counts the delivery

    @property
    def minutes(self) -> float | None:
        """Click-to-door in minutes (``None``: this change counts no delivery)."""
        return None if self.ms is None else self.ms / 60000

    @property
    def seconds(self) -> int | None:
        """Click-to-door in whole seconds, rounded up: its field in ``CTD_SECONDS_KEY``."""
        return None if self.ms is None else -(-self.ms // 1000)

    @classmethod
    def parse(cls, raw: str) -> "Change":
        tag, before, now, start, delivered = raw.split("|")
        # (A scheduled order whose food came early may be delivered before its clock started:
        # that is no negative wait.) A change an earlier version marked carries placed_at, that
        # order's start.
        ms = max(0, int(delivered) - int(start)) if start and delivered else None
        return cls(tag, before, now, ms)


async def count(redis: AnyRedis, order: dict[str, str], counted_as: str) -> list[Change]:
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
        if await redis.eval(_APPLY, 4, BY_STATUS_KEY, SERVICE_KEY, APPLIED_KEY, CTD_SECONDS_KEY, change.tag,
                            change.before, change.now, minutes, change.seconds or 0, APPLIED_KEEP_MS):
            applied.append(change)
        await redis.eval(_CLEAR, 1, key, raw)
    return applied


async def read(redis: AnyRedis, target_s: int) -> tuple[dict[str, int], dict[str, float]]:
    """The fleet-wide counts: orders by status, and delivered / on_time / ctd_minutes_sum
    (these counters plus what earlier versions' processes counted). ``on_time``: the deliveries
    within ``target_s`` seconds, plus those counted on time before the click-to-door histogram
    existed (judged then, under the target of their day: their click-to-door is not known)."""
    pipe = redis.pipeline(transaction=False)
    for key in (BY_STATUS_KEY, SERVICE_KEY, *LEGACY_KEYS.values()):
        pipe.hgetall(key)
    pipe.eval(_WITHIN, 1, CTD_SECONDS_KEY, target_s)  # (in the same round trip)
    by_status, service, old_by_status, old_service, within = await pipe.execute()
    statuses = {s: int(by_status.get(s, 0)) + int(old_by_status.get(s, 0)) for s in {*by_status, *old_by_status}}
    figures = {f: float(service.get(f, 0)) + float(old_service.get(f, 0)) for f in {*service, *old_service}}
    figures["on_time"] = figures.get("on_time", 0.0) + int(within)
    return statuses, figures
