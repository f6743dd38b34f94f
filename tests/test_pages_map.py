"""The ops page's map as an operator works with it, in a real headless Chromium against a real
server: a finger on a phone opens an order from its restaurant's mark and finds a rider in the
Riders table from its dot (a 44 px target, not the dot alone); riders are drawn over the orders
at their restaurant; placed orders are on the map apart from those waiting for a rider, as its
legend says; an order whose kitchen delayed the food says so on the map, in its table and in
the Order panel; and so does the rider sent for such an order, in its row and on its dot."""
from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from playwright.async_api import Browser, Page, expect

from tests.orders_helpers import PICKUP, Ops, merchant, rider
from tests.test_pages import browser, wall_clock  # noqa: F401 - the module's Chromium fixture
from tracker.launcher import ServerProcess

QUIET = {"TRACKER_DISPATCH_INTERVAL_S": "3600"}  # no dispatch round: orders stay where the test puts them
ELSEWHERE = {"lat": PICKUP["lat"] + 0.006, "lng": PICKUP["lng"] - 0.008}  # a second restaurant


async def phone(browser: Browser, url: str) -> Page:  # noqa: F811
    """A touch phone's page (390 x 844)."""
    context = await browser.new_context(viewport={"width": 390, "height": 844}, has_touch=True, is_mobile=True)
    page = await context.new_page()
    await page.goto(url)
    return page


async def centre(page: Page, selector: str) -> tuple[float, float]:
    """Where ``selector`` is on screen (its centre), once it is scrolled into view."""
    await page.locator(selector).scroll_into_view_if_needed()
    box = await page.locator(selector).bounding_box()
    assert box is not None, selector
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


async def hit_at(page: Page, x: float, y: float) -> dict[str, Any]:
    """What a press at (x, y) lands on: the order or rider it opens, and the element's data-id."""
    return dict(await page.evaluate("""([x, y]) => {
        const el = document.elementFromPoint(x, y);
        return { order: el?.dataset.openOrder ?? null, rider: el?.dataset.selectRider ?? null, id: el?.dataset.id ?? null };
    }""", [x, y]))


