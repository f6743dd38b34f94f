"""What an operator relies on around the dispatch loop: its figures on ``/metrics`` are current,
and a region index lost with a Redis node does not stop a region's orders from being served."""
from __future__ import annotations

import asyncio
import re
import time

import httpx

from tests.orders_helpers import PICKUP, Ops, confirmed_order, rider
from tests.test_dispatch_live import FAST, rider_near_restaurant
from tracker.launcher import ServerProcess
from tracker.redis_client import connect


async def _gauge(srv: ServerProcess, name: str) -> float:
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"{srv.base_url}/metrics")).text
    match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert match, text
    return float(match.group(1))


async def _gauge_becomes(srv: ServerProcess, name: str, value: float, within_s: float = 10.0) -> None:
    deadline = time.monotonic() + within_s
    while (seen := await _gauge(srv, name)) != value and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    assert seen == value, f"{name} stayed {seen}, not {value}"


async def test_the_open_orders_gauge_falls_to_zero_when_the_orders_are_gone(own_redis, start_server, uid) -> None:  # type: ignore[no-untyped-def]
    srv = start_server({**FAST, "TRACKER_DISPATCH_RADIUS_M": "100"}, redis=own_redis)  # no rider close enough
    ops = Ops(srv)
    oid, mid = uid("o"), uid("m")
    courier = await rider_near_restaurant(srv, uid("r"), 0.02)  # about 2 km away: seen, never offered
    try:
        await confirmed_order(srv, ops, oid, mid)
        await _gauge_becomes(srv, "tracker_dispatch_open_orders", 1.0)
        await ops.cancel(oid)
        await _gauge_becomes(srv, "tracker_dispatch_open_orders", 0.0)  # it said 1 for ever
        await _gauge_becomes(srv, "tracker_dispatch_free_riders", 0.0)
    finally:
        await courier.close()
        await ops.close()


async def test_the_free_riders_gauge_leaves_out_riders_still_delivering(own_redis, start_server, uid) -> None:  # type: ignore[no-untyped-def]
    """A rider carrying an order is planned by the round (from where its route ends) but is not
    free: the gauge counted every rider the round planned, so an alert on few free riders never
    fired (300 shown while 210 of 300 were busy)."""
    srv = start_server(FAST, redis=own_redis)
    ops = Ops(srv)
    mid, carried, later = uid("m"), uid("o-carried"), uid("o-later")
    busy = await rider_near_restaurant(srv, uid("r-busy"), 0.001)
    free = await rider_near_restaurant(srv, uid("r-free"), 0.003)
    try:
        await confirmed_order(srv, ops, carried, mid)
        offer = await busy.expect("offer", timeout=10)  # the nearer rider takes the first order
        await busy.accept(offer["offer_id"])
        await busy.expect("assigned")
        # Food an hour away: planned every round (both riders seen), offered to no one yet.
        await confirmed_order(srv, ops, later, mid, prep_minutes=60)
        await _gauge_becomes(srv, "tracker_dispatch_open_orders", 1.0)
        await _gauge_becomes(srv, "tracker_dispatch_free_riders", 1.0)  # it said 2
    finally:
        await busy.close()
        await free.close()
        await ops.close()


async def test_an_order_is_served_after_the_region_index_is_lost(own_redis, start_server, uid) -> None:  # type: ignore[no-untyped-def]
    """As when the node holding ``dispatch:regions`` fails over without it: the open order is
    still found (a rescan every 30 dispatch intervals, 9 s here), not only after a restart."""
    srv = start_server(FAST, redis=own_redis)
    ops = Ops(srv)
    redis = connect(own_redis)
    oid, mid = uid("o"), uid("m")
    await asyncio.sleep(1)  # the loop's first scan (at its start) is behind it
    try:
        await confirmed_order(srv, ops, oid, mid)
        await redis.delete("dispatch:regions")  # lost after the order's confirmation wrote it
        courier = await rider_near_restaurant(srv, uid("r"), 0.001)
        try:
            offer = await courier.expect("offer", timeout=20)
            assert [o["order_id"] for o in offer["orders"]] == [oid]
        finally:
            await courier.close()
    finally:
        await ops.close()
        await redis.aclose()



