"""The customer's estimate while the order waits for a rider: the dispatcher's planned drop-off,
from the planner's Python API to the order's channel, its HTTP body and the tracking page."""
from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from playwright.async_api import Browser, expect

from clients.customer import CustomerClient
from tests.orders_helpers import PICKUP, Ops, customer, merchant, rider, round_since, server_now
from tests.test_pages import browser, new_page  # noqa: F401 - the module's Chromium fixture
from tests.test_planner_growth import MIN, NOW, PROJ, order
from tests.test_planner_growth import rider as idle_rider
from tracker.dispatch.model import Snapshot
from tracker.dispatch.planner import Policy, plan

FAST = {"TRACKER_DISPATCH_INTERVAL_S": "0.3", "TRACKER_OFFER_TIMEOUT_S": "5", "TRACKER_DECLINE_COOLDOWN_S": "600"}


def test_the_plan_estimates_an_order_it_does_not_offer_yet_from_the_rider_it_plans_for_it() -> None:
    # Food ready in 30 min, 1,500 m (5 min) from its customer; the one rider 900 m (3 min) from the kitchen.
    soon = order("o1", (0, 0), (1500, 0), ready_min=30)
    elsewhere = order("o2", (5000, 0), (5000, 3200), ready_min=30, rest="B")  # a longer ride: o1 goes first
    snap = Snapshot(NOW, PROJ.origin_lat, PROJ.origin_lng, (soon, elsewhere), (idle_rider("r1", (0, 900)),))
    decided = plan(snap, Policy())
    assert decided.offers == ()  # nothing has to start before the next round
    # pickup at the ready time, 2 min of service, 5 min on the road, half the hand-over
    assert decided.estimates == {"o1": NOW + (30 + 2 + 5 + 2) * MIN}  # o2 has no rider: no estimate


def test_an_offered_orders_estimate_is_its_offers_drop_off() -> None:
    ready = order("o1", (0, 0), (1500, 0), ready_min=0)
    decided = plan(Snapshot(NOW, PROJ.origin_lat, PROJ.origin_lng, (ready,), (idle_rider("r1", (0, 900)),)), Policy())
    [offer] = decided.offers
    assert decided.estimates == {"o1": offer.drop_eta_ms[0]} and offer.drop_eta_ms[0] == NOW + (5 + 2 + 5 + 2) * MIN


