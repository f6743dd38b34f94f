"""An order step whose follow-up writes in other slots are lost to a Redis failure is repaired:
the order is still dispatched, and still on its rider's route.

The failure is made in the real Redis: the key a follow-up writes holds the wrong type while
the step runs (as a node dying between the step and its follow-ups would), then is cleared.
"""
from __future__ import annotations

import asyncio
import time
from typing import Any, Callable

from tests.orders_helpers import PICKUP, Ops, merchant, rider
from tests.test_dispatch_live import FAST, confirmed_order, rider_near_restaurant
from tracker.geo import dispatch_region
from tracker.locations import rider_orders_key
from tracker.orders import open_orders_key
from tracker.redis_client import connect

REPAIR_FAST = {**FAST, "TRACKER_FOLLOWUP_REPAIR_S": "1"}


async def test_an_order_confirmed_while_its_open_index_write_fails_is_still_dispatched(
        own_redis: str, start_server: Callable[..., Any], uid: Callable[[str], str]) -> None:
    srv = start_server(REPAIR_FAST, redis=own_redis)
    ops, redis = Ops(srv), connect(own_redis)
    oid, mid = uid("o"), uid("m")
    index = open_orders_key(dispatch_region(PICKUP["lat"], PICKUP["lng"]))
    try:
        await ops.create(oid, mid)
        await redis.set(index, "not a sorted set")  # the follow-up write will fail
        kitchen = await merchant(srv, mid)
        await kitchen.confirm(oid)
        await kitchen.event(oid, "confirmed")  # the step stands
        await kitchen.confirm(oid)
        error = await kitchen.expect("error")  # the first error frame answers the second confirm:
        assert error["code"] == "invalid_transition", error  # the first was answered as done
        await kitchen.close()
        await redis.delete(index)  # the failure passes; nothing asks again
        courier = await rider_near_restaurant(srv, uid("r"), 0.002)
        offer = await courier.expect("offer", timeout=10)
        assert [o["order_id"] for o in offer["orders"]] == [oid]
        await courier.close()
    finally:
        await ops.close()
        await redis.aclose()


async def test_a_hand_assignment_whose_route_write_fails_is_on_the_riders_route_after_repair(
        own_redis: str, start_server: Callable[..., Any], uid: Callable[[str], str]) -> None:
    srv = start_server(REPAIR_FAST, redis=own_redis)
    ops, redis = Ops(srv), connect(own_redis)
    oid, mid, rid = uid("o"), uid("m"), uid("r")
    try:
        await confirmed_order(srv, ops, oid, mid)
        await redis.set(rider_orders_key(rid), "not a set")  # the rider's order set cannot be written
        resp = await ops.assign(oid, rid)
        assert resp.status_code == 200 and resp.json()["rider_id"] == rid, resp.text  # the step stands
        for _ in range(50):  # while the key stays wrong, each repair fails, and says so
            ready = (await ops.client.get("/readyz")).json()
            if "order-followup-repair" in ready["degraded"]:
                break
            await asyncio.sleep(0.1)
        task = next(t for t in ready["tasks"] if t["name"] == "order-followup-repair")
        assert "WRONGTYPE" in task["last_error"] and "order-followup-repair" in ready["degraded"], ready
        await redis.delete(rider_orders_key(rid))
        deadline = time.monotonic() + 10
        courier = await rider(srv, rid, keep_route=True)
        route = await courier.expect("route", timeout=5)
        while not route["orders"] and time.monotonic() < deadline:  # repaired within about 2 s
            await courier.close()
            await asyncio.sleep(0.2)
            courier = await rider(srv, rid, keep_route=True)
            route = await courier.expect("route", timeout=5)
        assert [(o["order_id"], o["status"]) for o in route["orders"]] == [(oid, "assigned")]
        await courier.close()
    finally:
        await ops.close()
        await redis.aclose()
