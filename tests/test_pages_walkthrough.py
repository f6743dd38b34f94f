"""Rough edges an operator's walk-through of a real day found on the pages, in a real headless
Chromium against a real server: the kitchen board offers only Confirm on an order not yet
confirmed, marks one left waiting, says when the food is due and drops a hand-over prompt a
delay made wrong; the ops page counts a wait for a rider from the confirmation, says when the
food holds an order back, gives a delay's minutes in the history, phrases a refused take-back
plainly and never hides the Riders table under its Order panel."""
from __future__ import annotations

import asyncio
import re

from playwright.async_api import Browser, expect

from tests.orders_helpers import PICKUP, Ops, merchant, rider
from tests.test_pages import browser, new_page, wall_clock  # noqa: F401 - the module's Chromium fixture
from tests.test_pages_usability import board_with_a_rider_assigned
from tracker.launcher import ServerProcess


async def test_an_unconfirmed_order_offers_only_confirm_and_a_long_wait_is_marked(own_redis, start_server, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """Ready on an order not yet confirmed recorded the food as ready while no rider would ever
    be sent; now the board offers Confirm (and Cancel) until then, marks an order left over 5
    minutes, counts what the kitchen still has to do, and says when confirmed food is due. The
    ops page counts the wait for a rider from the confirmation, and says the food holds it."""
    srv = start_server({"TRACKER_TIME_SCALE": "60", "TRACKER_DISPATCH_INTERVAL_S": "3600"}, redis=own_redis)  # a minute a second
    ops = Ops(srv)
    oid, mid = uid("o"), uid("m")
    page = await new_page(browser)
    try:
        await page.goto(f"{srv.base_url}/merchant?token={srv.token('merchant', mid)}")
        await expect(page.locator("body")).to_have_attribute("data-online", "yes")
        assert (await ops.create(oid, mid, prep_minutes=30)).status_code == 201
        row = page.locator(f'tr[data-order="{oid}"]')
        await expect(row).to_have_attribute("data-status", "placed")
        assert await row.locator("button").all_inner_texts() == ["Confirm", "Cancel order"]
        await expect(row.locator("td").nth(1)).to_have_text("to confirm")
        await expect(page.locator("#no-prompts")).to_be_visible()  # the empty Prompts box says so
        await expect(page.locator("#count")).to_have_text("(1 open)")
        await expect(row.locator("td").nth(1)).to_have_text(re.compile(r"^to confirm: waiting [5-9] min$"), timeout=15_000)
        await expect(row).to_have_attribute("data-late", "")
        await row.get_by_role("button", name=f"Confirm {oid}").click()
        await expect(row).to_have_attribute("data-status", "confirmed")
        assert await row.locator("button").all_inner_texts() == ["Ready", "Delay 5 min", "Cancel order"]
        await expect(row).not_to_have_attribute("data-late", "")
        order = await ops.get(oid)
        ready = await wall_clock(page, order["confirmed_at"] + 30 * 60_000)
        await expect(row.locator("td").nth(2)).to_have_text(f"preparing, ready {ready}")
        await expect(page.locator("#count")).to_have_text("(1 open)")

        board = page
        page = await new_page(browser)
        await board.context.close()
        await page.goto(f"{srv.base_url}/ops?token={srv.token('operator', 'ops')}")
        waited = page.locator(f'#waiting tr[data-order="{oid}"] td[data-label="Waiting"]')
        # placed over 5 minutes ago, confirmed a moment ago: the wait for a rider is the moment
        await expect(waited).to_have_text(re.compile(rf"^(\d+ s|[1-9] min) · food ready {re.escape(ready)}$"))
        shown = (await waited.inner_text()).split(" · ")[0]
        now = (await ops.client.get("/healthz")).json()["ts"]
        minutes = int(shown.split()[0]) if shown.endswith("min") else 0
        assert minutes <= (now - order["confirmed_at"]) / 60_000 + 1 < (now - order["placed_at"]) / 60_000 - 3, (shown, order)
    finally:
        await page.context.close()
        await ops.close()


async def test_a_delay_drops_the_hand_over_soon_prompt_even_after_a_reload(server: ServerProcess, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """"Hand-over soon" was timed to the old ready time: after Delay 5 min it goes, and a reload
    (whose catch-up sends the prompts already sent) does not bring it back."""
    ops, oid, kitchen, courier, page = await board_with_a_rider_assigned(server, uid, browser)
    try:
        await courier.location(PICKUP["lat"] + 0.002, PICKUP["lng"])  # about 220 m: under 2 min away
        prompts = page.locator(f'.prompt[data-order="{oid}"]')
        await expect(prompts.first).to_have_attribute("data-kind", "rider_arriving")
        await expect(page.locator("#no-prompts")).to_be_hidden()
        row = page.locator(f'tr[data-order="{oid}"]')
        await row.get_by_role("button", name=f"Delay 5 min {oid}").click()
        await expect(row).to_contain_text("delayed to")
        await expect(prompts).to_have_count(0)
        await expect(page.locator("#no-prompts")).to_be_visible()
        await page.reload()
        await expect(row).to_contain_text("delayed to")
        await page.wait_for_timeout(1000)  # (the catch-up comes right after the history)
        await expect(prompts).to_have_count(0)
    finally:
        await page.context.close()
        await kitchen.close()
        await courier.close()
        await ops.close()


async def test_the_ops_order_panel_gives_a_delay_and_says_plainly_why_a_take_back_was_refused(server: ServerProcess, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    ops = Ops(server)
    oid, mid, rid = uid("o"), uid("m"), uid("r")
    kitchen = await merchant(server, mid)
    courier = await rider(server, rid)
    page = await new_page(browser)
    page.on("dialog", lambda d: asyncio.ensure_future(d.accept("")))
    try:
        await ops.create(oid, mid, prep_minutes=15)
        await kitchen.confirm(oid)
        await kitchen.event(oid, "confirmed")
        await kitchen.delay(oid, 5)
        delayed = await kitchen.event(oid, "food_delayed")
        await ops.assign(oid, rid)
        await page.goto(f"{server.base_url}/ops?token={server.token('operator', 'ops')}&order={oid}")
        ready = await wall_clock(page, delayed["ready_at"])
        await expect(page.locator("#order-events li").nth(2)).to_have_text(re.compile(rf"food delayed 5 min, ready {re.escape(ready)}$"))
        take_back = page.get_by_role("button", name=f"Take back from {rid}")
        await expect(take_back).to_be_visible()
        # the panel shows the order as it was a moment ago: meanwhile the rider gave it back
        await page.route(f"**/v1/orders/{oid}", lambda route: route.abort() if route.request.method == "GET" else route.continue_())
        await courier.release(oid, "flat tyre")
        await kitchen.event(oid, "rider_unassigned")
        await take_back.click()
        note = page.locator("#order-note")
        await expect(note).to_have_text(re.compile(rf"^Order {re.escape(oid)} was not taken back: it has no rider now "))
        await expect(note).to_contain_text("invalid_transition")  # the server's reason after the words, for the operator
    finally:
        await page.context.close()
        await kitchen.close()
        await courier.close()
        await ops.close()


async def test_the_order_panel_never_covers_the_riders_table(server: ServerProcess, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """On a wide screen the Order panel stays in view; scrolling anywhere, the Riders heading and
    rows that are on screen are not under it, and the buttons' column says what they do."""
    ops = Ops(server)
    oid, mid = uid("o"), uid("m")
    couriers = [await rider(server, uid(f"r{i}")) for i in range(3)]
    context = await browser.new_context(viewport={"width": 1440, "height": 900})
    page = await context.new_page()
    try:
        for i, c in enumerate(couriers):
            await c.location(PICKUP["lat"] + 0.001 * i, PICKUP["lng"])
        await ops.create(oid, mid)
        await page.goto(f"{server.base_url}/ops?token={server.token('operator', 'ops')}&order={oid}")
        await expect(page.locator("#order-card")).to_be_visible()
        await expect(page.locator("#riders tr").first).to_be_visible()
        height = await page.evaluate("document.scrollingElement.scrollHeight - innerHeight")
        assert height > 300, height  # a page long enough to scroll
        covered = []
        for y in range(0, height + 100, 100):
            await page.evaluate("(y) => scrollTo(0, y)", y)
            covered += await page.evaluate("""(y) => ['#riders-title', '#riders tr'].flatMap((sel) => {
                const el = document.querySelector(sel), box = el.getBoundingClientRect();
                const [x, cy] = [box.left + 10, box.top + box.height / 2];
                if (cy < 0 || cy > innerHeight) return [];  // not on screen
                const hit = document.elementFromPoint(x, cy);
                return el.contains(hit) ? [] : [[y, sel, hit && (hit.id || hit.tagName)]];
            })""", y)
        assert covered == [], covered
        column = await page.evaluate("""() => {
            const b = document.querySelector('#riders button[data-rider-action]'), i = b.closest('td').cellIndex;
            return b.closest('table').tHead.rows[0].cells[i].textContent;
        }""")
        assert column == "Action", column
    finally:
        await context.close()
        for c in couriers:
            await c.close()
        await ops.close()
