"""The three pages in a real headless Chromium against a real server."""
from __future__ import annotations

import asyncio
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from tests.orders_helpers import PICKUP, Ops, confirmed_order, customer, merchant, rider
from tracker.launcher import ServerProcess

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = os.environ.get("TRACKER_SCREENSHOT_DIR")


@pytest.fixture(scope="module")
async def browser() -> Browser:
    if not os.path.exists(CHROMIUM):
        pytest.fail("Chromium is missing: scripts/system-deps installs Debian's chromium")
    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield b
        await b.close()


async def new_page(browser: Browser, mobile: bool = False) -> Page:
    size = {"width": 390, "height": 844} if mobile else {"width": 1280, "height": 800}
    context = await browser.new_context(viewport=size)
    return await context.new_page()


async def delayed_to_its_cap(ops: Ops, tablet: Any, oid: str, mid: str) -> None:
    """Create ``oid`` (10 minutes' preparation), confirm it and delay it as often as a kitchen may
    (10 times), each delay's ``food_delayed`` seen on ``tablet`` (the kitchen's socket)."""
    await ops.create(oid, mid, prep_minutes=10)
    await tablet.confirm(oid)
    for _ in range(10):
        await tablet.delay(oid, 1)
    for _ in range(10):
        await tablet.event(oid, "food_delayed")


async def wall_clock(page: Page, ts: int) -> str:
    """A server time as the pages show it ("12:05")."""
    return str(await page.evaluate("(ts) => new Date(ts).toLocaleTimeString([], {hour: '2-digit', minute: '2-digit'})", ts))


async def shot(page: Page, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(Path(SHOTS) / f"{name}.png"), full_page=True)


async def test_customer_page_follows_the_order_and_recovers_after_a_cut(start_server, server: ServerProcess, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]
    page_server = start_server()  # the page's own server; `server` keeps the order moving while it is down
    ops = Ops(server)
    oid, mid, rid = uid("o"), uid("m"), uid("r")
    kitchen = await merchant(server, mid)
    courier = await rider(server, rid)
    page = await new_page(browser, mobile=True)
    try:
        await ops.create(oid, mid)
        await page.goto(f"{page_server.base_url}/track/{oid}?token={page_server.token('customer', oid)}")
        await expect(page.locator("#status")).to_have_attribute("data-status", "placed")
        await kitchen.confirm(oid)
        await expect(page.locator("#status")).to_have_attribute("data-status", "confirmed")
        await expect(page.locator('#timeline li[data-kind="confirmed"]')).to_have_class("done")
        lat, lng = PICKUP["lat"] - 0.004, PICKUP["lng"]
        await courier.location(lat, lng)
        await ops.assign(oid, rid)
        await expect(page.locator("#status")).to_have_attribute("data-status", "assigned")
        marker = page.locator('[data-marker="rider"]')
        positions = []
        for i in range(1, 4):
            await asyncio.sleep(1.05)
            await courier.location(lat + i * 0.0002, lng)
            await expect(marker).to_have_attribute("data-lat", str(lat + i * 0.0002))
            await page.wait_for_timeout(950)  # the marker glides there
            positions.append(float(await marker.get_attribute("cy")))
        assert positions[0] > positions[1] > positions[2]  # moving north = up the screen
        await expect(page.locator("#eta")).to_contain_text("min")
        await shot(page, "track")
        # cut the page's connection: its server goes away while the order moves on
        await asyncio.to_thread(page_server.stop)
        await expect(page.locator("#offline")).to_be_visible()
        await courier.progress(oid, "at_pickup")
        await courier.progress(oid, "picked_up")
        await asyncio.to_thread(page_server.start)
        await expect(page.locator("#offline")).to_be_hidden(timeout=20_000)
        await expect(page.locator("#status")).to_have_attribute("data-status", "picked_up")
        await expect(page.locator('#timeline li[data-kind="at_pickup"]')).to_have_class("done")
        await courier.progress(oid, "at_dropoff")
        await courier.progress(oid, "delivered")
        await expect(page.locator("#status")).to_have_attribute("data-status", "delivered")
        await expect(marker).to_have_count(0)  # no rider on the map after delivery
        await expect(page.locator("#eta-label")).to_have_text("Delivered at")
        await expect(page.locator("#eta")).to_have_text(re.compile(r"\d{1,2}:\d{2}"))
        # the kitchen never pressed "Ready": the step is left out, neither ticked (it never
        # happened) nor left waiting (the food was collected)
        await expect(page.locator('#timeline li[data-kind="food_ready"]')).to_have_count(0)
        await expect(page.locator("#timeline li:not(.done)")).to_have_count(0)
    finally:
        await page.context.close()
        await kitchen.close()
        await courier.close()
        await ops.close()


