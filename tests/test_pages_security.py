"""What clients write, and the link's token, on the pages in a real headless Chromium against a
real server: a long unbroken reason or id never pushes a page's buttons out of view, a reason's
direction controls never reorder the words around it, a tracking link cut short is refused
plainly, and the token does not stay in the address bar or the history, nor does a refused link
opened in the same tab replace the token of a page that works."""
from __future__ import annotations

import asyncio
import re

import pytest
from playwright.async_api import Browser, Page, expect

from tests.orders_helpers import PICKUP, Ops, confirmed_order, rider
from tests.test_pages import browser, new_page  # noqa: F401 - the module's Chromium fixture
from tracker.launcher import ServerProcess

LONG = "X" * 200  # the longest reason the server takes, with nowhere to break it

# Whether anything in the page is wider than its box: every scrolling table box, the order's
# history, and the page itself against the window; and each paused rider's Resume button lies
# inside its table's box and the window (else an offline rider cannot be resumed).
OVERFLOW = """() => {
  const wide = [];
  for (const el of [...document.querySelectorAll('.scroll'), document.getElementById('order-events')]) {
    if (el && el.scrollWidth > el.clientWidth + 1) wide.push([el.id || el.firstElementChild?.getAttribute('aria-labelledby'), el.scrollWidth, el.clientWidth]);
  }
  if (document.documentElement.scrollWidth > innerWidth) wide.push(['page', document.documentElement.scrollWidth, innerWidth]);
  for (const b of document.querySelectorAll('#paused-riders button')) {
    const r = b.getBoundingClientRect(), box = b.closest('.scroll').getBoundingClientRect();
    if (r.left < box.left || r.right > box.right + 1 || r.left < 0 || r.right > innerWidth) {
      wide.push([b.getAttribute('aria-label'), Math.round(r.left), Math.round(r.right), Math.round(box.right)]);
    }
  }
  return wide;
}"""