def contrast(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """WCAG contrast ratio of two sRGB colours (0-255 channels)."""
    def lum(c: tuple[float, ...]) -> float:
        lin = [(v / 255 / 12.92) if v / 255 <= 0.04045 else ((v / 255 + 0.055) / 1.055) ** 2.4 for v in c[:3]]
        return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]
    hi, lo = sorted((lum(a), lum(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


async def ring_colours(page: Page, selector: str) -> dict[str, Any]:
    """The colours of a map dot as drawn: its fill (``dot``), its outline (``ring``), the colours
    of any edge drawn around that outline (``edge``: drop shadows), and the map's background."""
    found = await page.evaluate("""(sel) => {
        const el = document.querySelector(sel), css = getComputedStyle(el);
        const rgb = (s) => (s.match(/rgba?\\([^)]*\\)/g) || []).map((c) => c.match(/[\\d.]+/g).slice(0, 3).map(Number));
        const probe = document.createElement('span'); probe.style.color = el.getAttribute('fill'); document.body.append(probe);
        const dot = rgb(getComputedStyle(probe).color)[0]; probe.remove();
        return { dot, ring: rgb(css.stroke)[0], edge: rgb(css.filter),
                 map: rgb(getComputedStyle(document.getElementById('map')).backgroundColor)[0] };
    }""", selector)
    assert found["edge"], found  # (an edge is drawn)
    return {k: (tuple(v) if k != "edge" else [tuple(e) for e in v]) for k, v in found.items()}


async def test_a_finger_opens_an_order_from_its_mark_and_finds_a_rider_from_its_dot(own_redis, start_server, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    srv = start_server(QUIET, redis=own_redis)
    ops = Ops(srv)
    mid, oid, rid = uid("m"), uid("o"), uid("r")
    kitchen, courier = await merchant(srv, mid), await rider(srv, rid)
    page = await phone(browser, "about:blank")
    try:
        await courier.location(PICKUP["lat"] - 0.006, PICKUP["lng"] + 0.006)  # away from the restaurant
        await ops.create(oid, mid)
        await kitchen.confirm(oid)
        await kitchen.event(oid, "confirmed")
        await page.goto(f"{srv.base_url}/ops?token={srv.token('operator', 'ops')}")
        mark = f'.order-waiting[data-open-order="{oid}"]'
        await expect(page.locator(mark)).to_have_count(1)
        x, y = await centre(page, mark)
        # a press 18 px off the mark's centre still lands on it (a dot alone is a few px wide on a phone)
        assert (await hit_at(page, x + 18, y))["order"] == oid
        assert (await hit_at(page, x, y + 30))["order"] is None  # (but not anywhere)
        await page.touchscreen.tap(x + 18, y)
        summary = page.locator("#order-summary")
        await expect(summary).to_contain_text(f"{oid}: confirmed")  # the Order panel the tables open
        await expect(summary).to_be_focused()
        dot = f'[data-marker="{rid}"]'
        x, y = await centre(page, dot)
        assert (await hit_at(page, x - 18, y))["rider"] == rid
        await page.touchscreen.tap(x - 18, y)
        row = page.locator(f'#riders tr[data-rider="{rid}"]')
        await expect(row).to_have_attribute("data-selected", "")
        await expect(row).to_be_focused()
        await expect(row).to_be_in_viewport()
        await expect(page.locator("#rider-note")).to_have_text(f"Rider {rid} selected on the map: free, 0 orders.")
        await expect(page.locator(dot)).to_have_attribute("data-selected", "")  # ringed on the map
        # from the keyboard, the order's link in its table opens the same panel
        await page.locator("#order-id").fill("")
        await page.get_by_role("button", name=f"Order {oid}: open").first.focus()
        await page.keyboard.press("Enter")
        await expect(summary).to_be_focused()
        assert await page.locator('[data-layer="hits"]').get_attribute("aria-hidden") == "true"  # not read out
    finally:
        await page.context.close()
        await kitchen.close()
        await courier.close()
        await ops.close()


async def test_riders_are_drawn_over_the_orders_and_placed_orders_have_their_own_mark(own_redis, start_server, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    srv = start_server(QUIET, redis=own_redis)
    ops = Ops(srv)
    mid, other = uid("m"), uid("m-new")
    waiting, placed, rid = uid("o-wait"), uid("o-placed"), uid("r")
    kitchen, courier = await merchant(srv, mid), await rider(srv, rid)
    page = await phone(browser, "about:blank")
    try:
        await courier.location(PICKUP["lat"], PICKUP["lng"])  # standing at the restaurant
        await ops.create(waiting, mid)
        await kitchen.confirm(waiting)
        await kitchen.event(waiting, "confirmed")
        await ops.create(placed, other, pickup=ELSEWHERE)  # not confirmed by its kitchen
        await page.goto(f"{srv.base_url}/ops?token={srv.token('operator', 'ops')}")
        order_mark, rider_dot = f'[data-id="kitchen:{mid}"]', f'[data-marker="{rid}"]'
        await expect(page.locator(rider_dot)).to_have_count(1)
        await expect(page.locator(order_mark)).to_have_count(1)
        x, y = await centre(page, rider_dot)
        assert (await hit_at(page, x, y))["rider"] == rid  # the rider is on top
        box = await page.locator(order_mark).bounding_box()
        assert box is not None
        corner = (box["x"] + 1.5, box["y"] + 1.5)  # the order's mark shows around it
        assert (await hit_at(page, *corner))["id"] == f"kitchen:{mid}", await hit_at(page, *corner)
        # the placed order: its own mark, the legend's, and it opens like the others
        mark = page.locator(f'[data-id="placed:{other}"]')
        await expect(mark).to_have_class(re.compile(r"\border-placed\b"))
        await expect(mark).to_have_attribute("data-open-order", placed)
        await expect(mark.locator("title")).to_have_text(f"{other}: 1 order waiting for the kitchen to confirm")
        await expect(page.locator(".legend .order-placed")).to_have_text(re.compile("placed, waiting for the kitchen to confirm"))
        await page.get_by_text("Legend", exact=True).click()  # (folded on a phone)
        await expect(page.locator(".legend .order-waiting")).to_be_visible()
        await page.touchscreen.tap(*await centre(page, f'[data-id="placed:{other}"]'))
        await expect(page.locator("#order-summary")).to_contain_text(f"{placed}: placed")
        await kitchen.close()
        kitchen = await merchant(srv, other)
        await kitchen.confirm(placed)  # confirmed: now waiting for a rider, in that mark
        await expect(page.locator(f'[data-id="kitchen:{other}"]')).to_have_class(re.compile(r"\border-waiting\b"))
        await expect(mark).to_have_count(0)
    finally:
        await page.context.close()
        await kitchen.close()
        await courier.close()
        await ops.close()


async def test_a_kitchen_delay_shows_on_the_map_in_the_waiting_table_and_the_order_panel(own_redis, start_server, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    srv = start_server(QUIET, redis=own_redis)
    ops = Ops(srv)
    mid, oid, on_time = uid("m"), uid("o"), uid("o-on-time")
    kitchen = await merchant(srv, mid)
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    page = await context.new_page()
    try:
        for order in (oid, on_time):
            await ops.create(order, mid, prep_minutes=10)
            await kitchen.confirm(order)
            await kitchen.event(order, "confirmed")
        await kitchen.delay(oid, 5)
        delayed = await kitchen.event(oid, "food_delayed")
        await kitchen.delay(oid, 3)
        delayed = await kitchen.event(oid, "food_delayed")
        snap = (await ops.client.get("/v1/ops/snapshot")).json()
        listed = {o["id"]: o for o in snap["open_orders"]}
        assert listed[oid]["food_delayed_at"] == delayed["ts"] and listed[oid]["food_ready_at"] is None
        assert listed[on_time]["food_delayed_at"] is None
        await page.goto(f"{srv.base_url}/ops?token={srv.token('operator', 'ops')}")
        ready = await wall_clock(page, delayed["ready_at"])
        mark = page.locator(f'[data-id="kitchen:{mid}"]')  # the kitchen's two orders: one delayed
        await expect(mark).to_have_class(re.compile(r"\border-delayed\b"))
        await expect(mark.locator("title")).to_have_text(f"{mid}: 2 orders waiting for a rider, 1 with food delayed by the kitchen, ready {ready}")
        await expect(mark).to_have_attribute("data-open-order", oid)  # the delayed one first
        await expect(mark).to_have_attribute("data-also", on_time)
        await expect(page.locator(".legend .order-delayed")).to_be_visible()
        row = page.locator(f'#waiting tr[data-order="{oid}"]')
        await expect(row).to_have_attribute("data-delayed", "")
        await expect(row.locator('td[data-label="Waiting"]')).to_contain_text(f"food delayed by the kitchen, ready {ready}")
        await expect(page.locator(f'#waiting tr[data-order="{on_time}"]')).not_to_have_attribute("data-delayed", "")
        await mark.click()
        await expect(page.locator("#order-summary")).to_contain_text(f"food delayed by the kitchen 8 min (2 delays), ready {ready}")
        also = page.locator("#order-also")  # the mark's other order, a press away
        await expect(also).to_contain_text(f"Also at kitchen {mid}:")
        await also.get_by_role("button", name=f"Order {on_time}: open").click()
        await expect(page.locator("#order-summary")).to_contain_text(f"{on_time}: confirmed")
        await expect(also.get_by_role("button", name=f"Order {oid}: open")).to_be_visible()
        await also.get_by_role("button", name=f"Order {oid}: open").click()
        await kitchen.ready(oid)  # the food is ready after all: no longer held up by the kitchen
        await expect(mark).to_have_class(re.compile(r"\border-waiting\b"))
        await expect(mark.locator("title")).to_have_text(f"{mid}: 2 orders waiting for a rider")
        await expect(page.locator("#order-summary")).not_to_contain_text("delayed")
        await expect(row).not_to_have_attribute("data-delayed", "")
    finally:
        await context.close()
        await kitchen.close()
        await ops.close()


async def test_a_rider_waiting_on_a_kitchen_delay_says_so_in_its_row_and_on_its_dot(own_redis, start_server, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """An order already with a rider leaves the waiting table and its restaurant's mark: where
    the operator looks at that rider, the kitchen's delay (and until when) shows instead."""
    srv = start_server(QUIET, redis=own_redis)
    ops = Ops(srv)
    mid, oid, other, rid = uid("m"), uid("o"), uid("o-on-time"), uid("r")
    kitchen, courier = await merchant(srv, mid), await rider(srv, rid)
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    page = await context.new_page()
    try:
        await courier.location(PICKUP["lat"] - 0.004, PICKUP["lng"])
        for order in (oid, other):
            await ops.create(order, mid, prep_minutes=10)
            await kitchen.confirm(order)
            await kitchen.event(order, "confirmed")
            assert (await ops.assign(order, rid)).status_code == 200
        await kitchen.delay(oid, 5)
        delayed = await kitchen.event(oid, "food_delayed")
        snap = (await ops.client.get("/v1/ops/snapshot")).json()
        listed = {r["id"]: r for r in snap["riders"]}
        assert listed[rid]["kitchen_delays"] == [{"order_id": oid, "ready_at": delayed["ready_at"]}]
        await page.goto(f"{srv.base_url}/ops?token={srv.token('operator', 'ops')}")
        ready = await wall_clock(page, delayed["ready_at"])
        said = f"{oid}: food delayed by the kitchen, ready {ready}"
        row = page.locator(f'#riders tr[data-rider="{rid}"]')
        await expect(row.locator('td[data-label="State"]')).to_have_text(f"busy · {said}")
        await expect(row).to_have_attribute("data-delayed", "")
        dot = page.locator(f'[data-marker="{rid}"]')
        await expect(dot.locator("title")).to_have_text(f"{rid}: busy · {said}")
        await expect(dot).to_have_attribute("data-food-delayed", "")  # outlined, as the legend says
        ring = await ring_colours(page, f'[data-marker="{rid}"]')
        assert contrast(ring["ring"], ring["dot"]) >= 3, ring  # seen on the red dot
        assert all(contrast(edge, ring["map"]) >= 3 for edge in ring["edge"]), ring  # and on the map
        assert all(contrast(edge, ring["ring"]) >= 3 for edge in ring["edge"]), ring  # (the edge shows)
        await expect(page.locator(".legend .rider-delayed")).to_have_text(re.compile("food delayed by the kitchen"))
        await dot.click()
        await expect(page.locator("#rider-note")).to_have_text(f"Rider {rid} selected on the map: busy, 2 orders · {said}.")
        await courier.progress(oid, "at_pickup")  # at the counter, the food still not ready: still said
        await kitchen.event(oid, "at_pickup")
        await page.wait_for_timeout(2500)  # a poll or so later
        await expect(row.locator('td[data-label="State"]')).to_have_text(f"busy · {said}")
        await kitchen.ready(oid)  # the food is ready after all: the rider waits on nobody
        await expect(row.locator('td[data-label="State"]')).to_have_text("busy")
        await expect(row).not_to_have_attribute("data-delayed", "")
        await expect(dot).not_to_have_attribute("data-food-delayed", "")
        await expect(dot.locator("title")).to_have_text(f"{rid}: busy")
    finally:
        await context.close()
        await kitchen.close()
        await courier.close()
        await ops.close()


async def test_on_a_phone_the_zoom_buttons_never_cover_a_rider_at_the_fleets_corner(own_redis, start_server, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """The fleet is fitted to the map with a rider at its top right corner, where the +, − and Fit
    buttons are: on a phone (a small map) the buttons stay clear of it, so a finger on that rider
    picks it out rather than zooming."""
    srv = start_server(QUIET, redis=own_redis)
    corner, other = uid("r-ne"), uid("r-sw")
    ne, sw = await rider(srv, corner), await rider(srv, other)
    page = await phone(browser, "about:blank")
    try:
        await ne.location(PICKUP["lat"] + 0.015, PICKUP["lng"] + 0.033)  # north-east: the top right
        await sw.location(PICKUP["lat"] - 0.015, PICKUP["lng"] - 0.033)  # (a 4:3 span, as the map)
        await page.goto(f"{srv.base_url}/ops?token={srv.token('operator', 'ops')}")
        dot = f'[data-marker="{corner}"]'
        await expect(page.locator(dot)).to_have_count(1)
        x, y = await centre(page, dot)
        for name in ("Zoom in", "Zoom out", "Fit the map to the fleet"):
            box = await page.get_by_role("button", name=name).bounding_box()
            assert box is not None
            # the button's box and the rider's 44 px target do not meet
            assert (box["x"] > x + 22 or box["x"] + box["width"] < x - 22
                    or box["y"] > y + 22 or box["y"] + box["height"] < y - 22), (name, box, (x, y))
        assert (await hit_at(page, x, y))["rider"] == corner
        await page.touchscreen.tap(x, y)
        await expect(page.locator(f'#riders tr[data-rider="{corner}"]')).to_have_attribute("data-selected", "")
    finally:
        await page.context.close()
        await ne.close()
        await sw.close()


async def test_a_kitchen_delay_whose_time_has_passed_reads_as_food_due_not_as_delayed(own_redis, start_server, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """The kitchen delayed the food to a time now past and has not pressed Ready: the map, the
    tables and the Order panel no longer say the kitchen holds it until then (its time is up);
    they say plainly when the food was due, and the delay's marks go. The kitchen board says so too."""
    srv = start_server({**QUIET, "TRACKER_TIME_SCALE": "60"}, redis=own_redis)  # a minute a second
    ops = Ops(srv)
    mid, oid = uid("m"), uid("o")
    kitchen = await merchant(srv, mid)
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    page = await context.new_page()
    try:
        await ops.create(oid, mid, prep_minutes=4)
        await kitchen.confirm(oid)
        await kitchen.event(oid, "confirmed")
        await kitchen.delay(oid, 4)
        delayed = await kitchen.event(oid, "food_delayed")
        await page.goto(f"{srv.base_url}/ops?token={srv.token('operator', 'ops')}&order={oid}")
        ready = await wall_clock(page, delayed["ready_at"])
        mark = page.locator(f'[data-id="kitchen:{mid}"]')
        row = page.locator(f'#waiting tr[data-order="{oid}"]')
        await expect(mark).to_have_class(re.compile(r"\border-delayed\b"))  # (8 minutes: 8 s here)
        await expect(row).to_have_attribute("data-delayed", "")
        # its time passes, Ready not pressed
        await expect(mark).to_have_class(re.compile(r"\border-waiting\b"), timeout=15_000)
        await expect(mark.locator("title")).to_have_text(f"{mid}: 1 order waiting for a rider")
        await expect(row).not_to_have_attribute("data-delayed", "")
        await expect(row.locator('td[data-label="Waiting"]')).to_contain_text(f"food was due {ready}")
        await expect(row).not_to_contain_text("delayed by the kitchen")
        await expect(page.locator("#order-summary")).to_contain_text(f"food was due {ready}")
        await expect(page.locator("#order-summary")).not_to_contain_text("food delayed")
        board = await context.new_page()  # the kitchen's own board says it alike
        await board.goto(f"{srv.base_url}/merchant?token={srv.token('merchant', mid)}")
        await expect(board.locator(f'tr[data-order="{oid}"] td').nth(2)).to_have_text(f"delayed, was due {ready}")
    finally:
        await context.close()
        await kitchen.close()
        await ops.close()


async def test_one_press_on_a_kitchen_lists_all_its_orders_placed_ones_included(own_redis, start_server, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """A kitchen with an order waiting for a rider and one still to confirm: the waiting order's
    mark lies over the placed one's, whose only own part is a thin rim. A press anywhere on the
    kitchen opens the Order panel with every order there listed, the placed one a press away."""
    srv = start_server(QUIET, redis=own_redis)
    ops = Ops(srv)
    mid, waiting, placed = uid("m"), uid("o-wait"), uid("o-placed")
    kitchen = await merchant(srv, mid)
    page = await phone(browser, "about:blank")
    try:
        await ops.create(waiting, mid)
        await kitchen.confirm(waiting)
        await kitchen.event(waiting, "confirmed")
        await ops.create(placed, mid)  # at the same restaurant, not confirmed
        await page.goto(f"{srv.base_url}/ops?token={srv.token('operator', 'ops')}")
        await expect(page.locator(f'[data-id="placed:{mid}"]')).to_have_count(1)
        x, y = await centre(page, f'[data-id="kitchen:{mid}"]')
        for dx, dy in ((0, 0), (18, 0), (0, -18)):  # the kitchen, within a finger's reach
            assert (await hit_at(page, x + dx, y + dy))["order"] in (waiting, placed)
        await page.touchscreen.tap(x + 18, y)
        await expect(page.locator("#order-summary")).to_contain_text(f"{waiting}: confirmed")
        also = page.locator("#order-also")
        await expect(also).to_contain_text(f"Also at kitchen {mid}:")
        await expect(also).to_contain_text(f"{placed} (placed, to confirm)")
        await also.get_by_role("button", name=f"Order {placed}: open").click()
        await expect(page.locator("#order-summary")).to_contain_text(f"{placed}: placed")
        await expect(also.get_by_role("button", name=f"Order {waiting}: open")).to_be_visible()  # and back
    finally:
        await page.context.close()
        await kitchen.close()
        await ops.close()


async def test_an_order_never_delayed_reads_food_was_due_once_its_ready_time_passed(own_redis, start_server, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """The Order panel says "food ready 12:10" while the food is cooking; once that time passed
    without the kitchen pressing Ready it says "food was due 12:10", as after a delay, and once
    the kitchen pressed Ready, "food ready" again."""
    srv = start_server({**QUIET, "TRACKER_TIME_SCALE": "60"}, redis=own_redis)  # a minute a second
    ops = Ops(srv)
    mid, oid = uid("m"), uid("o")
    kitchen = await merchant(srv, mid)
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    page = await context.new_page()
    try:
        await ops.create(oid, mid, prep_minutes=8)
        await kitchen.confirm(oid)
        await kitchen.event(oid, "confirmed")
        expected = (await ops.get(oid))["expected_ready_at"]
        await page.goto(f"{srv.base_url}/ops?token={srv.token('operator', 'ops')}&order={oid}")
        ready = await wall_clock(page, expected)
        summary = page.locator("#order-summary")
        await expect(summary).to_contain_text(f"food ready {ready}")  # (8 minutes: 8 s here)
        await expect(summary).to_contain_text(f"food was due {ready}", timeout=15_000)
        await expect(summary).not_to_contain_text("food ready")
        await kitchen.ready(oid)
        await kitchen.event(oid, "food_ready")
        await expect(summary).to_contain_text(re.compile(r"food ready \d"))
        await expect(summary).not_to_contain_text("was due")
    finally:
        await context.close()
        await kitchen.close()
        await ops.close()


async def test_on_a_phone_the_legend_folds_into_a_toggle_that_shows_every_entry(own_redis, start_server, browser: Browser) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    srv = start_server(QUIET, redis=own_redis)
    page = await phone(browser, f"{srv.base_url}/ops?token={srv.token('operator', 'ops')}")
    try:
        legend = page.locator(".legend")
        entries = legend.locator("span")
        count = await entries.count()
        assert count >= 12
        toggle = page.get_by_text("Legend", exact=True)
        await expect(toggle).to_be_visible()
        box = await legend.bounding_box()
        line = float(await legend.evaluate("e => parseFloat(getComputedStyle(e).lineHeight) || 24"))
        assert box is not None and box["height"] <= 2 * line, (box, line)  # one line, not eight
        assert await toggle.evaluate("e => e.closest('details') !== null && !e.closest('details').open")
        await toggle.click()  # unfolded: every entry, none lost
        for i in range(count):
            await expect(entries.nth(i)).to_be_visible()
        await toggle.click()
        await expect(entries.first).to_be_hidden()
        wide = await browser.new_context(viewport={"width": 1280, "height": 800})
        desk = await wide.new_page()
        await desk.goto(f"{srv.base_url}/ops?token={srv.token('operator', 'ops')}")
        await expect(desk.locator(".legend .order-placed")).to_be_visible()  # open on a wide screen
        await wide.close()
    finally:
        await page.context.close()


async def test_a_long_rider_id_keeps_to_one_line_with_the_whole_id_in_its_title(own_redis, start_server, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    srv = start_server(QUIET, redis=own_redis)
    rid = (uid("r") + "-" + "k" * 64)[:64]  # the longest id there is
    courier = await rider(srv, rid)
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    page = await context.new_page()
    try:
        await courier.location(PICKUP["lat"], PICKUP["lng"])
        await page.goto(f"{srv.base_url}/ops?token={srv.token('operator', 'ops')}")
        row = page.locator(f'#riders tr[data-rider="{rid}"]')
        for size in ({"width": 1280, "height": 800}, {"width": 390, "height": 844}):  # a table, then cards
            await page.set_viewport_size(size)
            cell = row.locator('td[data-label="Rider"]')
            await expect(cell).to_have_attribute("title", rid)  # the whole id on hover
            await expect(row.get_by_role("cell", name=rid, exact=True)).to_have_count(1)  # and read out whole
            shown = await cell.evaluate("""(td) => {
                const el = td.querySelector('.clip') || td, css = getComputedStyle(el);
                return { lines: Math.round(el.getBoundingClientRect().height / parseFloat(css.lineHeight)),
                         cut: el.scrollWidth > el.clientWidth, ellipsis: css.textOverflow };
            }""")
            assert shown == {"lines": 1, "cut": True, "ellipsis": "ellipsis"}, (size, shown)
    finally:
        await context.close()
        await courier.close()


# A 1x1 PNG: what a tile server sends back.
TILE_PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                         "1f15c4890000000d49444154789c63f8cfc0f01f0005050200"
                         "5fc8f1d20000000049454e44ae426082")


async def tile_server(host: str, hits: list[str]) -> asyncio.AbstractServer:
    """A tile server on ``host`` (an IPv6 address too) answering every GET with a tile; the paths
    it was asked for go to ``hits``."""
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        hits.append(head.split(b" ", 2)[1].decode())
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: image/png\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
                     % len(TILE_PNG) + TILE_PNG)
        await writer.drain()
        writer.close()

    return await asyncio.start_server(serve, host, 0)


@pytest.mark.parametrize("host, template", [
    ("::1", "http://[::1]:{port}/{z}/{x}/{y}.png"),  # a CSP source cannot name an IPv6 address
    ("127.0.0.1", "http://127.0.0.1:{port}/{z}/{x}/{y}.png?v={z}"),  # {z} twice
])
async def test_every_tile_template_the_server_takes_shows_its_tiles(host: str, template: str, start_server, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """TRACKER_TILE_URL values the server took at start showed no tile: an IPv6 tile server made
    the CSP source `http://[::1]:8080`, which Chromium drops as invalid (every tile blocked), and a
    template holding {z} twice had only its first filled in (a tile address with "{z}" in it).
    Every tile the map draws now loads, each placeholder filled in, with no CSP refusal."""
    hits: list[str] = []
    try:
        tiles = await tile_server(host, hits)
    except OSError:
        pytest.skip(f"no {host} on this machine")
    port = tiles.sockets[0].getsockname()[1]
    srv = start_server({"TRACKER_TILE_URL": template.replace("{port}", str(port))})
    ops = Ops(srv)
    oid = uid("o")
    context = await browser.new_context()
    page = await context.new_page()
    refused: list[str] = []
    page.on("console", lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None)
    try:
        assert (await ops.create(oid, uid("m"))).status_code == 201
        await page.goto(f"{srv.base_url}/track/{oid}?token={srv.token('customer', oid)}")
        await expect(page.locator("#status")).to_have_attribute("data-status", "placed")
        images = page.locator("#map image")
        await expect(images.first).to_be_attached()
        hrefs = await images.evaluate_all("els => els.map((e) => e.getAttribute('href'))")
        assert not [h for h in hrefs if "{" in h], hrefs  # every placeholder filled in
        for _ in range(50):  # (each tile is fetched as it is drawn)
            if len(set(hits)) >= len(set(hrefs)):
                break
            await asyncio.sleep(0.1)
        assert sorted(set(hits)) == sorted({h.split(str(port), 1)[1] for h in hrefs}), (hits, hrefs)
        assert all(re.fullmatch(r"/14/\d+/\d+\.png(\?v=14)?", h) for h in hits), hits
        assert refused == [], refused
    finally:
        await context.close()
        await ops.close()
        tiles.close()


async def test_a_fleets_dots_jump_to_their_new_places_rather_than_glide(own_redis, start_server, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """With more riders on the map than a few dozen, a moved dot is redrawn once, where it is now:
    a glide per rider every poll (about 50 frames each) kept a third of a core busy at 300 riders."""
    srv = start_server(QUIET, redis=own_redis)
    ids = [uid(f"r{i}") for i in range(45)]
    riders = [await rider(srv, rid) for rid in ids]
    try:
        for i, r in enumerate(riders):
            await r.location(PICKUP["lat"] + 0.0004 * (i % 9), PICKUP["lng"] + 0.0004 * (i // 9))
        page = await browser.new_page()
        await page.goto(f"{srv.base_url}/ops?token={srv.token('operator', 'ops')}")
        await expect(page.locator("[data-marker]")).to_have_count(45)
        moved = ids[0]
        await page.evaluate("""(id) => {
            const m = document.querySelector(`[data-marker="${id}"]`);
            window.__cx = [];
            new MutationObserver(() => window.__cx.push(m.getAttribute('cx')))
                .observe(m, { attributes: true, attributeFilter: ['cx'] });
        }""", moved)
        await asyncio.sleep(1.05)  # (a rider's fixes a second apart at least)
        lat = round(PICKUP["lat"] - 0.0003, 6)  # about 33 m on: a rider, not a jump the server turns down
        await riders[0].location(lat, PICKUP["lng"])
        await expect(page.locator(f'[data-marker="{moved}"]')).to_have_attribute("data-lat", str(lat), timeout=10_000)
        await page.wait_for_timeout(1200)  # a glide would be over by now
        cx = await page.evaluate("window.__cx")
        assert len(cx) == 1, cx  # one jump, not a frame-by-frame glide
        await page.close()
    finally:
        for r in riders:
            await r.close()