async def test_customer_page_says_when_the_riders_position_is_old(own_redis, start_server, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]
    srv = start_server({"TRACKER_STALE_AFTER_S": "2"}, redis=own_redis)
    ops = Ops(srv)
    oid, mid, rid = uid("o"), uid("m"), uid("r")
    courier = await rider(srv, rid)
    page = await new_page(browser, mobile=True)
    try:
        await courier.location(PICKUP["lat"] - 0.004, PICKUP["lng"])
        await ops.create(oid, mid)
        kitchen = await merchant(srv, mid)
        await kitchen.confirm(oid)
        await kitchen.event(oid, "confirmed")
        await kitchen.close()
        assert (await ops.assign(oid, rid)).status_code == 200
        await page.goto(f"{srv.base_url}/track/{oid}?token={srv.token('customer', oid)}")
        note = page.locator("#rider-note")
        await expect(page.locator("#status")).to_have_attribute("data-status", "assigned")
        await expect(page.locator('[data-marker="rider"]')).to_have_count(1)  # where it was last seen
        await expect(note).to_contain_text("last updated under a minute ago", timeout=6000)  # and how long ago
        dot = page.locator('[data-marker="rider"]')
        await expect(dot).to_have_attribute("data-stale", "yes")  # the old position's dot is faded
        await courier.location(PICKUP["lat"] - 0.003, PICKUP["lng"])
        await expect(note).to_be_hidden(timeout=5000)
        await expect(dot).to_have_attribute("data-stale", "no")
        await expect(note).to_contain_text("last updated", timeout=6000)  # then the phone goes quiet
        await page.reload()  # a reload still shows where the rider was last seen, and how long ago
        await expect(page.locator('[data-marker="rider"]')).to_have_count(1)
        await expect(note).to_contain_text("last updated under a minute ago", timeout=6000)
        await courier.location(PICKUP["lat"] - 0.002, PICKUP["lng"])
        await expect(note).to_be_hidden(timeout=5000)  # and is back
    finally:
        await page.context.close()
        await courier.close()
        await ops.close()


async def test_the_second_order_of_a_riders_trip_says_a_delivery_comes_first(own_redis, start_server, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]
    """A rider carries two orders of one kitchen: the customer of the one delivered second is told
    why the rider heads elsewhere first (the channel's stops_before, the page's note), the
    customer of the first is not; once the first is delivered the note goes."""
    srv = start_server({"TRACKER_DISPATCH_INTERVAL_S": "3600"}, redis=own_redis)  # (orders handed out by hand)
    ops = Ops(srv)
    mid, rid = uid("m"), uid("r")
    first, second = uid("o1"), uid("o2")
    courier = await rider(srv, rid)
    page = await new_page(browser, mobile=True)
    try:
        for oid in (first, second):
            await confirmed_order(srv, ops, oid, mid)
            assert (await ops.assign(oid, rid)).status_code == 200  # the first assigned goes first
        watchers = {oid: await customer(srv, oid) for oid in (first, second)}
        await page.goto(f"{srv.base_url}/track/{second}?token={srv.token('customer', second)}")
        await courier.location(PICKUP["lat"] - 0.004, PICKUP["lng"])
        for oid, before in ((first, 0), (second, 1)):
            while (frame := await watchers[oid].next())["type"] != "rider_location":
                pass
            assert frame["stops_before"] == before, frame
        note = page.locator("#stops-note")
        await expect(note).to_have_text("Your rider is delivering another order first.")
        for step in ("at_pickup", "picked_up", "at_dropoff", "delivered"):
            await courier.progress(first, step)
        await courier.progress(second, "at_pickup")
        await courier.progress(second, "picked_up")
        await courier.location(PICKUP["lat"] - 0.003, PICKUP["lng"])
        await expect(note).to_be_hidden(timeout=5000)  # its own delivery is next now
        for watcher in watchers.values():
            await watcher.close()
    finally:
        await page.context.close()
        await courier.close()
        await ops.close()