async def test_food_a_silent_rider_has_not_collected_goes_to_another_rider(own_redis, start_server, uid) -> None:  # type: ignore[no-untyped-def]
    """A rider's phone dies with two orders: the one still at the restaurant is taken back (by the
    service, saying why) and offered to the next rider; the food already on board stays its."""
    srv = start_server({**FAST, "TRACKER_STALE_AFTER_S": "1", "TRACKER_SILENT_TAKE_BACK_S": "3"}, redis=own_redis)
    ops = Ops(srv)
    mid, at_kitchen, on_board, gone_id = uid("m"), uid("o-kitchen"), uid("o-board"), uid("r-gone")
    to_ghost, ghost_id = uid("o-ghost"), uid("r-ghost")  # assigned by hand to a rider who never shows up
    gone = await rider(srv, gone_id)
    relief = None
    try:
        await gone.location(PICKUP["lat"] + 0.002, PICKUP["lng"])
        assigning: dict[str, float] = {}
        for oid, rid in ((on_board, gone_id), (at_kitchen, gone_id), (to_ghost, ghost_id)):
            await confirmed_order(srv, ops, oid, mid)
            assigning[oid] = time.monotonic()  # (a rider's silence about an order counts from its assignment at the earliest)
            assert (await ops.assign(oid, rid)).status_code == 200
        for step in ("at_pickup", "picked_up"):
            await gone.progress(on_board, step)
        await gone.close()  # no more fixes from here
        silent_at = time.monotonic()
        deadline = silent_at + 15
        while (await ops.get(at_kitchen))["status"] != "confirmed" and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        back = await ops.get(at_kitchen)
        assert back["status"] == "confirmed" and back["rider_id"] is None, back
        # not before the rider was silent that long (counted from just before the order's
        # assignment: the steps and the close after it, late on a loaded machine, are no part of it)
        assert time.monotonic() - assigning[at_kitchen] >= 2.5
        taken = back["events"][-1]
        assert (taken["kind"], taken["by"], taken["rider_id"]) == ("rider_unassigned", "service", gone_id)
        assert re.fullmatch(r"rider silent for [3-9] s", taken["reason"]), taken  # 3 s: not "1 min"
        assert (await ops.get(on_board))["status"] == "picked_up"  # the food on the road stays with it
        # Silent since it was assigned, which came after the other rider's orders' assignment:
        # taken back up to that much (a few confirms on a loaded machine) later.
        while (await ops.get(to_ghost))["status"] != "confirmed" and time.monotonic() < deadline + 10:
            await asyncio.sleep(0.2)
        ghosted = await ops.get(to_ghost)
        assert ghosted["status"] == "confirmed" and ghosted["events"][-1]["by"] == "service", ghosted
        relief = await rider(srv, uid("r-relief"))
        await relief.location(PICKUP["lat"] + 0.003, PICKUP["lng"])
        offer = await relief.expect("offer", timeout=10)
        assert {o["order_id"] for o in offer["orders"]} <= {at_kitchen, to_ghost}
    finally:
        if relief is not None:
            await relief.close()
        await ops.close()


async def test_a_rider_whose_app_left_loses_its_uncollected_orders_within_a_minute(own_redis, start_server, uid) -> None:  # type: ignore[no-untyped-def]
    """A rider app that closes its socket on purpose, holding food still at the restaurant, is
    gone, not just quiet: the order goes back after a minute, not after the silent rider's five.
    A connection that merely drops (no close frame: a tunnel, a dead battery) keeps the five.
    At x40 a server minute is 1.5 s, five are 7.5 s."""
    srv = start_server({**FAST, "TRACKER_TIME_SCALE": "40", "TRACKER_DISPATCH_INTERVAL_S": "12"}, redis=own_redis)
    ops = Ops(srv)
    mid, left_order, dropped_order = uid("m"), uid("o-left"), uid("o-dropped")
    leaver_id, dropper_id = uid("r-leaver"), uid("r-dropper")
    leaver, dropper = await rider(srv, leaver_id), await rider(srv, dropper_id)
    # (A lower bound counts from just before what starts the server's count: the close, the
    # assignment; an upper bound from once it is done. A test process running late in between
    # must not look like a server that took an order back early.)
    assigning: dict[str, float] = {}
    try:
        for courier, oid, rid in ((leaver, left_order, leaver_id), (dropper, dropped_order, dropper_id)):
            await courier.location(PICKUP["lat"] + 0.002, PICKUP["lng"])
            await confirmed_order(srv, ops, oid, mid)
            assigning[rid] = time.monotonic()  # (the silence counts from the assignment)
            assert (await ops.assign(oid, rid)).status_code == 200
        leaving = time.monotonic()
        await leaver.close()  # a close frame: the app left
        dropper.ws.transport.abort()  # no close frame: the connection just went
        gone_at = time.monotonic()
        while (await ops.get(left_order))["status"] != "confirmed" and time.monotonic() < gone_at + 6:
            await asyncio.sleep(0.2)
        back = await ops.get(left_order)
        assert back["status"] == "confirmed", back
        assert time.monotonic() - leaving >= 1.2 and time.monotonic() - gone_at < 6  # a server minute, not five
        taken = back["events"][-1]
        assert (taken["kind"], taken["by"], taken["rider_id"]) == ("rider_unassigned", "service", leaver_id)
        assert re.fullmatch(r"rider left \d+ min ago", taken["reason"]), taken
        kept = await ops.get(dropped_order)
        assert (kept["status"], kept["rider_id"]) == ("assigned", dropper_id), kept  # still its rider's
        while (await ops.get(dropped_order))["status"] != "confirmed" and time.monotonic() < gone_at + 20:
            await asyncio.sleep(0.3)
        assert time.monotonic() - assigning[dropper_id] >= 7  # five server minutes
        assert re.fullmatch(r"rider silent for 5 min", (await ops.get(dropped_order))["events"][-1]["reason"])
    finally:
        await ops.close()
