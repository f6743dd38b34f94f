"""The pages as their users work with them, in a real headless Chromium against a real server:
a kitchen board that puts what needs the kitchen first, keeps keyboard focus, pauses its
buttons while offline and clears prompts that no longer hold; a tracking page whose map
widens to a far rider and that says plainly when the rider is at the door or the order was
cancelled; an ops page that counts orders still waiting for their kitchen and riders who are
not taking orders apart."""
from __future__ import annotations

import asyncio
import re
import uuid

import pytest
from playwright.async_api import Browser, Page, expect

from clients.merchant import MerchantClient
from clients.rider import RiderClient
from tests.orders_helpers import PICKUP, Ops, merchant, rider
from tests.test_pages import browser, new_page, wall_clock  # noqa: F401 - the module's Chromium fixture
from tracker.launcher import ServerProcess


async def test_kitchen_board_lists_orders_to_confirm_first_and_keeps_keyboard_focus(server: ServerProcess, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]
    ops = Ops(server)
    mid = uid("m")
    cooking, to_confirm, newest = uid("o-cooking"), uid("o-confirm"), uid("o-new")
    kitchen = await merchant(server, mid)
    page = await new_page(browser)
    try:
        assert (await ops.create(cooking, mid)).status_code == 201
        await kitchen.confirm(cooking)
        await kitchen.event(cooking, "confirmed")
        assert (await ops.create(to_confirm, mid)).status_code == 201
        await page.goto(f"{server.base_url}/merchant?token={server.token('merchant', mid)}")
        await expect(page.locator("#merchant")).to_have_text(mid)  # whose board this is
        rows = page.locator("#orders tr")
        await expect(rows).to_have_count(2)
        assert await rows.evaluate_all("rs => rs.map((r) => r.dataset.order)") == [to_confirm, cooking]
        await expect(rows.first.locator("td").nth(3)).to_have_text(re.compile(r"\d{1,2}:\d{2}"))  # when it was placed
        ready = page.get_by_role("button", name=f"Ready {cooking}")
        await ready.focus()
        assert (await ops.create(newest, mid)).status_code == 201  # the board changes under the keyboard
        await expect(rows).to_have_count(3)
        await expect(ready).to_be_focused()
        await page.keyboard.press("Enter")  # and the key still acts on that order
        await expect(page.locator(f'tr[data-order="{cooking}"] td').nth(2)).to_have_text("ready")
        await page.get_by_role("button", name=f"Confirm {to_confirm}").focus()
        await page.keyboard.press("Enter")  # Confirm is gone once done: focus moves on within the row
        await expect(page.get_by_role("button", name=f"Ready {to_confirm}")).to_be_focused()
    finally:
        await page.context.close()
        await kitchen.close()
        await ops.close()


async def test_kitchen_board_fits_a_phone(server: ServerProcess, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]
    """On a phone the board's rows become cards: nothing wider than the screen, every button
    in reach without scrolling sideways, even with long order ids."""
    ops = Ops(server)
    mid = uid("m")
    oid = uid("o-" + "x" * 40)
    page = await new_page(browser, mobile=True)
    try:
        assert (await ops.create(oid, mid)).status_code == 201
        await page.goto(f"{server.base_url}/merchant?token={server.token('merchant', mid)}")
        await page.get_by_role("button", name=f"Confirm {oid}").click()
        delay = page.get_by_role("button", name=f"Delay 5 min {oid}")
        await expect(delay).to_be_visible()
        width = await page.evaluate("window.innerWidth")
        assert await page.evaluate("document.documentElement.scrollWidth") <= width
        for name in (f"Ready {oid}", f"Delay 5 min {oid}", f"Cancel order {oid}"):
            box = await page.get_by_role("button", name=name).bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width, (name, box, width)
    finally:
        await page.context.close()
        await ops.close()