async def test_customer_page_drops_rider_and_eta_when_the_order_is_taken_back(server: ServerProcess, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]
    ops = Ops(server)
    oid, mid, rid = uid("o"), uid("m"), uid("r")
    kitchen = await merchant(server, mid)
    courier = await rider(server, rid)
    page = await new_page(browser, mobile=True)
    try:
        await ops.create(oid, mid)
        await kitchen.confirm(oid)
        await kitchen.event(oid, "confirmed")
        await page.goto(f"{server.base_url}/track/{oid}?token={server.token('customer', oid)}")
        await expect(page.locator("#status")).to_have_attribute("data-status", "confirmed")
        await courier.location(PICKUP["lat"] - 0.004, PICKUP["lng"])
        assert (await ops.assign(oid, rid)).status_code == 200
        for i in range(1, 4):  # a rider streams about one fix a second
            await asyncio.sleep(1.05)
            await courier.location(PICKUP["lat"] - 0.004 + i * 0.0005, PICKUP["lng"])
        await expect(page.locator("#eta")).to_contain_text("min")
        await courier.progress(oid, "at_pickup")
        await expect(page.locator('#timeline li[data-kind="at_pickup"]')).to_have_class("done")
        taken = await ops.client.post(f"/v1/orders/{oid}/unassign", json={"reason": "rider fell ill"})
        assert taken.status_code == 200, taken.text
        await expect(page.locator("#status")).to_have_attribute("data-status", "confirmed")
        await expect(page.locator("#status")).to_have_text(re.compile("finding another rider"))  # not a silent step back
        await expect(page.locator('[data-marker="rider"]')).to_have_count(0)
        await expect(page.locator("#eta")).to_have_text("finding a rider")
        await page.reload()  # the history says so too
        await expect(page.locator("#status")).to_have_text(re.compile("finding another rider"))
        await expect(page.locator('#timeline li[data-kind="at_pickup"]')).not_to_have_class("done")
    finally:
        await page.context.close()
        await kitchen.close()
        await courier.close()
        await ops.close()


async def test_customer_page_waits_for_room_when_its_order_has_too_many_watchers(start_server, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]
    srv = start_server({"TRACKER_MAX_SOCKETS_PER_SUBJECT": "1"})
    ops = Ops(srv)
    oid = uid("o")
    await ops.create(oid, uid("m"))
    other = await customer(srv, oid)  # someone already watches the order: no room for the page
    page = await new_page(browser)
    try:
        await page.goto(f"{srv.base_url}/track/{oid}?token={srv.token('customer', oid)}")
        await expect(page.locator("body")).to_have_attribute("data-online", "no")  # offline, still trying
        await expect(page.locator("#fatal")).to_be_hidden()  # not "your link is not valid"
        await other.close()
        await expect(page.locator("body")).to_have_attribute("data-online", "yes", timeout=15000)
        await expect(page.locator("#status")).to_have_attribute("data-status", "placed")
    finally:
        await page.context.close()
        await ops.close()


async def test_merchant_page_confirms_and_shows_a_prompt(server: ServerProcess, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]
    ops = Ops(server)
    oid, mid, rid = uid("o"), uid("m"), uid("r")
    courier = await rider(server, rid)
    page = await new_page(browser)
    try:
        await page.goto(f"{server.base_url}/merchant?token={server.token('merchant', mid)}")
        await expect(page.locator("body")).to_have_attribute("data-online", "yes")
        await ops.create(oid, mid, prep_minutes=15)
        row = page.locator(f'tr[data-order="{oid}"]')
        await expect(row).to_have_attribute("data-status", "placed")
        await page.get_by_role("button", name=f"Confirm {oid}").click()
        await expect(row).to_have_attribute("data-status", "confirmed")
        assert (await ops.get(oid))["status"] == "confirmed"
        await ops.assign(oid, rid)
        await courier.location(PICKUP["lat"] + 0.01, PICKUP["lng"])  # ~1.1 km: inside 15 min of prep
        prompt = page.locator(f'.prompt[data-order="{oid}"][data-kind="start_preparing"]')
        await expect(prompt).to_contain_text("start plating")
        rider_cell = row.locator("td").nth(4)
        await expect(rider_cell).to_have_text(re.compile(r"^[34] min away$"))  # 1.1 km at 5 m/s
        await page.reload()  # the kitchen's tablet reloads: the prompt is still there
        await expect(prompt).to_contain_text("start plating")
        await expect(rider_cell).to_have_text(re.compile(r"^[34] min away$"))
        await shot(page, "merchant")
        await page.get_by_role("button", name=f"Delay 5 min {oid}").click()
        ready_at = None
        for _ in range(50):
            ready_at = (await ops.get(oid))["ready_at"]
            if ready_at:
                break
            await asyncio.sleep(0.1)
        shown = await wall_clock(page, ready_at)
        await expect(row.locator("td").nth(2)).to_have_text(f"delayed to {shown}")  # the new ready time
        await page.get_by_role("button", name=f"Ready {oid}").click()
        await expect(row.locator("td").nth(2)).to_have_text("ready")
        await courier.progress(oid, "at_pickup")
        await expect(page.locator(f'.prompt[data-order="{oid}"]')).to_have_count(0)  # moot: the rider is there
        await expect(rider_cell).to_have_text("at the counter")
        await courier.progress(oid, "picked_up")
        await expect(row.locator("td").nth(2)).to_have_text("collected")
    finally:
        await page.context.close()
        await courier.close()
        await ops.close()


