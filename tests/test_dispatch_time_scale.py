"""Dispatch on a sped-up clock (``TRACKER_TIME_SCALE``, a replay's): offers expire when they
say, not tens of server seconds late; a real server, real sockets, real Redis."""
from __future__ import annotations

import asyncio
import statistics

from clients.rider import RiderClient
from tests.orders_helpers import Ops, confirmed_order
from tests.test_dispatch_live import rider_near_restaurant
from tracker.dispatch.refusals import refusals_key
from tracker.launcher import ServerProcess
from tracker.redis_client import AnyRedis, connect

SPED_UP = {"TRACKER_TIME_SCALE": "300", "TRACKER_DISPATCH_INTERVAL_S": "30", "TRACKER_OFFER_TIMEOUT_S": "60",
           "TRACKER_STALE_AFTER_S": "3600000", "TRACKER_DECLINE_COOLDOWN_S": "3600000"}


async def _expiry_lag(courier: RiderClient, rider_id: str, redis: AnyRedis) -> int:
    """Server ms from the courier's offer's ``expires_at`` to its expiry (when the server
    counted it as the rider's refusal, on its own clock)."""
    offer = await courier.expect("offer", timeout=15)
    await courier.expect("offer_expired", timeout=10)
    return int(await redis.zscore(refusals_key(rider_id), offer["offer_id"])) - offer["expires_at"]


async def test_offers_expire_on_time_on_a_sped_up_clock(own_redis, start_server, uid) -> None:  # type: ignore[no-untyped-def]
    srv: ServerProcess = start_server(SPED_UP, redis=own_redis)
    ops, redis = Ops(srv), connect(own_redis)
    ids = [uid(f"sleepy{i}") for i in range(6)]
    sleepy = [await rider_near_restaurant(srv, rid, 0.001 * (i + 1)) for i, rid in enumerate(ids)]
    try:
        await confirmed_order(srv, ops, uid("o"), uid("m"))  # offered to each in turn, each lets it expire
        lags = await asyncio.gather(*(_expiry_lag(courier, rid, redis) for courier, rid in zip(sleepy, ids)))
        # At x300 a real millisecond is 0.3 server seconds: expiries came up to 15 s late
        # (median 10 s); now about 2 s: the sweep's own Redis round trips before it counts the refusal.
        assert statistics.median(lags) < 4_500, lags
    finally:
        await asyncio.gather(*(courier.close() for courier in sleepy))
        await ops.close()
        await redis.aclose()