async def test_kitchen_board_pauses_its_buttons_while_offline(start_server, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]
    """An action pressed while the board is offline would be lost: the buttons wait instead."""
    srv = start_server()
    ops = Ops(srv)
    oid, mid = uid("o"), uid("m")
    page = await new_page(browser)
    try:
        assert (await ops.create(oid, mid)).status_code == 201
        await page.goto(f"{srv.base_url}/merchant?token={srv.token('merchant', mid)}")
        confirm = page.get_by_role("button", name=f"Confirm {oid}")
        await expect(confirm).to_be_enabled()
        await asyncio.to_thread(srv.stop)
        await expect(page.locator("#offline")).to_be_visible()
        await expect(confirm).to_be_disabled()
        await asyncio.to_thread(srv.start)
        await expect(confirm).to_be_enabled(timeout=20_000)
        await confirm.click()
        await expect(page.locator(f'tr[data-order="{oid}"]')).to_have_attribute("data-status", "confirmed")
        assert (await ops.get(oid))["status"] == "confirmed"
        delay = page.get_by_role("button", name=f"Delay 5 min {oid}")
        await page.wait_for_timeout(500)  # (right after a press, a row whose buttons changed does not act for 0.4 s)
        await delay.dblclick()  # a double press acts once: the second waits for the first's answer
        await expect(page.locator(f'tr[data-order="{oid}"] td').nth(2)).to_contain_text("delayed to")
        await expect(delay).to_be_focused()
        await page.wait_for_timeout(500)

        async def delays() -> int:
            return [e["kind"] for e in (await ops.get(oid))["events"]].count("food_delayed")

        assert await delays() == 1
        await page.wait_for_timeout(700)  # over a second since: a press of its own
        # answered, and pressed again at once, as a double tap does on a quick server (done in
        # the page: the test process, late on a loaded machine, would press a second or more on)
        await delay.evaluate(PRESS_AGAIN_ONCE_ANSWERED)
        assert await delays() == 2  # (the first was answered)
        await page.wait_for_timeout(500)
        assert await delays() == 2
    finally:
        await page.context.close()
        await ops.close()


# Press a kitchen board's button, and press the same one again as soon as the board shows the
# answer (its row no longer waiting): resolves once pressed twice.
PRESS_AGAIN_ONCE_ANSWERED = """(b) => new Promise((resolve) => {
    const order = b.closest('tr').dataset.order, action = b.dataset.action;
    const now = () => document.querySelector(`tr[data-order="${CSS.escape(order)}"] [data-action="${action}"]`);
    let waited = false;
    const watch = new MutationObserver(() => {
        const button = now();
        if (button && button.getAttribute('aria-disabled') === 'true') waited = true;
        else if (button && waited) { watch.disconnect(); button.click(); resolve(); }
    });
    watch.observe(document.getElementById('orders'), { subtree: true, childList: true, attributes: true });
    b.click();
})"""


# Once the board draws order `id` confirmed, press again at once, in the page: Enter on what has
# the keyboard's focus (a button's Enter is its click), or, given [x, y], a tap there. Puts what
# was pressed (its name) in window.__again.
AGAIN_ONCE_CONFIRMED = """([id, at]) => {
    window.__again = null;
    const watch = new MutationObserver(() => {
        if (document.querySelector(`tr[data-order="${CSS.escape(id)}"]`)?.dataset.status !== 'confirmed') return;
        watch.disconnect();
        const target = at ? document.elementFromPoint(at[0], at[1]) : document.activeElement;
        window.__again = target ? (target.getAttribute('aria-label') || target.tagName) : '';
        target?.click();
    });
    watch.observe(document.getElementById('orders'), { subtree: true, childList: true, attributes: true });
}"""


