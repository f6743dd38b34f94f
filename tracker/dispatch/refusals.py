"""Each rider's recent refusals of offers (declined, or left to expire), for the operator.

A rider who declines every offer looks "free" on the ops page the whole time (a decline takes
a moment, the page polls every 2 s) while orders wait. Each refusal is kept for
:data:`REFUSAL_WINDOW_MS` in the rider's own sorted set (``rider:{<id>}:refused``, offer id by
time, the rider's hash tag), and the ops snapshot counts them per rider.
"""
from __future__ import annotations

from tracker.runtime import Runtime

REFUSAL_WINDOW_MS = 3600 * 1000  # an hour of server time


def refusals_key(rider_id: str) -> str:
    return f"rider:{{{rider_id}}}:refused"


async def note_refusal(rt: Runtime, rider_id: str, offer_id: str) -> None:
    """Remember that ``rider_id`` declined (or let expire) ``offer_id`` now."""
    key, now_ms = refusals_key(rider_id), rt.clock.now_ms()
    pipe = rt.redis.pipeline(transaction=False)
    pipe.zadd(key, {offer_id: now_ms})
    pipe.zremrangebyscore(key, "-inf", now_ms - REFUSAL_WINDOW_MS)
    pipe.pexpire(key, int(rt.clock.real_seconds(REFUSAL_WINDOW_MS / 1000) * 1000) + 1)  # (Redis keeps real time)
    await pipe.execute()
