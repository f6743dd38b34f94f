"""A rider who stops taking work mid-offer (its app closes, or it goes off duty) gives the
offer back at once: no waiting for the offer's timeout, no cooldown; a real server, real sockets."""
from __future__ import annotations

from tests.orders_helpers import PICKUP, Ops, rider
from tests.test_dispatch_live import FAST, near_and_far, offered, rider_near_restaurant
from tracker.launcher import ServerProcess

SLOW_OFFERS = {**FAST, "TRACKER_OFFER_TIMEOUT_S": "60"}  # an expiry would come far too late for these tests


async def test_a_rider_who_closes_the_app_mid_offer_gives_the_order_to_another_at_once(own_redis, start_server, uid) -> None:  # type: ignore[no-untyped-def]
    srv: ServerProcess = start_server(SLOW_OFFERS, redis=own_redis)
    ops = Ops(srv)
    oid, mid, near_id, far_id = uid("o"), uid("m"), uid("near"), uid("far")
    near, far = await near_and_far(srv, near_id, far_id)
    watch = await rider(srv, near_id)  # the rider's second socket (sends no fix): sees what the first is told
    try:
        offer = await offered(ops, near, oid, mid)
        await near.close()  # a close frame with 1000: the app left
        withdrawn = await watch.expect("offer_withdrawn", timeout=5)
        assert withdrawn["offer_id"] == offer["offer_id"]
        second = await far.expect("offer", timeout=5)  # not after the 60 s timeout
        assert [o["order_id"] for o in second["orders"]] == [oid]
        await far.decline(second["offer_id"])
        back = await rider_near_restaurant(srv, near_id, 0.001)  # no cooldown: leaving is not a refusal
        again = await back.expect("offer", timeout=5)
        assert [o["order_id"] for o in again["orders"]] == [oid]
        await back.close()
    finally:
        await watch.close()
        await near.close()
        await far.close()
        await ops.close()


async def test_going_off_duty_mid_offer_withdraws_it_and_a_late_accept_is_refused(own_redis, start_server, uid) -> None:  # type: ignore[no-untyped-def]
    srv: ServerProcess = start_server(SLOW_OFFERS, redis=own_redis)
    ops = Ops(srv)
    oid, mid, rid = uid("o"), uid("m"), uid("r")
    courier = await rider_near_restaurant(srv, rid, 0.002)
    try:
        offer = await offered(ops, courier, oid, mid)
        await courier.availability(False)
        withdrawn = await courier.expect("offer_withdrawn", timeout=5)
        assert withdrawn["offer_id"] == offer["offer_id"]
        await courier.accept(offer["offer_id"])  # the tap that crossed going off duty
        assert (await courier.expect("error"))["code"] == "conflict"
        order = await ops.get(oid)
        assert order["status"] == "confirmed" and order["rider_id"] is None
        await courier.availability(True)  # back on duty: offered again, no cooldown
        await courier.location(PICKUP["lat"] + 0.002, PICKUP["lng"])
        again = await courier.expect("offer", timeout=5)
        assert [o["order_id"] for o in again["orders"]] == [oid]
    finally:
        await courier.close()
        await ops.close()