async def test_kitchen_board_shows_the_ready_time_of_an_order_delayed_before_its_confirm(server: ServerProcess, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]
    """Another tablet delays an order the kitchen has not confirmed: the row says "delayed 5 min",
    and once confirmed, the ready time counted from the confirm (preparation plus the delay)."""
    ops = Ops(server)
    oid, mid = uid("o"), uid("m")
    tablet = await merchant(server, mid)
    page = await new_page(browser)
    try:
        await page.goto(f"{server.base_url}/merchant?token={server.token('merchant', mid)}")
        await expect(page.locator("body")).to_have_attribute("data-online", "yes")
        await ops.create(oid, mid, prep_minutes=30)
        row = page.locator(f'tr[data-order="{oid}"]')
        await expect(row).to_have_attribute("data-status", "placed")
        await tablet.delay(oid, 5)
        food = row.locator("td").nth(2)
        await expect(food).to_have_text("delayed 5 min")
        await page.get_by_role("button", name=f"Confirm {oid}").click()
        await expect(row).to_have_attribute("data-status", "confirmed")
        order = await ops.get(oid)
        assert order["expected_ready_at"] == order["confirmed_at"] + 35 * 60_000, order
        shown = await wall_clock(page, order["expected_ready_at"])
        await expect(food).to_have_text(f"preparing, ready {shown}")
    finally:
        await page.context.close()
        await tablet.close()
        await ops.close()


async def test_kitchen_board_says_plainly_when_an_order_was_delayed_too_often(server: ServerProcess, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]
    """An order its kitchen delayed 10 times: its Delay button is greyed, a press of it says why
    in words and what to do instead (cancel), not "press again", and sends nothing."""
    ops = Ops(server)
    oid, mid = uid("o"), uid("m")
    tablet = await merchant(server, mid)
    page = await new_page(browser)
    try:
        await delayed_to_its_cap(ops, tablet, oid, mid)
        await page.goto(f"{server.base_url}/merchant?token={server.token('merchant', mid)}")
        await expect(page.locator(f'tr[data-order="{oid}"]')).to_have_attribute("data-status", "confirmed")
        delay = page.get_by_role("button", name=f"Delay 5 min {oid}")
        await expect(delay).to_have_attribute("aria-disabled", "true")
        await delay.click(force=True)  # (greyed, but a finger can still press it)
        refused = page.locator('#prompts .prompt[data-code="too_many_delays"]')
        await expect(refused).to_have_text(f"Order {oid}: not done: its food was delayed as many times as an order may "
                                           "be; if it cannot be made, cancel the order.")
        assert len([e for e in (await ops.get(oid))["events"] if e["kind"] == "food_delayed"]) == 10
    finally:
        await page.context.close()
        await tablet.close()
        await ops.close()