async def next_estimate(watcher: CustomerClient, timeout: float = 10.0) -> dict[str, Any]:
    """The next ``estimate`` frame on the order's channel (other frames skipped)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        frame = await watcher.next(max(0.05, deadline - loop.time()))
        if frame["type"] == "estimate":
            return frame


@pytest.mark.parametrize("promise", ["ready_at", "prep_minutes"])
async def test_a_waiting_order_is_told_its_planned_drop_off_and_the_kitchens_ready_brings_it_forward(
        own_redis, start_server, uid, promise: str) -> None:  # type: ignore[no-untyped-def]
    """Food promised in 20 minutes (a ready time, or 20 minutes' preparation from confirmation):
    the customer is told the drop-off the plan gives it before any rider is offered it; the
    kitchen's ``ready`` then has it offered at once, and the estimate moves forward with it. (An
    order with a preparation time was offered at once, its estimate 15 minutes too early.)"""
    srv = start_server(FAST, redis=own_redis)
    ops = Ops(srv)
    oid, mid = uid("o"), uid("m")
    courier = await rider(srv, uid("r"))
    await courier.location(PICKUP["lat"] + 0.002, PICKUP["lng"])
    kitchen = await merchant(srv, mid)
    watcher = None  # opened once the order exists
    try:
        ready_at = await server_now(srv.base_url) + 20 * 60_000
        said = {"ready_at": ready_at} if promise == "ready_at" else {"prep_minutes": 20}
        assert (await ops.create(oid, mid, **said)).status_code == 201
        watcher = await customer(srv, oid)
        await kitchen.confirm(oid)
        first = await next_estimate(watcher)
        if first["eta"] is None:  # (the channel opened as the order was confirmed: no plan yet, said on connect)
            first = await next_estimate(watcher)
        if promise == "prep_minutes":  # ready 20 minutes after the kitchen confirmed it
            ready_at = (await ops.get(oid))["confirmed_at"] + 20 * 60_000
        # collected at the ready time, 2 min of service, about 6 min on the road, half the hand-over
        assert ready_at + 9 * 60_000 <= first["eta"] <= ready_at + 11 * 60_000, (first, ready_at)
        assert (await ops.get(oid))["planned_eta"] == first["eta"]
        # a round started since has planned the order and offered it to nobody, and sent what it would
        assert (await round_since(ops, await server_now(srv.base_url)))["offers"] == 0
        with pytest.raises(asyncio.TimeoutError):  # a rider need not leave for 17 minutes
            await courier.expect("offer", timeout=1.5)
        await kitchen.ready(oid)
        offer = await courier.expect("offer", timeout=10)
        sooner = await next_estimate(watcher)
        assert sooner["eta"] < ready_at, (sooner, ready_at)  # the food no longer waits for its estimate
        [job] = offer["orders"]  # the rider is told the same plan
        assert job["ready_at"] is None and job["eta"] == sooner["eta"] and job["pickup_eta"] < job["eta"], job
        await courier.accept(offer["offer_id"])
        await courier.expect("assigned")
        body = await ops.get(oid)
        assert body["status"] == "assigned" and body["planned_eta"] is None  # the rider's own ETA takes over
    finally:
        if watcher is not None:
            await watcher.close()
        await kitchen.close()
        await courier.close()
        await ops.close()


async def test_the_estimate_goes_when_no_rider_can_be_planned_after_the_grace_and_a_new_channel_gets_the_current_one(
        own_redis, start_server, uid) -> None:  # type: ignore[no-untyped-def]
    grace_s = 2.0
    srv = start_server({**FAST, "TRACKER_ESTIMATE_GRACE_S": str(grace_s)}, redis=own_redis)
    ops = Ops(srv)
    oid, mid = uid("o"), uid("m")
    kitchen = await merchant(srv, mid)
    courier = None
    watcher = None
    try:
        assert (await ops.create(oid, mid)).status_code == 201
        await kitchen.confirm(oid)
        await kitchen.event(oid, "confirmed")
        confirmed_by = await server_now(srv.base_url)
        watcher = await customer(srv, oid)
        # no plan yet: said on connect (a page reconnecting drops an estimate that went meanwhile)
        assert (await next_estimate(watcher))["eta"] is None
        # a round with no rider near has run on the confirmed order (not only a second gone by)
        assert (await round_since(ops, confirmed_by))["riders"] == 0
        assert (await ops.get(oid))["planned_eta"] is None
        courier = await rider(srv, uid("r"))
        await courier.location(PICKUP["lat"] + 0.002, PICKUP["lng"])
        planned = await next_estimate(watcher)
        assert planned["eta"] > await server_now(srv.base_url)
        late_comer = await customer(srv, oid)  # after the history, the estimate as it stands
        try:
            assert (await next_estimate(late_comer))["eta"] == planned["eta"]
        finally:
            await late_comer.close()
        offer = await courier.expect("offer", timeout=10)
        loop = asyncio.get_running_loop()
        declined_at = loop.time()
        await courier.decline(offer["offer_id"])  # the only rider near is kept away from the order
        await asyncio.sleep(grace_s / 2)  # rounds with no rider for it, within the grace: the estimate stays
        assert (await ops.get(oid))["planned_eta"] == planned["eta"]
        gone = await next_estimate(watcher)
        assert gone["eta"] is None and gone["order_id"] == oid
        assert loop.time() - declined_at >= grace_s - 0.2  # (the clock's rounding aside)
        assert (await ops.get(oid))["planned_eta"] is None
    finally:
        for sock in (watcher, courier):
            if sock is not None:
                await sock.close()
        await kitchen.close()
        await ops.close()


async def test_the_tracking_page_shows_the_estimate_before_a_rider_has_the_order(
        own_redis, start_server, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    srv = start_server(FAST, redis=own_redis)
    ops = Ops(srv)
    oid, mid = uid("o"), uid("m")
    kitchen = await merchant(srv, mid)
    courier = await rider(srv, uid("r"))
    page = await new_page(browser, mobile=True)
    try:
        ready_at = await server_now(srv.base_url) + 20 * 60_000
        assert (await ops.create(oid, mid, ready_at=ready_at)).status_code == 201
        await page.goto(f"{srv.base_url}/track/{oid}?token={srv.token('customer', oid)}")
        await expect(page.locator("#eta-line")).to_have_text("Estimated arrival: once the restaurant confirms")
        await kitchen.confirm(oid)
        await expect(page.locator("#status")).to_have_attribute("data-status", "confirmed")
        await expect(page.locator("#eta")).to_have_text("finding a rider")  # no rider anywhere yet
        await courier.location(PICKUP["lat"] + 0.002, PICKUP["lng"])
        await expect(page.locator("#eta-label")).to_have_text("Estimated arrival in")
        await expect(page.locator("#eta")).to_have_text(re.compile(r"^\d+ min$"))
        shown = int((await page.locator("#eta").text_content() or "").split()[0])
        assert 28 <= shown <= 31, shown  # ready in 20, then about 10 more to the door
        await page.reload()  # the order's body carries it too
        await expect(page.locator("#eta")).to_have_text(re.compile(r"^\d+ min$"), timeout=3000)
    finally:
        await page.context.close()
        await kitchen.close()
        await courier.close()
        await ops.close()


async def test_an_offer_tells_the_rider_when_the_food_is_ready_and_when_it_would_be_delivered(
        own_redis, start_server, uid) -> None:  # type: ignore[no-untyped-def]
    srv = start_server(FAST, redis=own_redis)
    ops = Ops(srv)
    oid, mid = uid("o"), uid("m")
    courier = await rider(srv, uid("r"))
    await courier.location(PICKUP["lat"] + 0.002, PICKUP["lng"])  # about a minute away
    kitchen = await merchant(srv, mid)
    try:
        ready_at = await server_now(srv.base_url) + 3 * 60_000  # the rider must leave now to be there on time
        assert (await ops.create(oid, mid, ready_at=ready_at)).status_code == 201
        await kitchen.confirm(oid)
        offer = await courier.expect("offer", timeout=10)
        [job] = offer["orders"]
        assert job["ready_at"] == ready_at, (job, ready_at)
        assert abs(job["pickup_eta"] - ready_at) < 5_000, (job, ready_at)  # there as the food is ready
        assert ready_at + 7 * 60_000 <= job["eta"] <= ready_at + 11 * 60_000, job  # then about 8 minutes to the door
        await courier.accept(offer["offer_id"])
        assert (await courier.expect("assigned"))["orders"] == offer["orders"]
    finally:
        await kitchen.close()
        await courier.close()
        await ops.close()
