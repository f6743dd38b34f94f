"""Deliveries running late, as the operator finds them: the rule (sans-I/O), then the ops
snapshot and page of a real server with real rider and kitchen sockets and a real Chromium."""
from __future__ import annotations

import asyncio
from typing import Any

from playwright.async_api import Browser, expect

from tests.orders_helpers import PICKUP, Ops, confirm_all, deliver, platform_kitchen, rider
from tests.test_pages import browser, new_page  # noqa: F401 - the module's Chromium fixture
from tracker.orders.lateness import running_late

MIN = 60_000


def an_order(oid: str, status: str, placed_at: int, **extra: Any) -> dict[str, Any]:
    return {"id": oid, "merchant_id": "m", "status": status, "rider_id": extra.pop("rider_id", None),
            "placed_at": placed_at, "eta": None, "planned_eta": None, **extra}


def test_overdue_whatever_the_status_predicted_by_the_estimate_and_never_once_ended() -> None:
    now, target = 100 * MIN, 40 * MIN
    orders = [
        an_order("waiting-kitchen", "placed", now - 41 * MIN),  # overdue with no estimate at all
        an_order("on-board", "picked_up", now - 45 * MIN, rider_id="r1", eta=now - MIN),  # a stale ETA: still overdue
        an_order("slow-rider", "assigned", now - 30 * MIN, rider_id="r2", eta=now + 12 * MIN),  # due in 10, there in 12
        an_order("slow-plan", "confirmed", now - 35 * MIN, planned_eta=now + 6 * MIN),  # due in 5, planned in 6
        an_order("on-time", "assigned", now - 30 * MIN, rider_id="r3", eta=now + 10 * MIN),  # exactly on time
        an_order("unknown", "confirmed", now - 39 * MIN),  # due in a minute, nobody knows when: not late yet
        an_order("delivered", "delivered", now - 90 * MIN),
        an_order("cancelled", "cancelled", now - 50 * MIN),
    ]
    rows = running_late(orders, now, target)
    assert [(r["id"], r["late"]) for r in rows] == [
        ("on-board", "overdue"), ("waiting-kitchen", "overdue"), ("slow-plan", "predicted"), ("slow-rider", "predicted")]
    assert rows[0] == {"id": "on-board", "merchant_id": "m", "status": "picked_up", "rider_id": "r1",
                       "placed_at": now - 45 * MIN, "clock_start_at": now - 45 * MIN, "due_at": now - 5 * MIN, "expected_at": now - MIN,
                       "ready_at": None, "food_delayed_at": None, "food_ready_at": None, "late": "overdue"}
    assert rows[2]["expected_at"] == now + 6 * MIN  # the dispatcher's plan while it waits


async def _late(ops: Ops) -> tuple[int, list[dict[str, Any]], dict[str, Any]]:
    snap = (await ops.client.get("/v1/ops/snapshot")).json()
    return snap["ts"], snap["running_late"], snap