async def test_a_second_press_never_lands_on_the_button_or_order_that_slid_under_it(server: ServerProcess, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]
    """Confirm answered, Ready takes its place and the confirmed order moves down the board: a
    second Enter, or a second tap at the same spot, right after must not mark the food ready or
    act on the order that moved up into its place."""
    ops = Ops(server)
    mid = uid("m")
    first, second, third = uid("o1"), uid("o2"), uid("o3")
    page = await new_page(browser, mobile=True)
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), asyncio.ensure_future(d.dismiss())))
    try:
        for oid in (first, second, third):
            assert (await ops.create(oid, mid)).status_code == 201
        await page.goto(f"{server.base_url}/merchant?token={server.token('merchant', mid)}")
        await expect(page.locator("body")).to_have_attribute("data-online", "yes")
        # (each second press is made in the page the moment the answer is drawn: the test
        # process, late on a loaded machine, would press after the 0.4 s the guard lasts)
        # the keyboard: Enter on Confirm, and Enter again as soon as the answer is in
        await page.get_by_role("button", name=f"Confirm {first}").focus()
        await page.evaluate(AGAIN_ONCE_CONFIRMED, [first, None])
        await page.keyboard.press("Enter")
        await expect(page.locator(f'tr[data-order="{first}"]')).to_have_attribute("data-status", "confirmed")
        assert await page.evaluate("window.__again") == "Ready " + first  # focus went on to the row's Ready
        # the finger: tap Confirm, and tap the same spot again as soon as the board moved
        await page.wait_for_timeout(700)
        box = await page.get_by_role("button", name=f"Confirm {second}").bounding_box()
        assert box is not None
        x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        await page.evaluate(AGAIN_ONCE_CONFIRMED, [second, [x, y]])
        await page.mouse.click(x, y)
        await expect(page.locator(f'tr[data-order="{second}"]')).to_have_attribute("data-status", "confirmed")
        assert await page.evaluate("window.__again") is not None  # whatever slid under the finger now
        await page.wait_for_timeout(1000)
        kinds = {oid: [e["kind"] for e in (await ops.get(oid))["events"]] for oid in (first, second, third)}
        assert kinds == {first: ["placed", "confirmed"], second: ["placed", "confirmed"], third: ["placed"]}, kinds
        assert dialogs == []  # no "Cancel order ...?" opened either
        # a moment later the buttons act again, as pressed
        await page.get_by_role("button", name=f"Confirm {third}").click()
        await expect(page.locator(f'tr[data-order="{third}"]')).to_have_attribute("data-status", "confirmed")
    finally:
        await page.context.close()
        await ops.close()


async def board_with_a_rider_assigned(server: ServerProcess, uid, browser: Browser) -> tuple[Ops, str, MerchantClient, RiderClient, Page]:  # type: ignore[no-untyped-def]
    """A confirmed order (15 minutes' preparation) on its kitchen's board, open and live, and a
    rider just assigned to it (its next fix is one of a rider on the way); the caller closes
    the page's context, the kitchen, the rider and ``Ops``."""
    ops = Ops(server)
    oid, mid, rid = uid("o"), uid("m"), uid("r")
    kitchen = await merchant(server, mid)
    courier = await rider(server, rid)
    page = await new_page(browser)
    await ops.create(oid, mid, prep_minutes=15)
    await kitchen.confirm(oid)
    await kitchen.event(oid, "confirmed")
    await page.goto(f"{server.base_url}/merchant?token={server.token('merchant', mid)}")
    await expect(page.locator("body")).to_have_attribute("data-online", "yes")  # prompts are live only
    await ops.assign(oid, rid)
    await courier.expect("assigned")
    return ops, oid, kitchen, courier, page


@pytest.mark.parametrize("moot", ["the rider gives the order back", "the kitchen delays the food"])
async def test_kitchen_board_drops_a_start_plating_prompt_made_moot(moot: str, server: ServerProcess, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]
    """"Start plating" is timed to the rider on its way and the food's ready time: it goes when
    nobody is on the way any more, or when the kitchen says it needs longer (the rider will wait
    at the counter, and the board says until when)."""
    ops, oid, kitchen, courier, page = await board_with_a_rider_assigned(server, uid, browser)
    try:
        await courier.location(PICKUP["lat"] + 0.01, PICKUP["lng"])
        prompts = page.locator(f'.prompt[data-order="{oid}"]')
        await expect(prompts.first).to_contain_text("start plating")
        row = page.locator(f'tr[data-order="{oid}"]')
        if moot == "the rider gives the order back":
            await courier.release(oid, "flat tyre")
            await expect(row).to_have_attribute("data-status", "confirmed")
        else:
            await row.locator("button", has_text="Delay").first.click()
            await expect(row).to_contain_text("delayed to")
        await expect(prompts).to_have_count(0)
    finally:
        await page.context.close()
        await kitchen.close()
        await courier.close()
        await ops.close()


