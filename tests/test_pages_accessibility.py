"""The pages as a screen-reader, keyboard, voice-control, low-vision or phone user meets them,
in a real headless Chromium against a real server: status and ETA read out politely, once per
change and with their words ("Arriving in 12 min", not "12 min" every second); an outage and
the way back announced; the kitchen board worked from the keyboard, keeping focus through an
outage, with buttons named by the words they show; a map with a text alternative whose markers
differ by more than colour and that holds still for reduced motion; nothing wider than a
360 px phone; no clock read out every two seconds on the ops page."""
from __future__ import annotations

import asyncio
import json
import re
import time

from playwright.async_api import Browser, Page, Route, expect

from tests.orders_helpers import PICKUP, Ops, confirmed_order, merchant, rider
from tests.test_ops_actions import NO_ROUNDS, answer_prompts, operator_and_rider
from tests.test_pages import browser, delayed_to_its_cap, shot  # noqa: F401 - the module's Chromium fixture
from tracker.launcher import ServerProcess

PHONE = {"width": 360, "height": 740}

# Records, for each live region (aria-live or role status/alert/log), its text after each
# batch of DOM changes in it: what a screen reader would be handed to read out. Words hidden
# from screen readers (aria-hidden: seen, not read) are not handed over, nor is a change in them,
# nor is what is not shown (hidden).
WATCH_LIVE_REGIONS = """() => {
    window.__spoken = [];
    const live = '[aria-live], [role=status], [role=alert], [role=log]';
    const said = (el) => [...el.childNodes].map((n) => n.nodeType === 3 ? n.data
        : n.nodeType === 1 && n.getAttribute('aria-hidden') !== 'true' && !n.hidden ? said(n) : '').join('');
    new MutationObserver((records) => {
        const touched = new Set();
        for (const r of records) {
            if (r.type === 'attributes' && r.oldValue === r.target.getAttribute(r.attributeName)) continue;  // (no change)
            const el = r.target.nodeType === 1 ? r.target : r.target.parentElement;
            if (!el || el.closest('[aria-hidden=true]')) continue;  // (not read out)
            const region = el.closest(live);
            if (region) touched.add(region);
        }
        for (const region of touched) window.__spoken.push([region.id || region.getAttribute('role') || '?', said(region).trim()]);
    }).observe(document.body, { subtree: true, childList: true, characterData: true, attributes: true, attributeOldValue: true, attributeFilter: ['hidden'] });
}"""


async def open_page(browser: Browser, url: str, **context: object) -> Page:  # noqa: F811
    ctx = await browser.new_context(viewport=context.pop("viewport", PHONE), **context)  # type: ignore[arg-type]
    page = await ctx.new_page()
    await page.goto(url)
    return page


async def carried_order(server: ServerProcess, uid):  # type: ignore[no-untyped-def]
    """An order confirmed by its kitchen and assigned to a rider about 1 km from its restaurant."""
    ops = Ops(server)
    oid, mid, rid = uid("o"), uid("m"), uid("r")
    kitchen = await merchant(server, mid)
    courier = await rider(server, rid)
    await ops.create(oid, mid)
    await kitchen.confirm(oid)
    await kitchen.event(oid, "confirmed")
    await kitchen.close()
    await courier.location(PICKUP["lat"] - 0.009, PICKUP["lng"])
    assert (await ops.assign(oid, rid)).status_code == 200
    return ops, courier, oid