async def test_the_ops_page_lists_deliveries_running_late_and_drops_those_that_ended(own_redis, start_server, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """On-time target 15 s: a kitchen that never confirms, an order planned for later, one a rider
    carries and one cancelled. Before they are due the ones with an estimate past it are
    predicted late; once due every one not ended is overdue, whatever its status."""
    target_s = 15
    srv = start_server({"TRACKER_ON_TIME_TARGET_MIN": str(target_s / 60), "TRACKER_DISPATCH_INTERVAL_S": "0.3",
                        "TRACKER_SILENT_TAKE_BACK_S": "0"}, redis=own_redis)
    ops = Ops(srv)
    closed, kitchen_id, rid = uid("m-closed"), uid("m"), uid("r")
    stuck, planned, carried, gone = uid("o-stuck"), uid("o-planned"), uid("o-carried"), uid("o-gone")
    courier = await rider(srv, rid)
    kitchen = await platform_kitchen(srv, kitchen_id)
    page = await new_page(browser)
    try:
        await courier.location(PICKUP["lat"] + 0.002, PICKUP["lng"])
        assert (await ops.create(stuck, closed)).status_code == 201  # its kitchen never confirms it
        assert (await ops.create(carried, kitchen_id, prep_minutes=0)).status_code == 201
        await confirm_all(kitchen, carried)
        offer = await courier.expect("offer", timeout=10)
        assert [o["order_id"] for o in offer["orders"]] == [carried]
        await courier.accept(offer["offer_id"])
        await courier.expect("assigned", timeout=10)
        await courier.location(PICKUP["lat"] + 0.002, PICKUP["lng"])  # its live ETA for the order
        for oid in (planned, gone):  # food for later: planned for the rider after this trip, not offered yet
            assert (await ops.create(oid, kitchen_id, prep_minutes=10)).status_code == 201
        await confirm_all(kitchen, planned, gone)

        placed = {oid: (await ops.get(oid))["placed_at"] for oid in (stuck, planned, carried, gone)}
        for _ in range(100):  # until the round's plan and the rider's ETA are in
            now, late, _ = await _late(ops)
            if {planned, carried, gone} <= {r["id"] for r in late}:
                break
            await asyncio.sleep(0.1)
        for row in late:
            order = await ops.get(row["id"])
            assert row["due_at"] == placed[row["id"]] + target_s * 1000
            if now <= row["due_at"]:  # not due yet: listed for its estimate
                assert row["late"] == "predicted" and row["expected_at"] == (order["eta"] or order["planned_eta"])
                assert row["expected_at"] > row["due_at"]
        assert (stuck in {r["id"] for r in late}) == (now > placed[stuck] + target_s * 1000)  # no estimate: once due
        assert {r["id"]: r["rider_id"] for r in late}[carried] == rid

        assert (await ops.cancel(gone)).status_code == 200
        while (now := (await _late(ops))[0]) <= max(placed.values()) + target_s * 1000:
            await asyncio.sleep(0.5)
        now, late, snap = await _late(ops)
        assert [(r["id"], r["late"], r["status"]) for r in late] == [
            (stuck, "overdue", "placed"), (carried, "overdue", "assigned"), (planned, "overdue", "confirmed")]
        assert snap["totals"]["running_late"] == 3 and snap["truncated"]["running_late"] is False
        assert snap["totals_at_least"]["running_late"] is False  # every order due was read: the count is exact
        cut = (await ops.client.get("/v1/ops/snapshot?max_orders=1")).json()
        assert [r["id"] for r in cut["running_late"]] == [stuck] and cut["totals"]["running_late"] == 3
        assert cut["truncated"]["running_late"] is True and cut["totals_at_least"]["running_late"] is False

        await page.goto(f"{srv.base_url}/ops?token={srv.token('operator', 'ops')}")
        rows = page.locator("#late tr")
        await expect(rows).to_have_count(3)
        await expect(page.locator("#late-shown")).to_have_text("(3)")
        await expect(rows.nth(1)).to_have_attribute("data-overdue", "")
        await expect(rows.nth(1)).to_contain_text(f"assigned · rider {rid}")
        await expect(rows.nth(0)).to_contain_text("placed · no rider")
        await expect(page.locator('[data-figure="deliveries running late"] b')).to_have_text("3")
        await expect(rows.nth(2)).to_contain_text("confirmed · no rider · food ready")  # its kitchen makes it late
        waiting = page.locator(f'#waiting tr[data-order="{planned}"]')  # planned past its due time: said there too
        await expect(waiting).to_contain_text("past due")
        await expect(waiting).to_have_attribute("data-unplanned", "")
        await rows.nth(1).locator("[data-open-order]").click()
        await expect(page.locator("#order-summary")).to_contain_text(f"{carried}: assigned")
        await expect(page.locator("#order-summary")).to_contain_text("due ")
        await expect(page.locator("#order-events li")).to_have_count(3)  # placed, confirmed, assigned
        await expect(page.locator("#order-events li").nth(2)).to_contain_text(f"assigned to {rid}")
    finally:
        await page.context.close()
        await courier.close()
        await kitchen.close()
        await ops.close()


async def test_an_order_scheduled_ahead_is_timed_from_when_its_kitchen_would_start(own_redis, start_server, uid) -> None:  # type: ignore[no-untyped-def]
    """An order created scheduled, its food wanted two hours ahead, starts its clock then, less the
    preparation time (an order merely given a late ready time, not scheduled, starts when placed): it is not listed overdue one target after its placement, and delivered
    early (the food ready sooner than planned) it counts no click-to-door at all. It was listed
    overdue while the planner planned it on schedule, and its delivery counted the hours it
    waited by design, late."""
    srv = start_server({"TRACKER_ON_TIME_TARGET_MIN": str(2 / 60), "TRACKER_DISPATCH_INTERVAL_S": "3600",
                        "TRACKER_DEFAULT_PREP_MIN": "10"}, redis=own_redis)
    ops = Ops(srv)
    mid, rid, asap, ahead = uid("m"), uid("r"), uid("o-asap"), uid("o-ahead")
    kitchen = await platform_kitchen(srv, mid)
    courier = await rider(srv, rid)
    try:
        now = (await ops.client.get("/healthz")).json()["ts"]
        ready_at = now + 120 * MIN
        assert (await ops.create(asap, mid)).status_code == 201
        assert (await ops.create(ahead, mid, ready_at=ready_at, scheduled=True)).status_code == 201
        slow = uid("o-slow")  # a slow kitchen's order, not scheduled: its customer waits from the click
        assert (await ops.create(slow, mid, ready_at=now + 45 * MIN)).status_code == 201
        assert (await ops.get(slow))["clock_start_at"] == (await ops.get(slow))["placed_at"]
        refused = await ops.create(uid("o"), mid, scheduled=True)  # scheduled for no time
        assert refused.status_code == 400 and "ready_at" in refused.json()["error"]["message"], refused.text
        assert (await ops.create(uid("o"), mid, ready_at=ready_at, scheduled="yes")).status_code == 400
        for _ in range(100):  # until the ordinary order, placed with it, is overdue
            snap = (await ops.client.get("/v1/ops/snapshot")).json()
            late = {r["id"]: r for r in snap["running_late"]}
            if asap in late:
                break
            await asyncio.sleep(0.1)
        assert late[asap]["late"] == "overdue" and late[asap]["due_at"] == late[asap]["placed_at"] + 2000
        assert ahead not in late, late[ahead]
        assert (await ops.get(ahead))["clock_start_at"] == ready_at - 10 * MIN  # its kitchen starts 10 min before
        assert late[asap]["clock_start_at"] == late[asap]["placed_at"]  # an ordinary order's, its placement

        await confirm_all(kitchen, ahead)
        await kitchen.ready(ahead)  # sooner than planned
        await kitchen.event(ahead, "food_ready")
        await courier.location(PICKUP["lat"], PICKUP["lng"])
        assert await ops.rider_seen_at(rid, PICKUP["lat"], PICKUP["lng"])
        assert (await ops.assign(ahead, rid)).status_code == 200
        await deliver(courier, kitchen, ahead)
        delivered = await ops.get(ahead)
        assert delivered["delivered_at"] - delivered["placed_at"] > 2000  # past the target since its placement
        service = (await ops.client.get("/v1/ops/snapshot")).json()["service"]
        assert (service["delivered"], service["on_time_share"], service["click_to_door_mean_min"]) == (1, 1.0, 0.0)
    finally:
        await kitchen.close()
        await courier.close()
        await ops.close()
