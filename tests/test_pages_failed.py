"""A failed delivery on the customer's tracking page and the kitchen board, and a cancelled
order's next step on the tracking page, in a real Chromium."""
from __future__ import annotations

import asyncio
import re

from playwright.async_api import Browser, Page, expect

from tests.orders_helpers import PICKUP, Ops, merchant, rider
from tests.test_pages import browser, new_page  # noqa: F401 - the module's Chromium fixture
from tracker.launcher import ServerProcess

REASON = "rider unreachable since pickup"


async def _picked_up(server: ServerProcess, ops: Ops, oid: str, mid: str, rid: str) -> None:
    """``oid`` on the road with ``rid``, who was last seen near the restaurant."""
    kitchen, courier = await merchant(server, mid), await rider(server, rid)
    try:
        await courier.location(PICKUP["lat"] - 0.002, PICKUP["lng"])
        await kitchen.confirm(oid)
        await kitchen.event(oid, "confirmed")
        assert (await ops.assign(oid, rid)).status_code == 200
        for step in ("at_pickup", "picked_up"):
            await courier.progress(oid, step)
            await kitchen.event(oid, step)
    finally:
        await kitchen.close()
        await courier.close()


async def _fail(ops: Ops, oid: str) -> None:
    resp = await ops.client.post(f"/v1/orders/{oid}/fail", json={"reason": REASON})
    assert resp.status_code == 200, resp.text


# What a screen reader hears from the page's live regions: their text, without what is hidden
# from it (aria-hidden, or not displayed).
SPOKEN = """() => {
    const live = '[aria-live], [role=status], [role=alert]';
    const said = (n) => n.nodeType === Node.TEXT_NODE ? n.data : n.nodeType !== Node.ELEMENT_NODE
        || n.getAttribute('aria-hidden') === 'true' || getComputedStyle(n).display === 'none' ? ''
        : [...n.childNodes].map(said).join('');
    return [...document.querySelectorAll(live)].filter((r) => !r.parentElement.closest(live)).map(said).join(' | ');
}"""


async def _ended_page_tells_once_and_truly(page: Page, ops: Ops, oid: str, reason: str) -> None:
    """An order that ended early: its reason is read out once (shown in the status line and the
    next-step box, heard from the box alone); its timeline ticks only steps of its history; the
    legend no longer lists a rider the map does not draw."""
    await expect(page.locator("#status")).to_contain_text(reason)  # seen where the status is
    spoken = str(await page.evaluate(SPOKEN))
    assert spoken.count(reason) == 1, spoken
    happened = {e["kind"] for e in (await ops.get(oid))["events"]}
    ticked = await page.locator("#timeline li.done").evaluate_all("els => els.map((e) => e.dataset.kind)")
    assert ticked and set(ticked) <= happened, (ticked, happened)
    await expect(page.locator('[data-marker="rider"]')).to_have_count(0)
    await expect(page.locator(".legend span", has_text="rider")).to_be_hidden()
    await expect(page.locator(".legend span", has_text="restaurant")).to_be_visible()


async def _shows_failed(page: Page, oid: str) -> None:
    status = page.locator("#status")
    await expect(status).to_have_attribute("data-status", "failed")
    await expect(status).to_have_text(f"Delivery failed: {REASON}")
    await expect(page.locator("#eta-line")).to_be_hidden()  # no ETA: the food will not come
    await expect(page.locator('[data-marker="rider"]')).to_have_count(0)
    last = page.locator("#timeline li").last
    await expect(last).to_have_attribute("data-kind", "failed")
    await expect(last).to_have_attribute("aria-current", "step")
    await expect(page.locator('#timeline li[data-kind="delivered"]')).to_have_count(0)  # no next steps
    await expect(page.locator('#timeline li[data-kind="picked_up"]')).to_have_class("done")
    # what now: what happened, who gets in touch, and the reference to quote
    next_step = page.locator("#next-step")
    await expect(next_step).to_be_visible()
    await expect(next_step).to_contain_text(f"your food will not arrive. What happened: {REASON}.")
    await expect(next_step).to_contain_text("the restaurant or our support team will contact you about what happens next")
    await expect(next_step.locator(".reference")).to_have_text(oid)
    await expect(next_step).to_contain_text(f"quote your order reference {oid}.")
    live = await next_step.evaluate("e => e.closest('[aria-live]')?.getAttribute('aria-live') ?? null")
    assert live == "polite"  # read out when it appears, as the status is


