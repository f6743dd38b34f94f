"""The journal of order steps whose follow-up writes are not known to be done.

An order step commits in its merchant's slot (``order_step.lua``); the keys other features
read, the open-order index, the rider's order set and ``carrying:riders``, live in other
slots and are written right after it. If Redis fails in between (a cluster node dies, a
connection drops), the step stands and those writes are lost: an order confirmed but missing
from the open index would never be dispatched.

So a step is written here first (``followups:{orders}``, a sorted set: the member names the
order and the step, the score is the wall-clock time in ms) and taken out once its follow-ups
are done. :mod:`tracker.orders.repair` re-derives the keys of entries left behind.
"""
from __future__ import annotations

import secrets
import time

import orjson

from tracker.redis_client import AnyRedis

FOLLOWUPS_KEY = "followups:{orders}"


def _now_ms() -> int:
    return int(time.time() * 1000)  # wall clock, not the server's (scaled) one: the grace is real time


async def begin(redis: AnyRedis, order_ids: list[str], kind: str) -> list[str]:
    """Journal a step of ``kind`` on ``order_ids`` before it runs; returns the entries for :func:`end`."""
    members = [orjson.dumps([oid, kind, secrets.token_hex(4)]).decode() for oid in order_ids]
    now = _now_ms()
    await redis.zadd(FOLLOWUPS_KEY, {m: now for m in members})
    return members


async def end(redis: AnyRedis, members: list[str]) -> None:
    """The step's follow-ups are done (or the step was refused): forget its entries."""
    if members:
        await redis.zrem(FOLLOWUPS_KEY, *members)


async def claim(redis: AnyRedis, member: str) -> bool:
    """Take an entry for repair; False when another process took it first."""
    return bool(await redis.zrem(FOLLOWUPS_KEY, member))


async def retry_later(redis: AnyRedis, member: str) -> None:
    """Put back an entry whose repair failed, at the back of the queue."""
    await redis.zadd(FOLLOWUPS_KEY, {member: _now_ms()})


async def overdue(redis: AnyRedis, older_than_s: float, limit: int = 100) -> list[tuple[str, str, str]]:
    """Entries journaled more than ``older_than_s`` ago: (entry, order id, step kind), oldest first."""
    cutoff = _now_ms() - int(older_than_s * 1000)
    members = await redis.zrangebyscore(FOLLOWUPS_KEY, "-inf", cutoff, start=0, num=limit)
    out = []
    for member in members:
        try:
            order_id, kind, _ = orjson.loads(member)
        except (orjson.JSONDecodeError, ValueError, TypeError):
            order_id, kind = "", ""  # not ours: repaired as nothing, then dropped
        out.append((member, str(order_id), str(kind)))
    return out
