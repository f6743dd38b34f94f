"""The ops page as an operator works it during a shift: acting on an order (assign, take back,
cancel, a failed delivery), a map that keeps the city in view when one point is far away, new
orders after a quiet spell, and ids that can be copied: a real server, real sockets, Chromium."""
from __future__ import annotations

import asyncio
import re
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Awaitable, Callable

from playwright.async_api import Browser, Dialog, Page, Route, expect

from clients.rider import RiderClient
from tests.orders_helpers import PICKUP, Ops, confirm_all, confirmed_order, platform_kitchen, rider
from tests.test_pages import browser, new_page  # noqa: F401 - the module's Chromium fixture
from tracker.launcher import ServerProcess

NO_ROUNDS = {"TRACKER_DISPATCH_INTERVAL_S": "3600"}  # one pass at the start, then none for an hour


async def settles(measure: Callable[[], Awaitable[float]], ok: Callable[[float], bool], timeout: float = 5.0) -> float:
    """``measure()`` once ``ok`` of it holds (it is polled); fails with the last value after ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await measure()
        if ok(value) or loop.time() > deadline:
            assert ok(value), value
            return value
        await asyncio.sleep(0.1)


@asynccontextmanager
async def operator_and_rider(srv: ServerProcess, rider_id: str, browser: Browser) -> AsyncIterator[tuple[Ops, RiderClient, Page]]:
    """The operator's HTTP client, rider ``rider_id`` connected and a browser page, all closed after."""
    ops = Ops(srv)
    courier = await rider(srv, rider_id)
    page = await new_page(browser)
    try:
        yield ops, courier, page
    finally:
        await page.context.close()
        await courier.close()
        await ops.close()


def answer_prompts(page: Page, answers: list[str | None]) -> list[str]:
    """Answer the page's prompts in turn (None dismisses one); returns the questions asked."""
    asked: list[str] = []

    async def on_dialog(dialog: Dialog) -> None:
        asked.append(dialog.message)
        reply = answers.pop(0) if answers else None
        await (dialog.dismiss() if reply is None else dialog.accept(reply))

    page.on("dialog", lambda d: asyncio.ensure_future(on_dialog(d)))
    return asked