async def test_customer_page_says_the_delivery_failed_why_and_what_happens_now(server: ServerProcess, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    ops = Ops(server)
    oid, mid, rid = uid("o"), uid("m"), uid("r")
    page = await new_page(browser, mobile=True)
    try:
        assert (await ops.create(oid, mid)).status_code == 201
        await _picked_up(server, ops, oid, mid, rid)
        await page.goto(f"{server.base_url}/track/{oid}?token={server.token('customer', oid)}")
        await expect(page.locator("#status")).to_have_attribute("data-status", "picked_up")
        await expect(page.locator('[data-marker="rider"]')).to_have_count(1)  # where the rider was last seen
        await expect(page.locator("#next-step")).to_be_hidden()  # nothing to do while it is on its way
        await expect(page.locator(".legend span", has_text="rider")).to_be_visible()  # (as on the map)
        await _fail(ops, oid)
        await _shows_failed(page, oid)  # live
        await _ended_page_tells_once_and_truly(page, ops, oid, REASON)
        # the kitchen never called the food ready: not ticked, though the rider collected it
        await expect(page.locator('#timeline li[data-kind="food_ready"]')).to_have_count(0)
        await page.reload()
        await _shows_failed(page, oid)  # and from the history
        await _ended_page_tells_once_and_truly(page, ops, oid, REASON)
        await expect(page.locator("#rider-note")).to_be_hidden()  # not "waiting for the rider's position"
    finally:
        await page.context.close()
        await ops.close()


async def test_kitchen_board_shows_a_failed_delivery_as_finished(server: ServerProcess, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    ops = Ops(server)
    oid, mid, rid = uid("o"), uid("m"), uid("r")
    page = await new_page(browser)
    try:
        assert (await ops.create(oid, mid)).status_code == 201
        await page.goto(f"{server.base_url}/merchant?token={server.token('merchant', mid)}")
        row = page.locator(f'tr[data-order="{oid}"]')
        await expect(row).to_have_attribute("data-status", "placed")
        await _picked_up(server, ops, oid, mid, rid)
        await expect(row).to_have_attribute("data-status", "picked_up")
        await _fail(ops, oid)
        for _ in range(2):  # live, then rebuilt from the feed on reload
            await expect(row).to_have_attribute("data-status", "failed")
            await expect(row.locator("td").nth(1)).to_have_text(f"delivery failed: {REASON}")
            await expect(row.locator("td").nth(2)).to_have_text("collected")
            await expect(row.locator("button")).to_have_count(0)
            await page.reload()
    finally:
        await page.context.close()
        await ops.close()


async def test_ops_page_counts_failed_deliveries_apart_from_delivered(server: ServerProcess, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    ops = Ops(server)
    oid, mid, rid = uid("o"), uid("m"), uid("r")
    page = await new_page(browser)
    try:
        assert (await ops.create(oid, mid)).status_code == 201
        await _picked_up(server, ops, oid, mid, rid)
        await page.goto(f"{server.base_url}/ops?token={server.token('operator', 'ops')}")
        failed, delivered = (page.locator(f'[data-figure="{name}"] b') for name in ("failed deliveries", "delivered"))
        await expect(failed).to_have_text(re.compile(r"^\d+$"))
        before, delivered_before = int(await failed.inner_text()), await delivered.inner_text()
        await _fail(ops, oid)
        await expect(failed).to_have_text(str(before + 1), timeout=15_000)  # the fleet's counts, refreshed every 5 s
        assert await delivered.inner_text() == delivered_before  # a failed delivery is not a delivery
    finally:
        await page.context.close()
        await ops.close()


async def _cancel(server: ServerProcess, ops: Ops, oid: str, role: str, sub: str, reason: str | None) -> None:
    """Cancel ``oid`` as ``role`` (``merchant`` or ``operator``), with ``reason`` if given."""
    resp = await ops.client.post(f"/v1/orders/{oid}/cancel", json={"reason": reason} if reason else {},
                                 headers={"Authorization": "Bearer " + server.token(role, sub)})
    assert resp.status_code == 200, resp.text


async def _shows_cancelled(page: Page, oid: str, status: str, first: str) -> None:
    """The tracking page of cancelled ``oid``: its status line, and under it, what happened
    (``first``), that nothing is to be done, and the reference to quote."""
    await expect(page.locator("#status")).to_have_text(status)
    await expect(page.locator("#eta-line")).to_be_hidden()
    next_step = page.locator("#next-step")
    await expect(next_step).to_be_visible()
    await expect(next_step).to_have_attribute("data-kind", "cancelled")
    await expect(next_step.locator("p").first).to_have_text(first)
    await expect(next_step).to_contain_text("You do not need to do anything: the order is closed.")
    await expect(next_step).to_contain_text(f"contact our support team and quote your order reference {oid}.")
    await expect(next_step.locator(".reference")).to_have_text(oid)
    assert await next_step.evaluate("e => e.closest('[aria-live]')?.getAttribute('aria-live') ?? null") == "polite"


async def test_customer_page_says_who_cancelled_before_pickup_and_what_to_do(server: ServerProcess, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """The kitchen cancels an order its rider was on the way to collect: the customer reads who
    cancelled and when, the kitchen's words, that no rider is coming and nothing is to be done."""
    ops = Ops(server)
    oid, mid, rid = uid("o"), uid("m"), uid("r")
    kitchen, courier = await merchant(server, mid), await rider(server, rid)
    page = await new_page(browser, mobile=True)
    try:
        assert (await ops.create(oid, mid)).status_code == 201
        await courier.location(PICKUP["lat"] - 0.002, PICKUP["lng"])
        await kitchen.confirm(oid)
        await kitchen.event(oid, "confirmed")
        assert (await ops.assign(oid, rid)).status_code == 200
        await page.goto(f"{server.base_url}/track/{oid}?token={server.token('customer', oid)}")
        await expect(page.locator("#status")).to_have_attribute("data-status", "assigned")
        await expect(page.locator("#next-step")).to_be_hidden()
        await asyncio.sleep(1.05)  # (a rider's fixes are taken one a second)
        await courier.location(PICKUP["lat"] - 0.0021, PICKUP["lng"])  # on its way: drawn on the map
        await expect(page.locator('[data-marker="rider"]')).to_have_count(1)
        await expect(page.locator(".legend span", has_text="rider")).to_be_visible()  # (as on the map)
        await _cancel(server, ops, oid, "merchant", mid, "out of salmon.")
        said = ("We are sorry: the restaurant cancelled your order before the rider collected it. Nothing will be"
                " delivered and the rider is not coming. What happened: out of salmon.")
        for _ in range(2):  # live, then from the history
            await _shows_cancelled(page, oid, "Cancelled by the restaurant: out of salmon.", said)
            await _ended_page_tells_once_and_truly(page, ops, oid, "out of salmon")
            await expect(page.locator('#timeline li[data-kind="food_ready"]')).to_have_count(0)  # (never ready)
            await page.reload()
    finally:
        await page.context.close()
        await kitchen.close()
        await courier.close()
        await ops.close()


async def test_customer_page_after_the_service_cancels_an_unconfirmed_order(server: ServerProcess, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """The operator cancels an order no kitchen accepted, giving no reason: the page says so
    without inventing one, and no rider is mentioned."""
    ops = Ops(server)
    oid, mid = uid("o"), uid("m")
    page = await new_page(browser, mobile=True)
    try:
        assert (await ops.create(oid, mid)).status_code == 201
        await page.goto(f"{server.base_url}/track/{oid}?token={server.token('customer', oid)}")
        await expect(page.locator("#status")).to_have_attribute("data-status", "placed")
        await expect(page.locator(".legend span", has_text="restaurant")).to_be_visible()
        await expect(page.locator(".legend span", has_text="rider")).to_be_hidden()  # no rider on the map
        await _cancel(server, ops, oid, "operator", "ops", None)
        for _ in range(2):  # live, then from the history
            await _shows_cancelled(page, oid, "Cancelled by the service",
                                   "We are sorry: our service cancelled your order before the restaurant accepted it. Nothing will be delivered.")
            await page.reload()
    finally:
        await page.context.close()
        await ops.close()
