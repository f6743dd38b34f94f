"""A dispatching process killed while it creates an offer does not hold the order, nor the rider,
until the keys' safety TTL: within about ``CLAIM_LEASE_S`` another process offers the order again,
to the same rider.

Server A plans the round and reaches Redis through a relay that freezes Redis just as A's claim of
the order's lock is on its way (:mod:`tests.redis_freeze`); A is killed while Redis is stopped, so
when Redis wakes it runs that claim and nothing A would have done next. Server B holds the rider's
socket and sweeps offers but plans no rounds; server C, started after the kill, plans them.
"""
from __future__ import annotations

import asyncio
import time

from tests.orders_helpers import Ops, confirmed_order
from tests.test_dispatch_live import FAST, rider_near_restaurant
from tests.test_offer_killed_accept import relayed_redis  # noqa: F401 - a fixture
from tracker.dispatch.offers import CLAIM_LEASE_S, lock_key
from tracker.launcher import ServerProcess

NO_ROUNDS = {**FAST, "TRACKER_DISPATCH_INTERVAL_S": "3600"}  # (its first pass finds no open order)


async def test_an_offer_whose_creation_was_killed_frees_the_order_and_the_rider(
        relayed_redis, start_server, uid) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    redis, relay = relayed_redis
    srv_b: ServerProcess = start_server(NO_ROUNDS, redis=redis.url)
    srv_a: ServerProcess = start_server(FAST, redis=relay.url)
    ops = Ops(srv_b)
    oid, mid, rid = uid("o"), uid("m"), uid("r")
    courier = await rider_near_restaurant(srv_b, rid, 0.001)
    try:
        relay.freeze_before(b"EVALSHA", lock_key(mid, oid).encode())
        confirming = asyncio.create_task(confirmed_order(srv_b, ops, oid, mid))
        await relay.frozen(timeout=20)
        srv_a.proc.kill()  # type: ignore[union-attr]
        srv_a.proc.wait()  # type: ignore[union-attr]
        killed_at = time.monotonic()
        relay.thaw()  # Redis takes the lock; A never writes again
        await confirming
        start_server(FAST, redis=redis.url)  # C: plans the rounds from now on

        offer = await courier.expect("offer", timeout=CLAIM_LEASE_S + 15)
        assert time.monotonic() - killed_at < CLAIM_LEASE_S + 15
        assert [o["order_id"] for o in offer["orders"]] == [oid], offer
        await courier.accept(offer["offer_id"])
        assert (await courier.expect("assigned"))["offer_id"] == offer["offer_id"]
        order = await ops.get(oid)
        assert (order["status"], order["rider_id"]) == ("assigned", rid)
    finally:
        await courier.close()
        await ops.close()
