"""Each rider's recent refusals of offers (declined, or left to expire), for the operator.

A rider who declines every offer looks "free" on the ops page the whole time (a decline takes
a moment, the page polls every 2 s) while orders wait. Each refusal is kept for
:data:`REFUSAL_WINDOW_MS` in the rider's own sorted set (``rider:{<id>}:refused``, offer id by
time, the rider's hash tag), and the ops snapshot counts them per rider.
"""
from __future__ import annotations

from tracker.redis_client import AnyRedis

REFUSAL_WINDOW_MS = 3600 * 1000  # an hour of server time


def refusals_key(rider_id: str) -> str:
    return f"rider:{{{rider_id}}}:refused"


async def note_refusal(redis: AnyRedis, rider_id: str, offer_id: str, now_ms: int) -> None:
    """Remember that ``rider_id`` declined (or let expire) ``offer_id`` at ``now_ms``."""
    key = refusals_key(rider_id)
    pipe = redis.pipeline(transaction=False)
    pipe.zadd(key, {offer_id: now_ms})
    pipe.zremrangebyscore(key, "-inf", now_ms - REFUSAL_WINDOW_MS)
    pipe.pexpire(key, REFUSAL_WINDOW_MS)
    await pipe.execute()