async def test_kitchen_cancels_an_order_it_cannot_make_and_says_why(server: ServerProcess, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]
    ops = Ops(server)
    oid, mid = uid("o"), uid("m")
    page = await new_page(browser)
    # first the kitchen thinks better of it, then says too much (it is asked again, its words kept)
    answers: list[str | None] = [None, "out of salmon " + "x" * 300, "out of salmon"]
    asked: list[str] = []
    kept: list[str] = []

    async def answer(dialog) -> None:  # type: ignore[no-untyped-def]
        said = answers.pop(0)
        assert oid in dialog.message and "200 characters" in dialog.message
        asked.append(dialog.message)
        kept.append(dialog.default_value)
        await (dialog.dismiss() if said is None else dialog.accept(said))

    page.on("dialog", answer)
    try:
        await page.goto(f"{server.base_url}/merchant?token={server.token('merchant', mid)}")
        await expect(page.locator("body")).to_have_attribute("data-online", "yes")
        assert (await ops.create(oid, mid)).status_code == 201
        row = page.locator(f'tr[data-order="{oid}"]')
        await expect(row.locator("td").nth(2)).to_have_text("–")  # not confirmed: nothing cooking yet
        await page.get_by_role("button", name=f"Confirm {oid}").click()
        await expect(row).to_have_attribute("data-status", "confirmed")
        await expect(row.locator("td").nth(2)).to_have_text("preparing")
        await page.wait_for_timeout(500)  # (right after a press, a row whose buttons changed does not act for 0.4 s)
        await page.get_by_role("button", name=f"Cancel order {oid}").click()
        await asyncio.sleep(0.5)
        assert (await ops.get(oid))["status"] == "confirmed"  # dismissed: nothing cancelled
        await page.get_by_role("button", name=f"Cancel order {oid}").click()
        await expect(row.locator("td").nth(1)).to_have_text("cancelled by the restaurant: out of salmon")
        assert asked[-1].startswith("At most 200 characters, please (314 now)."), asked
        assert kept[-1].startswith("out of salmon xxx"), kept  # the long reason was offered back to edit
        await expect(row.get_by_role("button")).to_have_count(0)
        order = await ops.get(oid)
        assert order["status"] == "cancelled" and order["events"][-1]["reason"] == "out of salmon"
        tracking = await new_page(browser, mobile=True)
        try:
            await tracking.goto(f"{server.base_url}/track/{oid}?token={server.token('customer', oid)}")
            await expect(tracking.locator("#status")).to_have_text("Cancelled by the restaurant: out of salmon")
        finally:
            await tracking.context.close()
    finally:
        await page.context.close()
        await ops.close()


async def test_operator_opens_a_kitchens_board_by_its_id(server: ServerProcess, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]
    ops = Ops(server)
    oid, mid = uid("o"), uid("m")
    page = await new_page(browser)
    try:
        await ops.create(oid, mid)
        await page.goto(f"{server.base_url}/merchant?token={server.token('operator', 'ops')}&merchant_id={mid}")
        row = page.locator(f'tr[data-order="{oid}"]')
        await expect(row).to_have_attribute("data-status", "placed")
        await page.get_by_role("button", name=f"Confirm {oid}").click()
        await expect(row).to_have_attribute("data-status", "confirmed")
    finally:
        await page.context.close()
        await ops.close()


async def hexagons_outside_the_map(page: Page) -> list[str]:
    """The ops map's hexagons with a corner outside the drawing (viewBox 800 x 600)."""
    return await page.evaluate("""() => [...document.querySelectorAll('[data-cell]')]
        .filter((p) => p.getAttribute('points').split(' ').some((xy) => {
            const [x, y] = xy.split(',').map(Number);
            return x < 0 || x > 800 || y < 0 || y > 600;
        })).map((p) => p.dataset.cell)""")


async def test_ops_page_shows_riders_and_hexagons(server: ServerProcess, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]
    ops = Ops(server)
    mid = uid("m")
    riders = [await rider(server, uid(f"r{i}")) for i in range(3)]
    page = await new_page(browser)
    try:
        for i, r in enumerate(riders):
            await r.location(PICKUP["lat"] + 0.003 * i, PICKUP["lng"] + 0.002)
        oid = uid("o")
        await ops.create(oid, mid)
        kitchen = await merchant(server, mid)
        await kitchen.confirm(oid)
        await kitchen.close()
        await page.goto(f"{server.base_url}/ops?token={server.token('operator', 'ops')}")
        await expect(page.locator("[data-marker]")).not_to_have_count(0)
        await expect(page.locator("[data-cell]")).not_to_have_count(0)
        await expect(page.locator('[data-figure="riders online"] b')).not_to_have_text("0")
        waiting = page.locator(f'[data-id="kitchen:{mid}"] title')  # where the order waits, and how many
        await expect(waiting).to_have_text(f"{mid}: 1 order waiting for a rider")
        await shot(page, "ops")
    finally:
        await page.context.close()
        for r in riders:
            await r.close()
        await ops.close()