async def test_tracking_page_shows_a_far_rider_the_door_and_a_cancellation(server: ServerProcess, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]
    ops = Ops(server)
    oid, gone, mid, rid = uid("o"), uid("o-gone"), uid("m"), uid("r")
    kitchen = await merchant(server, mid)
    courier = await rider(server, rid)
    page = await new_page(browser, mobile=True)
    try:
        await ops.create(oid, mid)
        await kitchen.confirm(oid)
        await kitchen.event(oid, "confirmed")
        await page.goto(f"{server.base_url}/track/{oid}?token={server.token('customer', oid)}")
        await expect(page.locator("#status")).to_have_attribute("data-status", "confirmed")
        await courier.location(PICKUP["lat"] - 0.03, PICKUP["lng"] - 0.03)  # about 4 km away
        await ops.assign(oid, rid)
        marker = page.locator('[data-marker="rider"]')
        await expect(marker).to_have_count(1)
        await page.wait_for_timeout(1000)  # it glides into place
        cx, cy = float(await marker.get_attribute("cx") or "nan"), float(await marker.get_attribute("cy") or "nan")
        assert 0 <= cx <= 800 and 0 <= cy <= 600, (cx, cy)  # on the map, not beyond its edge
        for step in ("at_pickup", "picked_up", "at_dropoff"):
            await courier.progress(oid, step)
        await expect(page.locator("#status")).to_have_attribute("data-status", "at_dropoff")
        await expect(page.locator("#eta")).to_have_text("now")
        await courier.location(PICKUP["lat"] + 0.01, PICKUP["lng"] + 0.015)
        await page.wait_for_timeout(1500)
        await expect(page.locator("#eta")).to_have_text("now")  # not "2 min" while the rider rings
        await page.reload()
        await expect(page.locator("#status")).to_have_attribute("data-status", "at_dropoff")
        await expect(page.locator("#eta")).to_have_text("now")  # and after a reload (the order still has an eta)

        await ops.create(gone, mid)
        resp = await ops.client.post(f"/v1/orders/{gone}/cancel", json={"reason": "kitchen closed early"})
        assert resp.status_code == 200, resp.text
        await page.goto(f"{server.base_url}/track/{gone}?token={server.token('customer', gone)}")
        await expect(page.locator("#status")).to_have_text("Cancelled by the service: kitchen closed early")
        await expect(page.locator("#eta-line")).to_be_hidden()
        steps = await page.locator("#timeline li").evaluate_all("ls => ls.map((l) => l.dataset.kind)")
        assert steps == ["placed", "cancelled"], steps  # no steps that will never come
        dots = await page.locator("#timeline li").evaluate_all(
            "ls => ls.map((l) => getComputedStyle(l, '::before').backgroundColor)")
        assert dots[0] != dots[1], dots  # the ending is not drawn like the success of a step

        wordy = uid("o-wordy")  # one unbroken 200-character reason wraps on a phone, on both pages
        await ops.create(wordy, mid)
        resp = await ops.client.post(f"/v1/orders/{wordy}/cancel", json={"reason": "W" * 200})
        assert resp.status_code == 200, resp.text
        board = await new_page(browser, mobile=True)
        try:
            await page.goto(f"{server.base_url}/track/{wordy}?token={server.token('customer', wordy)}")
            await board.goto(f"{server.base_url}/merchant?token={server.token('merchant', mid)}")
            await expect(page.locator("#status")).to_contain_text("WWW")
            await expect(board.locator(f'tr[data-order="{wordy}"]')).to_contain_text("WWW")
            for shown in (page, board):
                width = await shown.evaluate("document.scrollingElement.scrollWidth")
                assert width <= 390, width  # no sideways scrolling
        finally:
            await board.context.close()
    finally:
        await page.context.close()
        await kitchen.close()
        await courier.close()
        await ops.close()


