"""An answer to an offer whose server process is killed half-way does not hold the order for
the keys' safety TTL: another process settles it within about 15 s and the order is served.

The killed process is stood in for by this test process: it claims the rider's offer with the
server's own offer store, against the same Redis, exactly as a process taking the rider's
``accept`` does first, and then does nothing more, as a process killed at that point would.
"""
from __future__ import annotations

import time

from tests.orders_helpers import Ops
from tests.test_dispatch_live import FAST, confirmed_order, rider_near_restaurant
from tracker.clock import Clock
from tracker.dispatch.offers import CLAIM_LEASE_S, OfferStore
from tracker.redis_client import connect


async def test_an_offer_claimed_by_a_killed_process_is_withdrawn_and_the_order_served(
        own_redis, start_server, uid) -> None:  # type: ignore[no-untyped-def]
    srv = start_server(FAST, redis=own_redis)  # offers' safety TTL: 60 s
    ops = Ops(srv)
    redis = connect(own_redis)
    oid, mid = uid("o"), uid("m")
    courier = await rider_near_restaurant(srv, uid("r"), 0.001)
    try:
        await confirmed_order(srv, ops, oid, mid)
        offer = await courier.expect("offer", timeout=10)
        store = OfferStore(redis, Clock(), safety_ttl_ms=60_000)
        record = await store.load(offer["offer_id"])
        assert record is not None and await store.claim(record)  # ...and the claimer is gone
        claimed = time.monotonic()
        await courier.accept(offer["offer_id"])  # the same rider tries again: already taken
        assert (await courier.expect("error"))["code"] == "conflict"

        withdrawn = await courier.expect("offer_withdrawn", timeout=CLAIM_LEASE_S + 15)
        assert withdrawn["offer_id"] == offer["offer_id"]
        assert CLAIM_LEASE_S - 1 <= time.monotonic() - claimed < CLAIM_LEASE_S + 15
        assert (await ops.get(oid))["status"] == "confirmed"  # nobody was assigned meanwhile

        again = await courier.expect("offer", timeout=10)  # the next round offers it again
        assert [o["order_id"] for o in again["orders"]] == [oid]
        await courier.accept(again["offer_id"])
        await courier.expect("assigned")
        order = await ops.get(oid)
        assert order["status"] == "assigned" and order["events"][-1]["offer_id"] == again["offer_id"]
        await courier.accept(offer["offer_id"])  # the stalled offer says what became of it
        late = await courier.expect("error")
        assert late["code"] == "conflict" and "withdrawn" in late["message"], late
    finally:
        await courier.close()
        await ops.close()
        await redis.aclose()