async def test_ops_page_says_when_no_rider_is_online(start_server, browser: Browser) -> None:  # type: ignore[no-untyped-def]
    """Before: the Riders table showed only its header ("Riders (0)"); its neighbours say "None: ..."."""
    srv = start_server(shared_redis=False)  # (a Redis of its own: no other test's riders)
    page = await new_page(browser)
    try:
        await page.goto(f"{srv.base_url}/ops?token={srv.token('operator', 'ops')}")
        await expect(page.locator("#riders tr")).to_have_text(["None: no rider is online."])
        await expect(page.locator("#waiting tr")).to_have_text(["None: every confirmed order has a rider."])  # as its neighbours
    finally:
        await page.context.close()


async def test_customer_page_shows_the_orders_eta_on_load(server: ServerProcess, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]
    """A reload shows the order's ETA at once, without waiting for the rider's next fix."""
    ops = Ops(server)
    oid, mid, rid = uid("o"), uid("m"), uid("r")
    kitchen = await merchant(server, mid)
    courier = await rider(server, rid)
    page = await new_page(browser, mobile=True)
    try:
        await ops.create(oid, mid)
        await kitchen.confirm(oid)
        await kitchen.event(oid, "confirmed")
        await courier.location(PICKUP["lat"] - 0.004, PICKUP["lng"])
        assert (await ops.assign(oid, rid)).status_code == 200
        for _ in range(50):  # the ETA is worked out as the order is assigned
            order = await ops.get(oid)
            if order["eta"]:
                break
            await asyncio.sleep(0.1)
        assert order["eta"], order
        # the rider now stands still and sends nothing: only the order itself has the ETA
        await page.goto(f"{server.base_url}/track/{oid}?token={server.token('customer', oid)}")
        await expect(page.locator("#status")).to_have_attribute("data-status", "assigned")
        await expect(page.locator("#eta")).to_have_text(re.compile(r"^\d+ min$"), timeout=3000)
        health = (await ops.client.get("/healthz")).json()
        shown = int((await page.locator("#eta").text_content() or "").split()[0])
        assert abs(shown - (order["eta"] - health["ts"]) / 60000) <= 1.5, (shown, order["eta"], health["ts"])
    finally:
        await page.context.close()
        await kitchen.close()
        await courier.close()
        await ops.close()


async def test_customer_page_counts_down_and_says_late_when_the_rider_goes_quiet(own_redis, start_server, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]
    """The rider's phone goes quiet after the assignment: the ETA keeps counting down on the
    page's clock, and once it has passed the page says the rider is late, not "8 min" next to
    "last updated 8 min ago". The server's clock runs 60 times faster: a minute is 1 s."""
    # (a scaled clock: a Redis of its own; the silent rider keeps the order: after 5 of its
    # minutes the service would give it to another, which another test checks)
    fast = start_server({"TRACKER_TIME_SCALE": "60", "TRACKER_SILENT_TAKE_BACK_S": "0"}, redis=own_redis)
    ops = Ops(fast)
    oid, mid, rid = uid("o"), uid("m"), uid("r")
    courier = await rider(fast, rid)
    page = await new_page(browser, mobile=True)
    try:
        await confirmed_order(fast, ops, oid, mid)
        await courier.location(PICKUP["lat"] - 0.004, PICKUP["lng"])
        assert (await ops.assign(oid, rid)).status_code == 200
        await page.goto(f"{fast.base_url}/track/{oid}?token={fast.token('customer', oid)}")
        eta = page.locator("#eta")
        await expect(eta).to_have_text(re.compile(r"^\d+ min$"), timeout=5000)
        first = int((await eta.text_content() or "").split()[0])
        assert first >= 3, first
        await expect(eta).not_to_have_text(f"{first} min", timeout=5000)  # no new fix: it runs down all the same
        await expect(eta).to_have_text("later than estimated", timeout=(first + 3) * 1000 + 15_000)
        await expect(page.locator("#eta-label")).to_have_text("Arriving")
    finally:
        await page.context.close()
        await courier.close()
        await ops.close()