async def test_ops_page_counts_orders_at_the_kitchen_and_riders_off_duty(own_redis, start_server, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]
    srv = start_server({"TRACKER_DISPATCH_INTERVAL_S": "3600"}, redis=own_redis)
    ops = Ops(srv)
    mid = uid("m")
    waiting, to_confirm = uid("o-wait"), uid("o-new")
    on_id = uid("r-on")
    on, off = await rider(srv, on_id), await rider(srv, uid("r-off"))
    kitchen = await merchant(srv, mid)
    page = await new_page(browser)
    try:
        await on.location(PICKUP["lat"], PICKUP["lng"])  # standing at the restaurant
        await off.availability(False)
        await off.location(PICKUP["lat"] + 0.004, PICKUP["lng"])
        await ops.create(waiting, mid)
        await kitchen.confirm(waiting)
        await kitchen.event(waiting, "confirmed")
        await ops.create(to_confirm, mid)
        await page.goto(f"{srv.base_url}/ops?token={srv.token('operator', 'ops')}")
        figure = lambda name: page.locator(f'[data-figure="{name}"] b')  # noqa: E731
        await expect(figure("orders waiting for the kitchen")).to_have_text("1")
        await expect(figure("orders waiting for a rider")).to_have_text("1")
        await expect(figure("riders online")).to_have_text("1")
        await expect(figure("riders unavailable")).to_have_text("1")
        # the rider standing at the restaurant is drawn over the waiting order's mark, which
        # still shows around it
        dot = page.locator(f'[data-layer="points"] [data-id="kitchen:{mid}"]')
        await expect(dot).to_have_count(1)
        box = await dot.bounding_box()
        assert box is not None
        hit = lambda x, y: page.evaluate("([x, y]) => { const e = document.elementFromPoint(x, y); return e?.dataset.id || e?.dataset.marker || null; }", [x, y])  # noqa: E731
        assert await hit(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2) == on_id
        assert await hit(box["x"] + 1.5, box["y"] + 1.5) == f"kitchen:{mid}"
    finally:
        await page.context.close()
        await kitchen.close()
        await on.close()
        await off.close()
        await ops.close()


async def test_long_unbroken_ids_fit_a_phone_on_every_page(server: ServerProcess, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]
    """Order ids as platforms make them (uuid4().hex: 32 characters with no hyphen to wrap at),
    and longer ones up to the 64 the server takes, wrap on a 390 px phone: no page is wider than
    the screen, the tracking page's heading included."""
    ops = Ops(server)
    mid = ("m" + uuid.uuid4().hex * 2)[:64]  # the longest kitchen id the server takes
    ids = [uuid.uuid4().hex, "o" + uuid.uuid4().hex + "x" * 23]  # 32 and 56 characters
    page = await new_page(browser, mobile=True)
    try:
        for oid in ids:
            assert (await ops.create(oid, mid)).status_code == 201
        pages = [(f"/track/{oid}?token={server.token('customer', oid)}", "#order-id", oid) for oid in ids]
        pages += [(f"/merchant?token={server.token('merchant', mid)}", f'tr[data-order="{ids[1]}"]', ids[1]),
                  (f"/ops?token={server.token('operator', 'ops')}&order={ids[1]}", "#order-summary", ids[1])]
        for path, where, oid in pages:
            await page.goto(server.base_url + path)
            await expect(page.locator(where)).to_contain_text(oid)
            width = await page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
            assert width[0] <= width[1] == 390, (path, width)  # no scrolling sideways
        # the reference to quote, after a cancel, wraps too
        await ops.cancel(ids[1])
        await page.goto(f"{server.base_url}/track/{ids[1]}?token={server.token('customer', ids[1])}")
        await expect(page.locator("#next-step .reference")).to_have_text(ids[1])
        width = await page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert width[0] <= width[1], width
    finally:
        await page.context.close()
        await ops.close()