async def test_tracking_page_reads_out_status_and_eta_politely_once_per_change(server: ServerProcess, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    ops, courier, oid = await carried_order(server, uid)
    page = await open_page(browser, f"{server.base_url}/track/{oid}?token={server.token('customer', oid)}")
    try:
        await expect(page.locator("#status")).to_have_attribute("data-status", "assigned")
        await expect(page.locator("#status")).to_have_attribute("aria-live", "polite")
        # the ETA is read with its words: the whole line is one polite, atomic region
        eta_region = page.locator("#eta").locator("xpath=ancestor-or-self::*[@aria-live][1]")
        await expect(eta_region).to_have_attribute("aria-live", "polite")
        await expect(eta_region).to_have_attribute("aria-atomic", "true")
        await expect(eta_region).to_contain_text("Arriving in")
        # fixes that leave the ETA as it was must not have it read out again (one a second)
        await page.evaluate(WATCH_LIVE_REGIONS)
        marker = page.locator('[data-marker="rider"]')
        for i in range(1, 4):
            await asyncio.sleep(1.05)
            lat = PICKUP["lat"] - 0.009 + i * 0.00001  # a metre at a time: the minutes stay
            await courier.location(lat, PICKUP["lng"])
            await expect(marker).to_have_attribute("data-lat", str(lat))
        await expect(page.locator("#eta")).to_have_text(re.compile(r"^\d+ min$"))
        spoken = await page.evaluate("window.__spoken")
        for region in {r for r, _ in spoken}:
            texts = [t for r, t in spoken if r == region]
            repeats = [a for a, b in zip(texts, texts[1:]) if a == b]
            assert not repeats, (region, texts)  # each announcement says something new
        # the timeline says which steps are done, and which one the order is at, in words
        await expect(page.locator('#timeline li[data-kind="confirmed"]')).to_have_text(re.compile(r"Restaurant confirmed.*done"))
        await expect(page.locator('#timeline li[data-kind="at_pickup"]')).not_to_contain_text("done")
        await expect(page.locator('#timeline li[aria-current="step"]')).to_have_attribute("data-kind", "assigned")
        for step in ("at_pickup", "picked_up", "at_dropoff"):
            await courier.progress(oid, step)
        await expect(page.locator("#status")).to_have_text("Rider at your door")
        await expect(eta_region).to_have_text(re.compile(r"^Arriving\s+now$"))  # not "Arriving in now"
    finally:
        await page.context.close()
        await courier.close()
        await ops.close()


async def test_tracking_map_has_a_text_alternative_and_markers_told_apart_by_shape(server: ServerProcess, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    ops, courier, oid = await carried_order(server, uid)
    page = await open_page(browser, f"{server.base_url}/track/{oid}?token={server.token('customer', oid)}")
    try:
        await expect(page.locator('[data-marker="rider"]')).to_have_count(1)
        # the map says where the rider is, for those who cannot see it (about 2 km away here)
        await expect(page.get_by_role("img", name=re.compile(r"your rider is [\d.]+ km from your address"))).to_be_visible()
        # restaurant, address and rider differ by shape, not only by blue, green and red
        shapes = await page.evaluate("""() => ['[data-id="restaurant"]', '[data-id="home"]', '[data-marker="rider"]']
            .map((s) => document.querySelector(s).tagName)""")
        assert len(set(shapes)) == 3, shapes
        # the legend's coloured glyphs are not read out ("black circle restaurant ...")
        legend = await page.locator(".legend").aria_snapshot()
        assert not re.search("[●■◆⬢]", legend), legend
        await expect(page.locator(".legend")).to_contain_text("■")  # (still seen)
    finally:
        await page.context.close()
        await courier.close()
        await ops.close()


async def test_tracking_map_holds_still_for_reduced_motion(server: ServerProcess, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """The rider's marker glides to each fix, except for a user who asked for less motion:
    there it is in its new place at once."""
    ops, courier, oid = await carried_order(server, uid)
    page = await open_page(browser, f"{server.base_url}/track/{oid}?token={server.token('customer', oid)}",
                           reduced_motion="reduce")
    try:
        marker = page.locator('[data-marker="rider"]')
        await expect(marker).to_have_count(1)
        await page.evaluate("""() => {
            const m = document.querySelector('[data-marker="rider"]');
            window.__moves = [];
            new MutationObserver(() => window.__moves.push([m.dataset.lat, m.getAttribute('cy')]))
                .observe(m, { attributes: true, attributeFilter: ['data-lat'] });
        }""")
        await asyncio.sleep(1.05)
        lat = PICKUP["lat"] - 0.0089  # about 11 m on: a rider, not a jump the server turns down
        await courier.location(lat, PICKUP["lng"])
        await expect(marker).to_have_attribute("data-lat", str(lat))
        await page.wait_for_timeout(1200)  # a glide would be over by now
        moves = await page.evaluate("window.__moves")
        assert moves and moves[-1][1] == await marker.get_attribute("cy"), moves  # already there when it moved
    finally:
        await page.context.close()
        await courier.close()
        await ops.close()


async def test_kitchen_board_works_from_the_keyboard_with_buttons_named_as_shown(server: ServerProcess, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    ops = Ops(server)
    oid, mid = uid("o"), uid("m")
    page = await open_page(browser, f"{server.base_url}/merchant?token={server.token('merchant', mid)}",
                           viewport={"width": 1280, "height": 800})
    try:
        await expect(page.locator("body")).to_have_attribute("data-online", "yes")
        assert (await ops.create(oid, mid)).status_code == 201
        row = page.locator(f'tr[data-order="{oid}"]')
        await expect(row).to_have_attribute("data-status", "placed")
        # voice control ("click Delay 5 min") finds a button by the words it shows: each
        # button's name starts with them, then names the order
        buttons = await page.locator("#orders button").evaluate_all(
            "bs => bs.map((b) => [b.textContent, b.getAttribute('aria-label') || b.textContent])")
        assert [name for _, name in buttons] == [f"Confirm {oid}", f"Cancel order {oid}"]  # no Ready before Confirm
        assert all(name.startswith(text) for text, name in buttons), buttons
        # Tab reaches the first action, with a focus ring one can see; Space confirms
        await page.keyboard.press("Tab")
        confirm = page.get_by_role("button", name=f"Confirm {oid}")
        await expect(confirm).to_be_focused()
        ring = await confirm.evaluate("b => [getComputedStyle(b).outlineStyle, parseFloat(getComputedStyle(b).outlineWidth)]")
        assert ring[0] == "solid" and ring[1] >= 2, ring
        await page.keyboard.press(" ")
        await expect(row).to_have_attribute("data-status", "confirmed")
        await expect(page.get_by_role("button", name=f"Ready {oid}")).to_be_focused()
        await page.keyboard.press("Tab")  # on to "Delay 5 min", and Enter delays
        await expect(page.get_by_role("button", name=f"Delay 5 min {oid}")).to_be_focused()
        await page.wait_for_timeout(500)  # (right after a press, a row whose buttons changed does not act for 0.4 s)
        await page.keyboard.press("Enter")
        await expect(row.locator("td").nth(2)).to_contain_text("delayed to")
        # a new prompt is read out at once, on its own (not with every older prompt again)
        prompts = page.locator("#prompts")
        await expect(prompts).to_have_attribute("aria-live", "assertive")
        await expect(prompts).to_have_attribute("aria-atomic", "false")
    finally:
        await page.context.close()
        await ops.close()


async def test_kitchen_board_outage_is_announced_and_keyboard_focus_stays(start_server, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    srv = start_server()
    ops = Ops(srv)
    oid, mid = uid("o"), uid("m")
    page = await open_page(browser, f"{srv.base_url}/merchant?token={srv.token('merchant', mid)}")
    try:
        assert (await ops.create(oid, mid)).status_code == 201
        kitchen = await merchant(srv, mid)
        await kitchen.confirm(oid)  # (Ready is offered once the order is confirmed)
        await kitchen.event(oid, "confirmed")
        await kitchen.close()
        ready = page.get_by_role("button", name=f"Ready {oid}")
        await expect(ready).to_be_enabled()
        # the banner's live region is in the page before the banner shows (a region that
        # appears already filled is not reliably read out)
        region = await page.evaluate("""() => {
            const r = document.getElementById('offline').closest('[role=status], [role=alert], [aria-live]');
            return r && !r.closest('[hidden]') ? (r.getAttribute('aria-live') || r.getAttribute('role')) : null;
        }""")
        assert region in ("status", "polite"), region
        await page.keyboard.press("Tab")  # the row's first action
        await expect(ready).to_be_focused()
        await asyncio.to_thread(srv.stop)
        await expect(page.locator("#offline")).to_be_visible()
        await expect(page.get_by_role("status")).to_have_text(re.compile(r"^Offline: reconnecting"), use_inner_text=True)
        await expect(ready).to_be_disabled()  # paused, and says so
        await expect(ready).to_be_focused()  # but the keyboard user's place is kept
        await page.keyboard.press("Enter")
        await expect(page.locator("#prompts")).to_contain_text("Not sent: the board is offline")
        await asyncio.to_thread(srv.start)
        await expect(page.get_by_role("status")).to_have_text("Back online.", use_inner_text=True, timeout=20_000)
        await expect(ready).to_be_enabled()
        await expect(ready).to_be_focused()
        await page.keyboard.press("Enter")
        await expect(page.locator(f'tr[data-order="{oid}"] td').nth(2)).to_have_text("ready")
    finally:
        await page.context.close()
        await ops.close()


async def test_pages_fit_a_360px_phone_and_its_cards_read_each_value_once(server: ServerProcess, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    ops, courier, oid = await carried_order(server, uid)
    mid = (await ops.get(oid))["merchant_id"]
    page = await open_page(browser, "about:blank")
    try:
        for path, ready in ((f"/merchant?token={server.token('merchant', mid)}", f'tr[data-order="{oid}"]'),
                            (f"/track/{oid}?token={server.token('customer', oid)}", '[data-marker="rider"]'),
                            (f"/ops?token={server.token('operator', 'ops')}", "[data-marker]")):
            await page.goto(server.base_url + path)
            await expect(page.locator(ready).first).to_be_attached()
            width = await page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
            assert width[0] <= width[1] == 360, (path, width)  # no scrolling sideways
        # on the kitchen board a row is a card whose values carry a label ("Order o7"): seen,
        # but a screen reader already says the column, so it hears the value alone
        await page.goto(server.base_url + f"/merchant?token={server.token('merchant', mid)}")
        row = page.locator(f'tr[data-order="{oid}"]')
        await expect(row.locator("td").first).to_have_css("display", "flex")  # (the card layout)
        await expect(row.get_by_role("cell", name=oid, exact=True)).to_have_count(1)
        await expect(row.get_by_role("cell", name="assigned", exact=True)).to_have_count(1)
    finally:
        await page.context.close()
        await courier.close()
        await ops.close()


async def test_ops_page_does_not_read_out_its_clock_and_names_its_table(server: ServerProcess, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    ops, courier, oid = await carried_order(server, uid)
    page = await open_page(browser, f"{server.base_url}/ops?token={server.token('operator', 'ops')}",
                           viewport={"width": 1280, "height": 800})
    try:
        await expect(page.locator("#updated")).to_contain_text("updated")
        # "updated 12:00:02" changes every 2 s: in a live region a screen reader would say it forever
        live = await page.locator("#updated").evaluate("e => e.closest('[aria-live], [role=status], [role=alert], [role=log]')?.outerHTML ?? null")
        assert live is None, live
        await expect(page.get_by_role("table", name=re.compile(r"^Riders \("))).to_be_visible()
        legend = await page.locator(".legend").aria_snapshot()
        assert not re.search("[●■◆⬢]", legend), legend
        assert "busy, silent" in legend
    finally:
        await page.context.close()
        await courier.close()
        await ops.close()


# What has the keyboard's focus, in words ("BODY" when it was dropped).
FOCUSED = """() => { const e = document.activeElement;
    return !e || e === document.body ? 'BODY' : e.id ? `#${e.id}` : (e.getAttribute('aria-label') || e.textContent).trim(); }"""


async def test_ops_order_panel_keeps_keyboard_focus_through_its_actions(own_redis, start_server, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """An action started from the keyboard leaves focus in the Order panel: on the same button
    when it is still offered (a refused cancel), else on the order's summary (a cancel done, an
    assignment done: their buttons went), never dropped to the page's start."""
    srv = start_server(NO_ROUNDS, redis=own_redis)
    mid, oid, other, rid = uid("m"), uid("o"), uid("o2"), uid("r")
    async with operator_and_rider(srv, rid, browser) as (ops, courier, page):
        await courier.location(PICKUP["lat"] + 0.002, PICKUP["lng"])
        for order in (oid, other):
            await confirmed_order(srv, ops, order, mid)
        answer_prompts(page, ["out of basil", "out of basil", rid])

        async def refuse(route: Route) -> None:  # someone changed the order meanwhile
            await route.fulfill(status=409, content_type="application/json",
                                body='{"error": {"code": "conflict", "message": "the order changed meanwhile"}}')

        await page.route(f"**/v1/orders/{oid}/cancel", refuse)
        await page.goto(f"{srv.base_url}/ops?token={srv.token('operator', 'ops')}&order={oid}")
        note = page.locator("#order-note")
        cancel = page.get_by_role("button", name="Cancel order")
        await cancel.focus()
        await page.keyboard.press("Enter")
        await expect(note).to_contain_text(f"Order {oid} was not cancelled: it changed meanwhile")
        await page.wait_for_timeout(300)  # (the order read again after the answer)
        assert await page.evaluate(FOCUSED) == "Cancel order"  # refused: still on its button
        await page.unroute(f"**/v1/orders/{oid}/cancel")
        await page.keyboard.press("Enter")  # again: cancelled, and the button goes
        await expect(note).to_have_text(f"Order {oid} cancelled.")
        await expect(page.locator("#order-actions")).to_have_text("Nothing to do: the order has ended.")
        await expect(page.locator("#order-summary")).to_be_focused()  # the order it was done to
        await page.keyboard.press("Tab")  # and on from there, not from the top of the page
        await expect(page.locator("#rider-filter")).to_be_focused()

        await page.locator("#order-id").fill(other)
        await page.keyboard.press("Enter")  # (in the look-up box)
        await expect(page.locator("#order-summary")).to_contain_text(f"{other}: confirmed")
        assign = page.get_by_role("button", name="Assign to a rider…")
        await assign.focus()
        await page.keyboard.press("Enter")
        await expect(note).to_have_text(f"Order {other} assigned to {rid}.")
        await expect(page.get_by_role("button", name=f"Take back from {rid}")).to_be_visible()
        await expect(page.locator("#order-summary")).to_be_focused()
        await page.wait_for_timeout(2500)  # a snapshot later, still there
        await expect(page.locator("#order-summary")).to_be_focused()


async def test_ops_riders_tables_keep_focus_on_the_same_rider(own_redis, start_server, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """Pause and Resume from the keyboard leave focus on that rider's new Resume or Pause button,
    and a rider coming online above it (the table sorted again) does not take focus away from
    the rider it was on, nor hand it to another."""
    srv = start_server(NO_ROUNDS, redis=own_redis)
    first, second, newcomer = uid("r1"), uid("r2"), uid("r0")  # (by id: r0, r1, r2)
    async with operator_and_rider(srv, first, browser) as (ops, courier, page):
        other = await rider(srv, second)
        late: list[object] = []
        try:
            for i, c in enumerate((courier, other)):
                await c.location(PICKUP["lat"] + 0.002 * i, PICKUP["lng"])
            answer_prompts(page, ["flat tyre"])
            await page.goto(f"{srv.base_url}/ops?token={srv.token('operator', 'ops')}")
            pause = page.get_by_role("button", name=f"Pause rider {second}: no new offers")
            await pause.focus()
            await page.keyboard.press("Enter")
            await expect(page.locator("#rider-note")).to_have_text(f"Rider {second} paused: no new offers until resumed.")
            in_riders = page.locator("#riders").get_by_role("button", name=f"Resume rider {second}: offers again")
            await expect(in_riders).to_be_focused()
            late.append(await rider(srv, newcomer))  # online above it: every row below moves down one
            await late[0].location(PICKUP["lat"] - 0.002, PICKUP["lng"])  # type: ignore[attr-defined]
            await expect(page.locator("#riders tr").first).to_have_attribute("data-rider", newcomer)
            await page.wait_for_timeout(2500)  # another snapshot or two
            await expect(in_riders).to_be_focused()
            # Resume in the Paused riders table: the rider leaves it; focus goes to its Pause button
            await page.locator("#paused-riders").get_by_role("button", name=f"Resume rider {second}: offers again").focus()
            await page.keyboard.press("Enter")
            await expect(page.locator("#rider-note")).to_have_text(f"Rider {second} resumed: it is offered orders again when available.")
            await expect(page.locator("#riders").get_by_role("button", name=f"Pause rider {second}: no new offers")).to_be_focused()
        finally:
            await other.close()
            for c in late:
                await c.close()  # type: ignore[attr-defined]


async def test_kitchen_board_keeps_focus_when_a_rows_buttons_all_go(own_redis, start_server, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """A row whose buttons all go while one has focus (its order cancelled from the keyboard, or
    its food collected by the rider) hands focus to the next order's first button, and with no
    order after it to the Orders heading: never to the top of the page."""
    srv = start_server(NO_ROUNDS, redis=own_redis)
    ops = Ops(srv)
    mid, rid = uid("m"), uid("r")
    first, second, third = uid("o1"), uid("o2"), uid("o3")
    kitchen = await merchant(srv, mid)
    courier = await rider(srv, rid)
    page = await open_page(browser, f"{srv.base_url}/merchant?token={srv.token('merchant', mid)}",
                           viewport={"width": 1280, "height": 800})
    try:
        answer_prompts(page, ["out of dough", "out of dough"])
        for oid in (first, second, third):
            assert (await ops.create(oid, mid)).status_code == 201
            await kitchen.confirm(oid)
            await kitchen.event(oid, "confirmed")
        for oid in (first, second, third):
            await expect(page.locator(f'tr[data-order="{oid}"]')).to_have_attribute("data-status", "confirmed")
        await page.get_by_role("button", name=f"Cancel order {first}").focus()
        await page.keyboard.press("Enter")  # (asked why)
        await expect(page.locator(f'tr[data-order="{first}"]')).to_have_attribute("data-status", "cancelled")
        await expect(page.get_by_role("button", name=f"Ready {second}")).to_be_focused()  # the next order's first
        # the rider collects the second order while focus is on its Cancel order
        await courier.location(PICKUP["lat"], PICKUP["lng"])
        await page.get_by_role("button", name=f"Cancel order {second}").focus()
        assert (await ops.assign(second, rid)).status_code == 200
        for step in ("at_pickup", "picked_up"):
            await courier.progress(second, step)
        await expect(page.locator(f'tr[data-order="{second}"]')).to_have_attribute("data-status", "picked_up")
        await expect(page.get_by_role("button", name=f"Ready {third}")).to_be_focused()
        # the last order with buttons: nothing after it, so the Orders heading
        await page.get_by_role("button", name=f"Cancel order {third}").focus()
        await page.wait_for_timeout(500)  # (right after a press, a row that moved up the board does not act for 0.4 s)
        await page.keyboard.press("Enter")
        await expect(page.locator(f'tr[data-order="{third}"]')).to_have_attribute("data-status", "cancelled")
        await expect(page.locator("#orders-title")).to_be_focused()
    finally:
        await page.context.close()
        await kitchen.close()
        await courier.close()
        await ops.close()


async def test_ops_failed_tasks_banner_is_read_out_once_per_set_of_failures(server: ServerProcess, browser: Browser) -> None:  # noqa: F811
    """The banner naming the background tasks that failed shows how long ago each failed, a
    time that changes every poll: seen, but read out only when what failed changes (it is a
    live region), not every 2 s."""
    page = await open_page(browser, "about:blank", viewport={"width": 1280, "height": 800})
    at = time.time() - 1
    failing = [{"name": "order-expiry", "last_error": "TimeoutError: Timeout reading from redis", "last_error_at": at}]

    watching = asyncio.Event()  # (no snapshot reaches the page before its live regions are watched)

    async def degraded(route: Route) -> None:  # the server's snapshot, with tasks that failed
        answer = await route.fetch()
        snap = await answer.json()
        snap["degraded"] = list(failing)
        await watching.wait()
        await route.fulfill(response=answer, body=json.dumps(snap))

    try:
        await page.route("**/v1/ops/snapshot*", degraded)
        await page.goto(f"{server.base_url}/ops?token={server.token('operator', 'ops')}")
        await page.evaluate(WATCH_LIVE_REGIONS)
        watching.set()
        banner = page.locator("#degraded")
        await expect(banner).to_contain_text("order-expiry (TimeoutError: Timeout reading from redis, last ")
        region = await banner.evaluate("b => b.closest('[role=status], [aria-live]').id")
        shown = [await banner.text_content()]
        for _ in range(3):  # three polls: the age goes on, what failed stays
            await expect(banner).not_to_have_text(shown[-1] or "", timeout=5000)
            shown.append(await banner.text_content())
        spoken = [t for r, t in await page.evaluate("window.__spoken") if r == region]
        assert len(spoken) == 1 and spoken[0].startswith("Background tasks of this server process failed"), spoken
        assert not re.search(r"\d+ s ago", spoken[0]), spoken  # (the age: seen, not read)
        failing.append({"name": "dispatch-loop", "last_error": "TimeoutError: Timeout reading from redis", "last_error_at": at})
        await expect(banner).to_contain_text("order-expiry, dispatch-loop (TimeoutError")
        spoken = [t for r, t in await page.evaluate("window.__spoken") if r == region]
        assert len(spoken) == 2 and "dispatch-loop" in spoken[1], spoken  # something new: said
    finally:
        await page.context.close()


async def test_tracking_page_says_once_that_the_riders_position_is_old(own_redis, start_server, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """A silent rider's note says how long ago its position came ("7 min ago"), which changes
    every minute: seen, but read out once, when the rider went silent (the note is in a live
    region). The server's clock runs 60 times faster here: a minute is 1 s."""
    fast = start_server({"TRACKER_TIME_SCALE": "60", "TRACKER_SILENT_TAKE_BACK_S": "0"}, redis=own_redis)
    ops = Ops(fast)
    oid, mid, rid = uid("o"), uid("m"), uid("r")
    courier = await rider(fast, rid)
    try:
        await confirmed_order(fast, ops, oid, mid)
        await courier.location(PICKUP["lat"] - 0.004, PICKUP["lng"])
        assert (await ops.assign(oid, rid)).status_code == 200
        page = await open_page(browser, f"{fast.base_url}/track/{oid}?token={fast.token('customer', oid)}")
        await expect(page.locator('[data-marker="rider"]')).to_have_count(1)
        note = page.locator("#rider-note")
        await expect(note).to_be_visible(timeout=5000)  # (its fix is already old at 60 times the speed)
        await page.evaluate(WATCH_LIVE_REGIONS)
        await courier.location(PICKUP["lat"] - 0.0039, PICKUP["lng"])  # a fix, then the phone goes quiet
        await expect(page.locator('[data-marker="rider"]')).to_have_attribute("data-lat", str(PICKUP["lat"] - 0.0039))
        await expect(note).to_contain_text(re.compile(r"last updated [3-9] min ago"), timeout=10_000)  # (seen going on)
        region = await note.evaluate("n => n.closest('[aria-live]')")
        spoken = [t for _, t in await page.evaluate("window.__spoken") if "position" in t]
        assert len(spoken) == 1, spoken  # once, when it went silent again
        assert "min ago" not in spoken[0] and "minute ago" not in spoken[0], spoken
        assert region is not None
    finally:
        await page.context.close()
        await courier.close()
        await ops.close()


# Texts in `selector` that the browser broke across lines: [text, lines] of each one drawn on more than one.
BROKEN_ACROSS_LINES = """(selector) => [...document.querySelectorAll(selector)].map((el) => {
    const r = document.createRange(); r.selectNodeContents(el);
    return [el.textContent, new Set([...r.getClientRects()].map((c) => Math.round(c.top))).size];
}).filter(([, lines]) => lines > 1)"""


async def test_ops_tables_break_no_word_in_the_middle(own_redis, start_server, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """The tables let ids and reasons wrap anywhere (a 64-character id must not widen a phone's
    page), but not the words of a button or a card's label: "Pause", not "Paus" over "e"; and a
    rider carrying two orders shows them apart, not run together."""
    srv = start_server(NO_ROUNDS, redis=own_redis)
    mid, rid, idle = uid("m"), uid("r"), uid("r-idle")
    orders = [uid("o1"), uid("o2"), uid("o3")]
    async with operator_and_rider(srv, rid, browser) as (ops, courier, page):
        other = await rider(srv, idle)
        try:
            await courier.location(PICKUP["lat"] + 0.002, PICKUP["lng"])
            await other.location(PICKUP["lat"] - 0.002, PICKUP["lng"])
            for oid in orders:
                await confirmed_order(srv, ops, oid, mid)
            for oid in orders[:2]:
                assert (await ops.assign(oid, rid)).status_code == 200
            paused = await ops.client.post(f"/v1/riders/{idle}/pause", json={"reason": "chain came off on the bridge again"})
            assert paused.status_code == 200, paused.text
            await page.goto(f"{srv.base_url}/ops?token={srv.token('operator', 'ops')}")
            carried = page.locator(f'#riders tr[data-rider="{rid}"] [data-open-order]')
            await expect(carried).to_have_text(orders[:2])
            for width in (1280, 320):
                await page.set_viewport_size({"width": width, "height": 800})
                await expect(page.locator('#riders [data-rider-action="resume"]').first).to_be_visible()
                one, two = [await c.bounding_box() for c in await carried.all()]
                assert one and two
                apart = max(two["y"] - (one["y"] + one["height"]), two["x"] - (one["x"] + one["width"]))
                assert apart >= 4, (width, one, two)  # one under the other or side by side, with room between
                broken = await page.evaluate(BROKEN_ACROSS_LINES, "[data-rider-action]")  # (ids may wrap)
                assert not broken, (width, broken)
                assert await page.evaluate("[document.documentElement.scrollWidth, innerWidth]") == [width, width]
                await shot(page, f"ops-tables-{width}")
            # a card's labels ("Estimated drop-off") break between words, if at all; ids anywhere
            labels = await page.locator('#waiting td[data-label="Estimated drop-off"]').evaluate(
                "td => [getComputedStyle(td, '::before').content, getComputedStyle(td, '::before').overflowWrap]")
            assert "Estimated drop-off" in labels[0] and labels[1] == "normal", labels
            await expect(page.locator(f'#waiting [data-open-order="{orders[2]}"]')).to_have_css("overflow-wrap", "anywhere")
        finally:
            await other.close()


# Each rider marker's look, as drawn: [fill, stroke, stroke width, dashes, scale], by rider id.
MARKER_LOOKS = """() => Object.fromEntries([...document.querySelectorAll('#map [data-marker]')].map((m) => {
    const cs = getComputedStyle(m);
    return [m.dataset.marker, [cs.fill, cs.stroke, cs.strokeWidth, cs.strokeDasharray, cs.transform]];
}))"""


async def test_ops_map_tells_rider_states_apart_by_more_than_colour_also_in_forced_colours(own_redis, start_server, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """Offered and busy riders differ by shape (a ring against a filled dot), not by a brown and
    a red that look alike to a deuteranope, and so do unavailable ones; the legend shows each as
    the map does. In forced colours (Windows High Contrast) the map keeps its colours, and so
    does the legend (it had turned every glyph the text's colour)."""
    srv = start_server(NO_ROUNDS, redis=own_redis)
    ids = {state: uid(f"r-{state}") for state in ("free", "offered", "busy", "unavailable")}
    ops = Ops(srv)
    couriers = [await rider(srv, rid) for rid in ids.values()]
    by_id = {rid: state for state, rid in ids.items()}

    async def states(route: Route) -> None:  # the server's snapshot, one rider in each state
        answer = await route.fetch()
        snap = await answer.json()
        for r in snap["riders"]:
            r["state"] = by_id.get(r["id"], r["state"])
        await route.fulfill(response=answer, body=json.dumps(snap))

    try:
        for i, c in enumerate(couriers):
            await c.location(PICKUP["lat"] + 0.002 * i, PICKUP["lng"])
        for forced in ("none", "active"):
            page = await open_page(browser, "about:blank", viewport={"width": 1280, "height": 800}, forced_colors=forced)
            try:
                await page.route("**/v1/ops/snapshot*", states)
                await page.goto(f"{srv.base_url}/ops?token={srv.token('operator', 'ops')}")
                await expect(page.locator("#map [data-marker]")).to_have_count(4)
                looks = {by_id[rid]: look for rid, look in (await page.evaluate(MARKER_LOOKS)).items()}
                shape = {state: (look[0] == "rgb(255, 255, 255)", *look[2:]) for state, look in looks.items()}  # all but colour
                await shot(page, f"ops-riders-forced-{forced}")
                assert shape["offered"] != shape["busy"] and shape["unavailable"] != shape["busy"], looks
                assert shape["offered"] != shape["unavailable"], looks
                assert len({look[0] for look in looks.values()}) >= 3, looks  # (and colours, where there are)
                legend = await page.locator("#legend i").evaluate_all("is => is.map((i) => [i.textContent, getComputedStyle(i).color, i.style.color])")
                assert len({colour for _, colour, _ in legend}) >= 5, legend  # not all one colour
                assert all(page_colour == own for _, page_colour, own in legend if own.startswith("rgb")), legend
            finally:
                await page.context.close()
    finally:
        for c in couriers:
            await c.close()
        await ops.close()


async def test_tracking_timeline_done_steps_stay_filled_in_forced_colours(server: ServerProcess, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """A step done is a filled dot, one to come a hollow one: in forced colours (Windows High
    Contrast) too, where the fill's colour is replaced by the page's background (every dot hollow)."""
    ops = Ops(server)
    oid, mid = uid("o"), uid("m")
    try:
        await confirmed_order(server, ops, oid, mid)
        for forced in ("none", "active"):
            page = await open_page(browser, f"{server.base_url}/track/{oid}?token={server.token('customer', oid)}", forced_colors=forced)
            try:
                await expect(page.locator('#timeline li[data-kind="confirmed"]')).to_have_class("done")
                dots = await page.locator("#timeline li").evaluate_all("""lis => lis.map((li) => [li.dataset.kind,
                    li.classList.contains('done'), getComputedStyle(li, '::before').backgroundColor])""")
                done = {colour for _, is_done, colour in dots if is_done}
                to_come = {colour for _, is_done, colour in dots if not is_done}
                assert len(done) == 1 and len(to_come) == 1 and done != to_come, (forced, dots)
                page_colour = await page.evaluate("getComputedStyle(document.body).backgroundColor")
                assert done != {page_colour}, (forced, dots, page_colour)  # filled, not the page showing through
            finally:
                await page.context.close()
    finally:
        await ops.close()


async def test_pages_follow_the_browsers_text_size_setting(server: ServerProcess, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """A reader who sets the browser's default text size larger (here twice the usual 16 px)
    gets the pages' text larger: it is not pinned to 16 px."""
    ops = Ops(server)
    oid, mid = uid("o"), uid("m")
    page = await open_page(browser, "about:blank")
    try:
        assert (await ops.create(oid, mid)).status_code == 201
        cdp = await page.context.new_cdp_session(page)
        await cdp.send("Page.enable")
        await cdp.send("Page.setFontSizes", {"fontSizes": {"standard": 32}})
        for path, ready in ((f"/track/{oid}?token={server.token('customer', oid)}", "#timeline li"),
                            (f"/merchant?token={server.token('merchant', mid)}", f'tr[data-order="{oid}"]'),
                            (f"/ops?token={server.token('operator', 'ops')}", "#figures div")):
            await page.goto(server.base_url + path)
            await expect(page.locator(ready).first).to_be_attached()
            sizes = await page.evaluate("""() => [document.documentElement, document.body, document.querySelector('h2')]
                .map((e) => getComputedStyle(e).fontSize)""")
            assert sizes == ["32px", "32px", "32px"], (path.split("?")[0], sizes)
    finally:
        await page.context.close()
        await ops.close()


# The boxes around `el` that scroll on their own (their content taller than they are), by id or class.
SCROLL_BOXES_AROUND = """(el) => { const boxes = [];
    for (let e = el.parentElement; e && e !== document.body; e = e.parentElement) {
        if (/auto|scroll/.test(getComputedStyle(e).overflowY) && e.scrollHeight > e.clientHeight + 1) boxes.push(e.id || e.className);
    }
    return boxes; }"""


async def test_short_screens_keep_what_matters_in_view(server: ServerProcess, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """A short screen (a 1920x1080 screen at 200% zoom: 960x540; a phone turned sideways:
    740x360) does not hide the ops Order panel's actions in a small scroll box of their own (the
    side column stays in view only on a tall screen), and the tracking page shows the ETA beside
    the map, not two screens below it."""
    ops, courier, oid = await carried_order(server, uid)
    page = await open_page(browser, "about:blank", viewport={"width": 960, "height": 540})
    try:
        await page.goto(f"{server.base_url}/ops?token={server.token('operator', 'ops')}&order={oid}")
        actions = page.locator("#order-actions")
        await expect(actions.get_by_role("button", name="Cancel order")).to_be_visible()
        assert await actions.evaluate(SCROLL_BOXES_AROUND) == []
        await shot(page, "ops-960x540")
        await page.set_viewport_size({"width": 1920, "height": 1080})  # tall enough: the panel stays in view
        await expect(page.locator("main.ops > section.side")).to_have_css("position", "sticky")
        await page.set_viewport_size({"width": 740, "height": 360})
        await page.goto(f"{server.base_url}/track/{oid}?token={server.token('customer', oid)}")
        await expect(page.locator("#eta")).to_have_text(re.compile(r"\d+ min"))
        eta, map_box = await page.locator("#eta").bounding_box(), await page.locator("#map").bounding_box()
        assert eta and map_box and eta["y"] + eta["height"] <= 360, eta  # on the first screen
        assert map_box["height"] <= 360, map_box
        assert await page.evaluate("[document.documentElement.scrollWidth, innerWidth]") == [740, 740]
        await shot(page, "track-740x360")
    finally:
        await page.context.close()
        await courier.close()
        await ops.close()


def contrast(a: list[float], b: list[float]) -> float:
    """WCAG contrast ratio of two sRGB colours (0-255)."""
    def lum(c: list[float]) -> float:
        f = [v / 255 / 12.92 if v / 255 <= 0.04045 else ((v / 255 + 0.055) / 1.055) ** 2.4 for v in c]
        return 0.2126 * f[0] + 0.7152 * f[1] + 0.0722 * f[2]
    hi, lo = sorted((lum(a), lum(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


# A button's text and background colours as seen (its opacity over the white card), and its border's.
SEEN_COLOURS = """(b) => {
    const cs = getComputedStyle(b), rgb = (s) => s.match(/[\\d.]+/g).slice(0, 3).map(Number);
    const k = Number(cs.opacity), over = (c) => c.map((v) => k * v + (1 - k) * 255);
    return [over(rgb(cs.color)), over(rgb(cs.backgroundColor)), over(rgb(cs.borderTopColor))];
}"""


async def test_kitchen_board_says_beside_a_greyed_delay_why_it_is_greyed(server: ServerProcess, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """An order delayed as often as it may be keeps its Delay button, greyed: why is written
    beside it (a title, shown on hover only, reaches neither a finger nor the keyboard) and is the
    button's description; greyed, its words and edge can still be read (3:1 at least)."""
    ops = Ops(server)
    oid, mid = uid("o"), uid("m")
    tablet = await merchant(server, mid)
    page = await open_page(browser, f"{server.base_url}/merchant?token={server.token('merchant', mid)}")
    try:
        await delayed_to_its_cap(ops, tablet, oid, mid)
        delay = page.get_by_role("button", name=f"Delay 5 min {oid}")
        await expect(delay).to_have_attribute("aria-disabled", "true")
        why = page.locator(f'tr[data-order="{oid}"] td.actions').get_by_text("Delayed as often as an order may be")
        await expect(why).to_be_visible()
        await expect(delay).to_have_accessible_description("Delayed as often as an order may be")
        text, background, edge = await delay.evaluate(SEEN_COLOURS)
        assert contrast(text, background) >= 3 and contrast(edge, [255, 255, 255]) >= 3, (text, background, edge)
    finally:
        await page.context.close()
        await tablet.close()
        await ops.close()


async def test_ops_page_says_it_is_loading_until_its_first_snapshot(server: ServerProcess, browser: Browser) -> None:  # noqa: F811
    """Until the first snapshot comes the page says it is loading, rather than showing empty
    headings that look like a quiet fleet."""
    page = await open_page(browser, "about:blank", viewport={"width": 1280, "height": 800})
    held: list[Route] = []

    async def hold(route: Route) -> None:
        held.append(route)

    try:
        await page.route("**/v1/ops/snapshot*", hold)
        await page.goto(f"{server.base_url}/ops?token={server.token('operator', 'ops')}")
        for _ in range(100):
            if held:
                break
            await asyncio.sleep(0.05)
        await expect(page.locator("#updated")).to_have_text("Loading…")
        await expect(page.locator("#figures")).to_have_text("Loading…")
        await held[0].continue_()
        await page.unroute("**/v1/ops/snapshot*")
        await expect(page.locator("#updated")).to_contain_text("updated")
        await expect(page.locator("#figures")).not_to_contain_text("Loading")
    finally:
        await page.context.close()


async def test_tracking_legend_lists_nothing_before_the_map_draws_it(server: ServerProcess, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """While the order loads the map is empty: its legend does not list a restaurant and an
    address it does not show yet."""
    ops = Ops(server)
    oid, mid = uid("o"), uid("m")
    page = await open_page(browser, "about:blank")
    held: list[Route] = []

    async def hold(route: Route) -> None:
        held.append(route)

    try:
        assert (await ops.create(oid, mid)).status_code == 201
        await page.route(f"**/v1/orders/{oid}", hold)
        await page.goto(f"{server.base_url}/track/{oid}?token={server.token('customer', oid)}")
        for _ in range(100):
            if held:
                break
            await asyncio.sleep(0.05)
        await expect(page.locator("#status")).to_have_text("Loading…")
        await expect(page.locator(".legend")).to_be_hidden()
        await held[0].continue_()
        await page.unroute(f"**/v1/orders/{oid}")
        await expect(page.locator('#map [data-id="restaurant"]')).to_have_count(1)
        await expect(page.locator(".legend")).to_be_visible()
        await expect(page.locator(".legend")).to_contain_text("restaurant")
    finally:
        await page.context.close()
        await ops.close()