async def test_merchant_page_lets_finished_orders_go(own_redis, start_server, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]
    """A cancelled (or delivered) order stays about a minute, then leaves the board; one that
    finished longer ago does not come back with the feed replayed on load. The server's clock
    runs 30 times faster here, so a minute of it is 2 s."""
    fast = start_server({"TRACKER_TIME_SCALE": "30"}, redis=own_redis)  # (a scaled clock: a Redis of its own)
    ops = Ops(fast)
    mid = uid("m")
    old, live = uid("o-old"), uid("o-live")
    page = await new_page(browser)
    try:
        assert (await ops.create(old, mid)).status_code == 201
        assert (await ops.cancel(old)).status_code == 200
        assert (await ops.create(live, mid)).status_code == 201
        await asyncio.sleep(2.5)  # over a minute of the server's time: the cancellation is old news
        await page.goto(f"{fast.base_url}/merchant?token={fast.token('merchant', mid)}")
        live_row, old_row = page.locator(f'tr[data-order="{live}"]'), page.locator(f'tr[data-order="{old}"]')
        await expect(live_row).to_have_attribute("data-status", "placed")  # the replay reached the newest order
        await expect(old_row).to_have_count(0)
        cancelled = await ops.client.post(f"/v1/orders/{live}/cancel", json={"reason": "customer moved away"})
        assert cancelled.status_code == 200, cancelled.text
        await expect(live_row).to_have_attribute("data-status", "cancelled")  # seen as it happens...
        await expect(live_row.locator("td").nth(1)).to_have_text("cancelled by the service: customer moved away")
        await expect(live_row.locator("td").nth(2)).to_have_text("not needed")  # not "preparing": stop cooking
        await expect(live_row).to_have_count(0, timeout=8000)  # ...and gone after its minute
        await expect(page.locator("#no-orders")).to_have_text("No open orders: new ones appear here as they come in.")
        newest = uid("o-new")
        assert (await ops.create(newest, mid)).status_code == 201
        await page.reload()  # the feed is replayed: only the open order is on the board
        await expect(page.locator(f'tr[data-order="{newest}"]')).to_have_attribute("data-status", "placed")
        await expect(page.locator("#orders tr")).to_have_count(1)
        await expect(page.locator("#no-orders")).to_be_hidden()
    finally:
        await page.context.close()
        await ops.close()


async def test_ops_page_keeps_a_silent_rider_who_carries_food(own_redis, start_server, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]
    srv = start_server({"TRACKER_DISPATCH_INTERVAL_S": "0.3", "TRACKER_STALE_AFTER_S": "2"}, redis=own_redis)
    ops = Ops(srv)
    oid, mid, rid = uid("o"), uid("m"), uid("r")
    courier = await rider(srv, rid)
    page = await new_page(browser)
    try:
        await courier.location(PICKUP["lat"] + 0.002, PICKUP["lng"])
        await page.goto(f"{srv.base_url}/ops?token={srv.token('operator', 'ops')}")
        await expect(page.locator("[data-cell]")).to_have_count(1)
        assert await hexagons_outside_the_map(page) == []  # one rider: the view still shows its whole cell
        await ops.create(oid, mid)
        kitchen = await merchant(srv, mid)
        await kitchen.confirm(oid)
        await kitchen.close()
        await courier.accept((await courier.expect("offer"))["offer_id"])
        await courier.expect("assigned")
        row = page.locator(f'tr[data-rider="{rid}"]')
        await expect(row).to_contain_text("busy")
        await asyncio.sleep(2.5)  # the rider's phone goes quiet with the food on board
        await expect(row).to_contain_text("busy, silent", timeout=5000)
        await expect(page.locator(f'[data-marker="{rid}"] title')).to_contain_text("busy, silent")  # on hover too
        await expect(page.locator('[data-figure="riders silent with orders"] b')).to_have_text("1")
        await expect(page.locator('[data-figure="riders online"] b')).to_have_text("0")
        snap = (await ops.client.get("/v1/ops/snapshot")).json()
        assert [(r["id"], r["state"], r["stale"]) for r in snap["riders"]] == [(rid, "busy", True)]
        for step in ("at_pickup", "picked_up", "at_dropoff", "delivered"):
            await courier.progress(oid, step)
        await expect(row).to_have_count(0, timeout=5000)  # delivered: nothing left to worry about
    finally:
        await page.context.close()
        await courier.close()
        await ops.close()