async def test_tracking_page_says_when_the_kitchen_needs_more_time(server: ServerProcess, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]
    """A kitchen's delay is told to the customer, politely, with the new ready time (not an ETA
    that jumps with no reason), also after a reload; it goes once the food is ready. A delay
    before the confirm, which has no ready time yet, says how much longer than planned."""
    ops = Ops(server)
    oid, early, mid = uid("o"), uid("o-early"), uid("m")
    tablet = await merchant(server, mid)
    page = await new_page(browser, mobile=True)
    try:
        await ops.create(oid, mid, prep_minutes=10)
        await tablet.confirm(oid)
        await tablet.event(oid, "confirmed")
        await page.goto(f"{server.base_url}/track/{oid}?token={server.token('customer', oid)}")
        await expect(page.locator("#status")).to_have_attribute("data-status", "confirmed")
        note = page.locator("#kitchen-note")
        await expect(note).to_be_hidden()
        for _ in range(3):  # "Delay 5 min" three times: the latest ready time is the one said
            await tablet.delay(oid, 5)
            await tablet.event(oid, "food_delayed")
        ready_at = (await ops.get(oid))["ready_at"]
        shown = await wall_clock(page, ready_at)
        said = f"The restaurant needs more time: your food should be ready about {shown}."
        await expect(note).to_have_text(said)
        region = await note.evaluate("e => e.closest('[aria-live]')?.getAttribute('aria-live') ?? null")
        assert region == "polite", region  # read out, without cutting in
        await page.reload()  # rebuilt from the order's history
        await expect(page.locator("#status")).to_have_attribute("data-status", "confirmed")
        await expect(note).to_have_text(said)
        await tablet.ready(oid)
        await expect(note).to_be_hidden()  # the food is ready: nothing holds it up any more

        await ops.create(early, mid, prep_minutes=10)
        await tablet.delay(early, 5)  # before the confirm: no ready time to move yet
        await tablet.event(early, "food_delayed")
        await page.goto(f"{server.base_url}/track/{early}?token={server.token('customer', early)}")
        await expect(page.locator("#kitchen-note")).to_have_text("The restaurant needs 5 minutes longer than planned to prepare your food.")
        await ops.cancel(early)
        await expect(page.locator("#status")).to_have_attribute("data-status", "cancelled")
        await expect(page.locator("#kitchen-note")).to_be_hidden()  # an order that ended: no food to wait for
    finally:
        await page.context.close()
        await tablet.close()
        await ops.close()


async def test_tracking_page_says_the_food_is_taking_longer_once_the_delayed_time_has_passed(
        own_redis, start_server, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]
    """A delayed ready time gone by with the food not ready: the note says the food is taking
    longer than the restaurant said, not that it "should be ready" at a time already past. The
    server's clock runs 60 times faster, so the delay's minute passes in a second."""
    srv = start_server({"TRACKER_TIME_SCALE": "60", "TRACKER_DISPATCH_INTERVAL_S": "36000"}, redis=own_redis)
    ops = Ops(srv)
    oid, mid = uid("o"), uid("m")
    tablet = await merchant(srv, mid)
    page = await new_page(browser, mobile=True)
    try:
        await ops.create(oid, mid, prep_minutes=0)
        await tablet.confirm(oid)
        await tablet.event(oid, "confirmed")
        await tablet.delay(oid, 1)
        await tablet.event(oid, "food_delayed")
        ready_at = (await ops.get(oid))["ready_at"]
        await page.goto(f"{srv.base_url}/track/{oid}?token={srv.token('customer', oid)}")
        shown = await wall_clock(page, ready_at)
        await expect(page.locator("#kitchen-note")).to_have_text(
            f"The restaurant said your food would be ready about {shown}; it is taking longer.", timeout=10_000)
    finally:
        await page.context.close()
        await tablet.close()
        await ops.close()



