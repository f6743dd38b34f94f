"""The ops snapshot's raw read of many riders' state: one Lua call per chunk on one Redis.

Each rider's state is five small reads (its record, whether it holds an offer, its refusals
within the window, its pause and, for a rider carrying orders, the orders). Sent as one
pipelined command each, redis-py parses every reply in Python (about 20 µs each, with a
timeout context per reply): 21,000 replies for 5,000 riders were most of a snapshot's time.
On one Redis a script reads a whole chunk and answers one nested array (parsed by hiredis);
on a cluster (the riders' keys span slots) the reads stay pipelined per command.
"""
from __future__ import annotations

from typing import Sequence

from tracker.dispatch.offers import rider_offer_key
from tracker.dispatch.refusals import refusals_key
from tracker.locations import rider_orders_key
from tracker.locations.store import pause_key, record_key
from tracker.redis_client import AnyRedis, is_cluster

RECORD_FIELDS = ("lat", "lng", "ts", "available", "left_at", "shift_start", "shift_end")

# KEYS: per rider (five each) its record, offer, refusals, pause and orders keys; ARGV[1]: the refusal
# window's start; ARGV[1 + i]: "1" when rider i carries orders. Per rider, in order:
# {HMGET of RECORD_FIELDS, EXISTS offer, ZCOUNT refusals, HGETALL pause, SMEMBERS orders or {}}.
_READ_RIDERS = """
local fields = {%s}
local out = {}
for i = 1, #KEYS / 5 do
  local k = (i - 1) * 5
  local carried = {}
  if ARGV[1 + i] == '1' then carried = redis.call('SMEMBERS', KEYS[k + 5]) end
  out[i] = {redis.call('HMGET', KEYS[k + 1], unpack(fields)), redis.call('EXISTS', KEYS[k + 2]),
            redis.call('ZCOUNT', KEYS[k + 3], ARGV[1], '+inf'), redis.call('HGETALL', KEYS[k + 4]), carried}
end
return out
""" % ", ".join(f"'{name}'" for name in RECORD_FIELDS)

# One rider's raw state: record fields, offered (0/1), refusals counted, pause hash, orders carried.
RawState = tuple[list[str | None], int, int, dict[str, str], list[str]]


async def read_states(redis: AnyRedis, ids: Sequence[str], carrying: set[str], since_ms: int) -> list[RawState]:
    """The raw state of each rider of ``ids`` (refusals counted from ``since_ms``; orders read
    only for the riders in ``carrying``: only they can carry)."""
    if is_cluster(redis):
        return await _pipelined(redis, ids, carrying, since_ms)
    script = redis.register_script(_READ_RIDERS)  # (a hash of the text: cheap per chunk)
    keys = [key for rid in ids for key in (record_key(rid), rider_offer_key(rid), refusals_key(rid),
                                            pause_key(rid), rider_orders_key(rid))]
    args = [since_ms, *("1" if rid in carrying else "0" for rid in ids)]
    rows = await script(keys=keys, args=args)
    return [(fields, offered, refused, dict(zip(pause[::2], pause[1::2])), carried)
            for fields, offered, refused, pause, carried in rows]


async def _pipelined(redis: AnyRedis, ids: Sequence[str], carrying: set[str], since_ms: int) -> list[RawState]:
    """The same reads as one pipelined command each (a cluster's keys span slots)."""
    pipe = redis.pipeline(transaction=False)
    for rid in ids:
        pipe.hmget(record_key(rid), *RECORD_FIELDS)
        pipe.exists(rider_offer_key(rid))
        pipe.zcount(refusals_key(rid), since_ms, "+inf")
        pipe.hgetall(pause_key(rid))
        if rid in carrying:
            pipe.smembers(rider_orders_key(rid))
    res = iter(await pipe.execute())
    return [(next(res), next(res), next(res), next(res), list(next(res)) if rid in carrying else []) for rid in ids]