async def test_operator_assigns_takes_back_and_cancels_an_order_and_fails_a_lost_delivery(own_redis, start_server, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    srv = start_server(NO_ROUNDS, redis=own_redis)  # nobody but the operator gives orders to riders here
    mid, waiting, lost, rid = uid("m"), uid("o-wait"), uid("o-lost"), uid("r")
    async with operator_and_rider(srv, rid, browser) as (ops, courier, page):
        await courier.location(PICKUP["lat"] + 0.002, PICKUP["lng"])
        for oid in (waiting, lost):
            await confirmed_order(srv, ops, oid, mid)
        await page.goto(f"{srv.base_url}/ops?token={srv.token('operator', 'ops')}")
        asked = answer_prompts(page, [rid, "kitchen closed early", "", "phone stolen with the food"])
        await page.locator(f'#waiting tr[data-order="{waiting}"] [data-open-order]').click()  # from the table
        summary, note = page.locator("#order-summary"), page.locator("#order-note")
        await expect(summary).to_contain_text(f"{waiting}: confirmed")
        await page.get_by_role("button", name="Assign to a rider…").click()
        await expect(note).to_have_text(f"Order {waiting} assigned to {rid}.")
        assert (await ops.get(waiting))["rider_id"] == rid
        await expect(summary).to_contain_text(f"rider {rid}")
        await courier.expect("assigned")
        await page.get_by_role("button", name="Cancel order").click()
        await expect(note).to_have_text(f"Order {waiting} cancelled.")
        cancelled = await ops.get(waiting)
        assert cancelled["status"] == "cancelled"
        assert cancelled["events"][-1]["by"] == "operator" and cancelled["events"][-1]["reason"] == "kitchen closed early"
        await expect(page.locator("#order-actions")).to_have_text("Nothing to do: the order has ended.")

        assert (await ops.assign(lost, rid)).status_code == 200  # the rider collects the food, then vanishes
        for step in ("at_pickup", "picked_up"):
            await courier.progress(lost, step)
        rider_row = page.locator(f'tr[data-rider="{rid}"]')
        await rider_row.locator(f'[data-open-order="{lost}"]').click()  # the rider's orders, by id
        await expect(summary).to_contain_text(f"{lost}: picked up")
        await expect(page.get_by_role("button", name=f"Take back from {rid}")).to_have_count(0)  # the food left
        await page.get_by_role("button", name="Mark delivery failed").click()  # a blank reason is asked again
        await expect(note).to_have_text(f"Order {lost} marked as a failed delivery.")
        failed = await ops.get(lost)
        assert failed["status"] == "failed" and failed["events"][-1]["reason"] == "phone stolen with the food"
        assert sum("will not arrive" in q for q in asked) == 2, asked


async def test_operator_takes_an_order_back_from_a_rider_and_a_refusal_is_said(own_redis, start_server, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    srv = start_server(NO_ROUNDS, redis=own_redis)
    mid, oid, rid = uid("m"), uid("o"), uid("r")
    async with operator_and_rider(srv, rid, browser) as (ops, courier, page):
        await confirmed_order(srv, ops, oid, mid)
        assert (await ops.assign(oid, rid)).status_code == 200
        await page.goto(f"{srv.base_url}/ops?token={srv.token('operator', 'ops')}&order={oid}")  # opened by its link
        wrong = await ops.client.post(f"/v1/orders/{oid}/unassign", json={"rider_id": rid + "-other"})
        assert wrong.status_code == 409 and f"now with rider {rid!r}" in wrong.json()["error"]["message"], wrong.text
        asked = answer_prompts(page, ["silent for 10 minutes", "not a rider id!", "yes"])  # (not online: asked to confirm)
        take_back = page.get_by_role("button", name=f"Take back from {rid}")
        await take_back.focus()
        await page.wait_for_timeout(2500)  # a snapshot later (the order read again): the focus stays
        assert await page.evaluate("() => document.activeElement.textContent") == f"Take back from {rid}"
        await page.keyboard.press("Enter")
        await expect(page.locator("#order-note")).to_have_text(f"Order {oid} taken back from {rid}: dispatch offers it again.")
        back = await ops.get(oid)
        assert back["status"] == "confirmed" and back["rider_id"] is None
        await page.get_by_role("button", name="Assign to a rider…").click()  # a malformed rider id: refused, said
        await expect(page.locator("#order-note")).to_contain_text(f"Order {oid} was not assigned:")
        assert any("not a rider id! is not online now" in q for q in asked), asked
        await page.locator("#order-id").fill(oid + "-nope")
        await page.get_by_role("button", name="Look up").click()
        await expect(page.locator("#order-note")).to_have_text(f"There is no order {oid}-nope.")
        await expect(page.locator("#order-card")).to_be_hidden()


async def test_a_hand_assignment_the_kitchen_cancels_right_after_says_it_was_cancelled(own_redis, start_server, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """The operator's assignment and the kitchen's cancel both go through, the cancel second: the
    page says the order was cancelled, not that it is now the rider's."""
    srv = start_server(NO_ROUNDS, redis=own_redis)
    mid, oid, rid = uid("m"), uid("o"), uid("r")
    async with operator_and_rider(srv, rid, browser) as (ops, courier, page):
        await courier.location(PICKUP["lat"] + 0.002, PICKUP["lng"])
        await confirmed_order(srv, ops, oid, mid)
        kitchen = {"Authorization": "Bearer " + srv.token("merchant", mid)}

        async def cancel_as_the_answer_travels(route: Route) -> None:
            answer = await route.fetch()  # the server assigned it ...
            cancel = await ops.client.post(f"/v1/orders/{oid}/cancel", json={"reason": "out of basil"}, headers=kitchen)
            assert cancel.status_code == 200, cancel.text  # ... and the kitchen cancelled it before the page heard
            await route.fulfill(response=answer)

        await page.route(f"**/v1/orders/{oid}/assign", cancel_as_the_answer_travels)
        await page.goto(f"{srv.base_url}/ops?token={srv.token('operator', 'ops')}&order={oid}")
        answer_prompts(page, [rid])
        await page.get_by_role("button", name="Assign to a rider…").click()
        await expect(page.locator("#order-note")).to_have_text(
            f"Order {oid} was assigned to {rid}, but was then cancelled by the restaurant: out of basil")
        assert (await ops.get(oid))["status"] == "cancelled"


async def test_a_far_away_order_does_not_shrink_the_city_to_a_dot(own_redis, start_server, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    srv = start_server(NO_ROUNDS, redis=own_redis)
    ops = Ops(srv)
    ids = [uid(f"r{i}") for i in range(8)]
    couriers = [await rider(srv, rid) for rid in ids]
    page = await new_page(browser)
    try:
        for i, c in enumerate(couriers):
            await c.location(52.52 + 0.004 * (i % 4), 13.40 + 0.03 * (i // 4))
        far, fmid = uid("o-munich"), uid("m-munich")
        assert (await ops.create(far, fmid, pickup={"lat": 48.137, "lng": 11.575},
                                 dropoff={"lat": 48.14, "lng": 11.58})).status_code == 201
        kitchen = await platform_kitchen(srv, fmid)
        await confirm_all(kitchen, far)
        await kitchen.close()
        await page.goto(f"{srv.base_url}/ops?token={srv.token('operator', 'ops')}")
        await expect(page.locator("[data-marker]")).to_have_count(8)
        await expect(page.locator("#outside-text")).to_have_text("1 rider or order is outside this view.")

        async def spread() -> float:  # how far apart the riders are drawn, in screen pixels
            xs: list[Any] = await page.locator("[data-marker]").evaluate_all(
                "ms => ms.map((m) => m.getBoundingClientRect().x)")
            return max(xs) - min(xs)

        before = await spread()
        assert before > 200  # the city fills the map
        await page.get_by_role("button", name="Show all").click()
        await expect(page.locator("#outside-text")).to_have_text("Showing every rider and order.")
        await settles(spread, lambda x: x < before / 5)  # both towns: Berlin is a dot
        await page.get_by_role("button", name="Fit to the busy area").click()
        await settles(spread, lambda x: x > before * 0.9)
        await page.get_by_role("button", name="Zoom in").click()
        await settles(spread, lambda x: x > before * 1.3)
        await page.wait_for_timeout(2500)  # a new snapshot keeps the operator's zoom
        assert await spread() > before * 1.3
        await page.get_by_role("button", name="Fit the map to the fleet").click()
        await settles(spread, lambda x: x < before * 1.1)
        await page.get_by_label("Find a rider").fill(ids[3])  # one of many, by (part of) its id
        await expect(page.locator("#riders tr")).to_have_count(1)
        await expect(page.locator("#riders-shown")).to_have_text("(1 of 8 match)")
        await expect(page.locator("#riders tr")).to_have_attribute("data-rider", ids[3])
    finally:
        await page.context.close()
        for c in couriers:
            await c.close()
        await ops.close()


async def test_an_order_no_round_has_seen_yet_is_not_planned_yet_and_dispatch_is_not_late(own_redis, start_server, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """After a quiet spell (here: no round since the start), a new order is not "late" nor
    "no rider can be planned": no round has looked at it yet."""
    srv = start_server(NO_ROUNDS, redis=own_redis)
    oid, mid = uid("o"), uid("m")
    async with operator_and_rider(srv, uid("r"), browser) as (ops, courier, page):
        await courier.location(PICKUP["lat"] + 0.002, PICKUP["lng"])
        await confirmed_order(srv, ops, oid, mid)
        await page.goto(f"{srv.base_url}/ops?token={srv.token('operator', 'ops')}")
        row = page.locator(f'#waiting tr[data-order="{oid}"]')
        await expect(row.locator("td").nth(3)).to_have_text("not planned yet: the next round will")
        await expect(page.locator("#dispatch-where")).to_have_text(re.compile("^No round yet"))
        await page.wait_for_timeout(2500)  # another snapshot: still not called late
        await expect(page.locator("#dispatch-late")).to_be_hidden()
        assert await row.get_attribute("data-unplanned") is None


async def test_an_id_being_selected_in_a_table_is_not_redrawn_away(own_redis, start_server, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    srv = start_server(NO_ROUNDS, redis=own_redis)
    ops = Ops(srv)
    oid = uid("o")
    page = await new_page(browser)
    try:
        await confirmed_order(srv, ops, oid, uid("m"))
        await page.goto(f"{srv.base_url}/ops?token={srv.token('operator', 'ops')}")
        kitchen_cell = page.locator(f'#waiting tr[data-order="{oid}"] td').nth(1)
        await expect(kitchen_cell).not_to_be_empty()
        await kitchen_cell.select_text()
        selected = await page.evaluate("() => getSelection().toString()")
        assert selected
        await page.wait_for_timeout(4500)  # two snapshots later
        assert await page.evaluate("() => getSelection().toString()") == selected
        await expect(page.locator("#paused")).to_contain_text("a table is paused while text in it is selected")
        await page.evaluate("() => getSelection().removeAllRanges()")
        await expect(page.locator("#paused")).to_be_hidden()
    finally:
        await page.context.close()
        await ops.close()


async def test_orders_no_kitchen_has_confirmed_are_listed_and_can_be_cancelled(own_redis, start_server, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """An order at a restaurant whose board is not open waits for ever unless someone sees it."""
    srv = start_server(NO_ROUNDS, redis=own_redis)
    ops = Ops(srv)
    quiet, busy = uid("m-quiet"), uid("m-busy")
    stuck, fine = uid("o-stuck"), uid("o-fine")
    page = await new_page(browser)
    try:
        assert (await ops.create(stuck, quiet)).status_code == 201
        await confirmed_order(srv, ops, fine, busy)
        snap = (await ops.client.get("/v1/ops/snapshot")).json()
        assert [(o["id"], o["merchant_id"]) for o in snap["kitchen_queue"]] == [(stuck, quiet)]
        assert snap["totals"]["kitchen_queue"] == 1 and snap["truncated"]["kitchen_queue"] is False
        await page.goto(f"{srv.base_url}/ops?token={srv.token('operator', 'ops')}")
        rows = page.locator("#kitchen-queue tr")
        await expect(rows).to_have_count(1)
        await expect(rows.first).to_have_attribute("data-order", stuck)
        await expect(page.locator("#kitchen-shown")).to_have_text("(1)")
        answer_prompts(page, ["the restaurant is closed"])
        await rows.first.locator("[data-open-order]").click()
        await page.get_by_role("button", name="Cancel order").click()
        await expect(page.locator("#order-note")).to_have_text(f"Order {stuck} cancelled.")
        await expect(rows.first).to_have_text("None: every kitchen has confirmed its orders.")  # gone with the next snapshot
        await expect(rows).to_have_count(1)
        assert (await ops.client.get("/v1/ops/snapshot")).json()["kitchen_queue"] == []
        waiting = page.locator("#waiting tr")
        await expect(waiting.first).to_have_attribute("data-order", fine)  # confirmed, and no rounds run here
        assert (await ops.cancel(fine)).status_code == 200
        await expect(waiting.first).to_have_text("None: every confirmed order has a rider.")  # said, not an empty table
    finally:
        await page.context.close()
        await ops.close()


async def test_a_rider_who_keeps_refusing_offers_shows_it(own_redis, start_server, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """Declining takes a moment, so the rider looks "free" at every poll: its refusals of the
    last hour (declined, or left to expire) are counted beside its state."""
    srv = start_server({"TRACKER_DISPATCH_INTERVAL_S": "0.3", "TRACKER_OFFER_TIMEOUT_S": "2",
                        "TRACKER_DECLINE_COOLDOWN_S": "0"}, redis=own_redis)
    rid = uid("r-picky")
    async with operator_and_rider(srv, rid, browser) as (ops, picky, page):
        await picky.location(PICKUP["lat"] + 0.002, PICKUP["lng"])
        await confirmed_order(srv, ops, uid("o"), uid("m"))
        for _ in range(2):
            await picky.decline((await picky.expect("offer", timeout=10))["offer_id"])
        await picky.expect("offer", timeout=10)  # and one left unanswered
        await picky.expect("offer_expired", timeout=10)
        snap = (await ops.client.get("/v1/ops/snapshot")).json()
        assert [(r["id"], r["refused_last_hour"]) for r in snap["riders"]] == [(rid, 3)]
        await page.goto(f"{srv.base_url}/ops?token={srv.token('operator', 'ops')}")
        row = page.locator(f'#riders tr[data-rider="{rid}"]')
        await expect(row).to_contain_text("refused 3 offers in the last hour")
        await expect(row).to_have_attribute("data-refusing", "")