async def test_a_delay_before_the_confirm_gets_its_ready_time_at_the_confirm_on_both_pages(server: ServerProcess, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]
    """Two delays before the confirm (5, then 7 minutes) lengthen the preparation by 12: the
    server adds them up. The tracking page said 12 and the kitchen board "delayed 7 min" (the
    latest alone); both say 12 now. Once confirmed, the tracking page said "needs 12 more
    minutes" for good, with no time; it now says the ready time the confirm made (the order's
    expected_ready_at), live and after a reload, the one the board shows."""
    ops = Ops(server)
    oid, mid = uid("o"), uid("m")
    tablet = await merchant(server, mid)
    page, board = await new_page(browser, mobile=True), await new_page(browser)
    try:
        assert (await ops.create(oid, mid, prep_minutes=30)).status_code == 201
        await page.goto(f"{server.base_url}/track/{oid}?token={server.token('customer', oid)}")
        await board.goto(f"{server.base_url}/merchant?token={server.token('merchant', mid)}")
        await expect(page.locator("#status")).to_have_attribute("data-status", "placed")
        for minutes in (5, 7):
            await tablet.delay(oid, minutes)
            await tablet.event(oid, "food_delayed")
        note, food = page.locator("#kitchen-note"), board.locator(f'tr[data-order="{oid}"] td').nth(2)
        await expect(note).to_have_text("The restaurant needs 12 minutes longer than planned to prepare your food.")
        await expect(food).to_have_text("delayed 12 min")
        assert (await ops.get(oid))["prep_minutes"] == 42  # (what the server made of them: 30 + 5 + 7)
        await tablet.confirm(oid)
        await tablet.event(oid, "confirmed")
        order = await ops.get(oid)
        assert order["expected_ready_at"] == order["confirmed_at"] + 42 * 60_000, order
        shown = await wall_clock(page, order["expected_ready_at"])
        said = f"The restaurant needs more time: your food should be ready about {shown}."
        await expect(note).to_have_text(said)
        await expect(food).to_have_text(f"preparing, ready {shown}")
        await page.reload()
        await expect(page.locator("#status")).to_have_attribute("data-status", "confirmed")
        await expect(note).to_have_text(said)
    finally:
        await page.context.close()
        await board.context.close()
        await tablet.close()
        await ops.close()


async def test_a_delay_before_the_confirm_reads_taking_longer_once_its_time_has_passed(
        own_redis, start_server, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]
    """An order of no preparation time delayed 1 minute before the confirm: once confirmed its food
    is due a minute later. The tracking page went on saying "needs 1 more minute" long after that
    (reload or not), while the board read "was due"; it now says the food is taking longer. The
    server's clock runs 60 times faster, so the minute passes in a second."""
    srv = start_server({"TRACKER_TIME_SCALE": "60", "TRACKER_DISPATCH_INTERVAL_S": "36000"}, redis=own_redis)
    ops = Ops(srv)
    oid, mid = uid("o"), uid("m")
    tablet = await merchant(srv, mid)
    page = await new_page(browser, mobile=True)
    try:
        await ops.create(oid, mid, prep_minutes=0)
        await page.goto(f"{srv.base_url}/track/{oid}?token={srv.token('customer', oid)}")
        await expect(page.locator("#status")).to_have_attribute("data-status", "placed")
        await tablet.delay(oid, 1)
        await tablet.event(oid, "food_delayed")
        await tablet.confirm(oid)
        await tablet.event(oid, "confirmed")
        shown = await wall_clock(page, (await ops.get(oid))["expected_ready_at"])
        said = f"The restaurant said your food would be ready about {shown}; it is taking longer."
        await expect(page.locator("#kitchen-note")).to_have_text(said, timeout=10_000)
        await page.reload()
        await expect(page.locator("#kitchen-note")).to_have_text(said)
    finally:
        await page.context.close()
        await tablet.close()
        await ops.close()