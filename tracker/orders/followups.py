"""The journal of order steps whose follow-up writes are not known to be done.

An order step commits in its merchant's slot (``order_step.lua``); the keys other features
read, the open-order index, the rider's order set and ``carrying:riders``, live in other
slots and are written right after it. If Redis fails in between (a cluster node dies, a
connection drops), the step stands and those writes are lost: an order confirmed but missing
from the open index would never be dispatched.

So a step is written here first (``followups:{orders}``, a sorted set: the member names the
order and the step, the score is when it is due for repair) and taken out once its follow-ups
are done. A step whose entry cannot be written is refused before it runs (:func:`tracker.orders.
service.step`): the fleet-wide counts share this slot, so a step taken unjournaled while this
node is down would lose its count, and whatever follow-up failed with it, for good.
:mod:`tracker.orders.repair` re-derives the keys of entries left behind. Times are
Redis's own clock (``TIME`` inside the scripts), so processes on hosts whose clocks disagree
still agree on what is overdue.
"""
from __future__ import annotations

import secrets

import orjson

from tracker.redis_client import LUA_NOW_MS, AnyRedis

FOLLOWUPS_KEY = "followups:{orders}"

# ARGV[1]: milliseconds from now when the entries are due; ARGV[2:]: the members. Adds them.
_ADD = LUA_NOW_MS + """
local due = now + tonumber(ARGV[1])
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], due, ARGV[i]) end
return due
"""

# ARGV[1]: how many; the entries due by now, with their scores.
_DUE = LUA_NOW_MS + """
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[1]))
"""

# ARGV[1]: the member, ARGV[2]: the score it was seen with, ARGV[3]: lease ms. Moves the entry
# a lease into the future if nobody else did first: 1 when this caller has it now.
_CLAIM = LUA_NOW_MS + """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) ~= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
return 1
"""


async def begin(redis: AnyRedis, order_ids: list[str], kind: str, grace_s: float) -> list[str]:
    """Journal a step of ``kind`` on ``order_ids`` before it runs, due for repair after
    ``grace_s``; returns the entries for :func:`end`."""
    members = [orjson.dumps([oid, kind, secrets.token_hex(4)]).decode() for oid in order_ids]
    await redis.eval(_ADD, 1, FOLLOWUPS_KEY, int(grace_s * 1000), *members)
    return members


async def end(redis: AnyRedis, members: list[str]) -> None:
    """The step's follow-ups are done (or the step was refused, or repaired): forget its entries."""
    if members:
        await redis.zrem(FOLLOWUPS_KEY, *members)


async def due(redis: AnyRedis, limit: int = 100) -> list[tuple[str, float, str, str]]:
    """Entries due for repair: (entry, its score, order id, step kind), oldest first."""
    flat = await redis.eval(_DUE, 1, FOLLOWUPS_KEY, limit)
    out = []
    for member, score in zip(flat[0::2], flat[1::2]):
        try:
            order_id, kind, _ = orjson.loads(member)
        except (orjson.JSONDecodeError, ValueError, TypeError):
            order_id, kind = "", ""  # not ours: repaired as nothing, then dropped
        out.append((member, float(score), str(order_id), str(kind)))
    return out


async def claim(redis: AnyRedis, member: str, score: float, lease_s: float) -> bool:
    """Take a due entry for repair: it is due again only after ``lease_s`` (so a process that
    dies or fails mid-repair leaves it to a later pass, and no other process repairs it
    meanwhile). False when another process took it first."""
    return bool(await redis.eval(_CLAIM, 1, FOLLOWUPS_KEY, member, repr(score), int(lease_s * 1000)))