async def test_a_long_unbroken_reason_or_id_never_pushes_the_buttons_out_of_view(server: ServerProcess, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """A rider paused with a 200-character reason with no space made the paused riders table
    thousands of pixels wide in its box, both riders' Resume buttons out of view; a cancel's
    such reason widened the order's history, a 64-character kitchen id the kitchen's queue.
    Now they wrap, on a desktop and on a phone, and the kitchen board and the tracking page
    do not scroll sideways either."""
    ops = Ops(server)
    long_rider, other_rider = uid("r-long"), uid("r-other")
    kitchen = ("m" + uid("k").replace("-", "") * 8)[:64]  # the longest kitchen id the server takes
    waiting, cancelled = uid("o-wait"), uid("o-cancel")
    try:
        for rid, reason in ((long_rider, LONG), (other_rider, "flat tyre")):
            paused = await ops.client.post(f"/v1/riders/{rid}/pause", json={"reason": reason})
            assert paused.status_code == 200, paused.text
        assert (await ops.create(waiting, kitchen)).status_code == 201
        assert (await ops.create(cancelled, kitchen)).status_code == 201
        assert (await ops.client.post(f"/v1/orders/{cancelled}/cancel", json={"reason": LONG})).status_code == 200
        for mobile in (False, True):
            page = await new_page(browser, mobile=mobile)
            try:
                await page.goto(f"{server.base_url}/ops?token={server.token('operator', 'ops')}&order={cancelled}")
                for rid in (long_rider, other_rider):
                    await expect(page.locator(f'#paused-riders tr[data-rider="{rid}"] button')).to_have_text("Resume")
                await expect(page.locator(f'#kitchen-queue tr[data-order="{waiting}"]')).to_contain_text(kitchen)
                await expect(page.locator("#order-events li").last).to_contain_text(LONG)
                assert await page.evaluate(OVERFLOW) == [], ("phone" if mobile else "desktop")
                # a press on the Resume button works where it is (not hidden off to the side)
                await page.locator(f'#paused-riders tr[data-rider="{other_rider}"] button').click(trial=True, timeout=2000)
                await page.goto(f"{server.base_url}/merchant?token={server.token('merchant', kitchen)}")
                await expect(page.locator(f'tr[data-order="{cancelled}"]')).to_contain_text(LONG)
                assert await page.evaluate(OVERFLOW) == []
                await page.goto(f"{server.base_url}/track/{cancelled}?token={server.token('customer', cancelled)}")
                await expect(page.locator("#next-step")).to_contain_text(LONG)
                assert await page.evaluate(OVERFLOW) == []
            finally:
                await page.context.close()
    finally:
        for rid in (long_rider, other_rider):
            await ops.client.post(f"/v1/riders/{rid}/resume", json={})
        await ops.close()


async def test_a_tracking_link_cut_short_inside_an_escape_is_refused_not_left_loading(server: ServerProcess, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """A link an SMS client cut short in the middle of a %-escape ("/track/%E0%A4") threw from
    the page's script, and the page said "Loading…" for good with no banner. It is now a clear
    refusal: the page's "Your link is not valid" banner, as for any link to no order (or, from a
    server that refuses such a path itself, a plain 404)."""
    page = await new_page(browser, mobile=True)
    try:
        response = await page.goto(f"{server.base_url}/track/%E0%A4?token={server.token('customer', uid('o'))}")
        assert response is not None
        if response.status == 404:
            return  # the server turned the address down itself: no page to hang
        assert response.status == 200, response.status
        problem = page.get_by_role("alert").filter(has_text="Your link is not valid")
        await expect(problem).to_be_visible()
        await expect(problem).to_contain_text("there is no such order")
        await expect(problem).to_have_attribute("data-reason", re.compile("^not_found"))
        await expect(page.locator("#status")).not_to_have_text("Loading…")
    finally:
        await page.context.close()


# (page, its address given the server, an order id and its kitchen; what it shows once it works)
PAGES = {
    "ops": (lambda s, oid, mid: f"/ops?token={s.token('operator', 'ops')}&order={oid}", "#order-summary"),
    "merchant": (lambda s, oid, mid: f"/merchant?token={s.token('operator', 'ops')}&merchant_id={mid}", "#orders tr[data-order]"),
    "track": (lambda s, oid, mid: f"/track/{oid}?token={s.token('customer', oid)}", "#order-id"),
}


@pytest.mark.parametrize("name", list(PAGES))
async def test_the_token_leaves_the_address_and_the_history_and_a_reload_still_works(name: str, server: ServerProcess, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """The pages kept their ?token= in the address bar and the history for the whole visit: an
    operator sharing "look at this order" (/ops?token=...&order=o1) shared full operator control.
    Now the page takes the token out of its address as it opens (the other parameters stay:
    order=, merchant_id=), keeps it for the tab, and works as before, after a reload, and back
    from another page, with no history entry holding the token."""
    path, shows = PAGES[name]
    ops = Ops(server)
    oid, mid = uid("o"), uid("m")
    page = await new_page(browser)
    try:
        assert (await ops.create(oid, mid)).status_code == 201
        address = path(server, oid, mid)
        await page.goto(server.base_url + address)
        want = re.sub(r"token=[^&]*&?", "", address).rstrip("?")  # the address as given, less its token

        async def works() -> None:
            await expect(page.locator(shows)).to_contain_text(oid)
            await expect(page.locator("#fatal")).to_be_hidden()
            assert "token" not in page.url and "token" not in await page.evaluate("location.href"), page.url
            assert await page.evaluate("location.pathname + location.search") == want

        await works()
        await page.reload()
        await works()
        await page.goto("about:blank")
        await page.go_back()  # the entry the page left in the history
        await works()
    finally:
        await page.context.close()
        await ops.close()



# (page, a working link, a link the server refuses for the same page, what it shows once it works)
REFUSED_THEN_BACK = {
    "track": (lambda s, oid, mid: f"/track/{oid}?token={s.token('customer', oid)}",
              lambda s, oid, mid: f"/track/{oid}?token={s.token('customer', oid + 'x')}", "#order-id"),  # another order's
    "merchant": (lambda s, oid, mid: f"/merchant?token={s.token('operator', 'ops')}&merchant_id={mid}",
                 lambda s, oid, mid: f"/merchant?token={s.token('merchant', mid + 'x')}&merchant_id={mid}", "#orders tr[data-order]"),
    "ops": (lambda s, oid, mid: f"/ops?token={s.token('operator', 'ops')}&order={oid}",
            lambda s, oid, mid: f"/ops?token={s.token('merchant', mid)}&order={oid}", "#order-summary"),
}


@pytest.mark.parametrize("name", list(REFUSED_THEN_BACK))
async def test_a_link_refused_in_the_same_tab_leaves_the_working_one_working(name: str, server: ServerProcess, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """A tab showing an order with a working link; an old (revoked) or wrong link of the same page
    opened in that tab replaced the kept token: back to the page that worked, and after a reload,
    it said "This order cannot be shown" for good. The refused link still says why; the page
    that worked keeps working."""
    good, bad, shows = REFUSED_THEN_BACK[name]
    ops = Ops(server)
    oid, mid = uid("o"), uid("m")
    page = await new_page(browser)
    problem = page.get_by_role("alert").filter(has_text="Your link is not valid")

    async def works() -> None:
        await expect(page.locator(shows)).to_contain_text(oid)
        await expect(page.locator("#fatal")).to_be_hidden()

    try:
        assert (await ops.create(oid, mid)).status_code == 201
        await page.goto(server.base_url + good(server, oid, mid))
        await works()
        await page.goto(server.base_url + bad(server, oid, mid))
        await expect(problem).to_be_visible()  # the link opened last is refused, and says so
        await page.go_back()
        await works()
        await page.reload()
        await works()
    finally:
        await page.context.close()
        await ops.close()


async def test_a_kitchens_board_and_the_board_an_operator_opened_for_another_kitchen_keep_their_own_tokens(
        server: ServerProcess, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """The kitchen board kept one token for /merchant whatever kitchen it showed: an operator's
    board of kitchen m1 (/merchant?merchant_id=m1), then a kitchen's own link in the same tab, and
    back to m1's board read the kitchen's token: "Your link is not valid". Each keeps its own."""
    ops = Ops(server)
    first, second = uid("m1"), uid("m2")
    orders = {mid: uid(f"o-{mid}") for mid in (first, second)}
    page = await new_page(browser)
    try:
        for mid, oid in orders.items():
            assert (await ops.create(oid, mid)).status_code == 201
        await page.goto(f"{server.base_url}/merchant?token={server.token('operator', 'ops')}&merchant_id={first}")
        await expect(page.locator(f'tr[data-order="{orders[first]}"]')).to_be_visible()
        await page.goto(f"{server.base_url}/merchant?token={server.token('merchant', second)}")
        await expect(page.locator(f'tr[data-order="{orders[second]}"]')).to_be_visible()
        await page.go_back()
        await expect(page.locator(f'tr[data-order="{orders[first]}"]')).to_be_visible()
        await expect(page.locator("#fatal")).to_be_hidden()
        await page.go_forward()
        await expect(page.locator(f'tr[data-order="{orders[second]}"]')).to_be_visible()
        await expect(page.locator("#fatal")).to_be_hidden()
    finally:
        await page.context.close()
        await ops.close()

# Whether `text` is shown within `scope` in an element of its own that the browser isolates
# (unicode-bidi: isolate, as <bdi> is): the page's words around it keep their order whatever
# direction controls or right-to-left letters it holds.
ISOLATED = """([scope, text]) => [...document.querySelectorAll(`${scope}, ${scope} *`)]
  .filter((el) => el.textContent === text).some((el) => getComputedStyle(el).unicodeBidi === 'isolate')"""
# A reason with a RIGHT-TO-LEFT OVERRIDE left open: not isolated, it reversed the page's words
# after it (the assign question that follows a pause reason). A server that refuses bidi controls
# in reasons takes a right-to-left script instead, which needs isolating as much.
RLO_REASON = "flat tyre \u202eyaw eht no 7o redro"
RTL_REASON = "\u05e6\u05de\u05d9\u05d2 \u05e0\u05e7\u05d5\u05e8 \u05d1\u05d3\u05e8\u05da"  # "flat tyre on the way", in Hebrew


async def test_a_reason_with_direction_controls_never_reorders_the_words_around_it(server: ServerProcess, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """A pause reason with U+202E showed reversed on the ops page and reversed the assign
    question after it. Every reason a client wrote is now isolated where it is shown: the ops
    page's rider state, paused riders, order summary and history, the assign question (between
    U+2068 and U+2069: a dialog takes no markup), the kitchen board's status, and the tracking
    page's status and next step."""
    ops = Ops(server)
    cancelled, waiting, mid, rid = uid("o-c"), uid("o-w"), uid("m"), uid("r")
    courier = await rider(server, rid)
    page = await new_page(browser)
    confirm: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def answer(dialog) -> None:  # type: ignore[no-untyped-def]
        if dialog.type == "prompt":  # which rider: the paused one
            await dialog.accept(rid)
            return
        await dialog.dismiss()  # whether to give the paused rider the order anyway: no
        if not confirm.done():
            confirm.set_result(dialog.message)

    page.on("dialog", lambda d: asyncio.ensure_future(answer(d)))
    try:
        await courier.location(PICKUP["lat"], PICKUP["lng"])  # online: in the Riders table too
        reason = RLO_REASON
        paused = await ops.client.post(f"/v1/riders/{rid}/pause", json={"reason": reason})
        if paused.status_code == 400:  # (a server that refuses bidi controls in reasons)
            reason = RTL_REASON
            paused = await ops.client.post(f"/v1/riders/{rid}/pause", json={"reason": reason})
        assert paused.status_code == 200, paused.text
        assert (await ops.create(cancelled, mid)).status_code == 201
        assert (await ops.client.post(f"/v1/orders/{cancelled}/cancel", json={"reason": reason})).status_code == 200
        await confirmed_order(server, ops, waiting, mid)

        await page.goto(f"{server.base_url}/ops?token={server.token('operator', 'ops')}&order={cancelled}")
        await expect(page.locator(f'#paused-riders tr[data-rider="{rid}"]')).to_contain_text(reason)
        await expect(page.locator(f'#riders tr[data-rider="{rid}"]')).to_contain_text(reason)
        await expect(page.locator("#order-events li").last).to_contain_text(reason)
        for scope in (f'#paused-riders tr[data-rider="{rid}"] td[data-label="Why"]',
                      f'#riders tr[data-rider="{rid}"] td[data-label="State"]', "#order-summary", "#order-events li:last-child"):
            assert await page.evaluate(ISOLATED, [scope, reason]), scope
        await page.fill("#order-id", waiting)
        await page.click("#order-find button[type=submit]")
        await page.get_by_role("button", name="Assign to a rider…").click()
        question = await asyncio.wait_for(confirm, 10)
        assert f"(\u2068{reason}\u2069)" in question, question

        await page.goto(f"{server.base_url}/merchant?token={server.token('merchant', mid)}")
        await expect(page.locator(f'tr[data-order="{cancelled}"]')).to_contain_text(reason)
        assert await page.evaluate(ISOLATED, [f'tr[data-order="{cancelled}"] td[data-label="Status"]', reason])

        await page.goto(f"{server.base_url}/track/{cancelled}?token={server.token('customer', cancelled)}")
        await expect(page.locator("#next-step")).to_contain_text(reason)
        for scope in ("#next-step", "#status"):
            assert await page.evaluate(ISOLATED, [scope, reason]), scope
    finally:
        await ops.client.post(f"/v1/riders/{rid}/resume", json={})
        await page.context.close()
        await courier.close()
        await ops.close()
