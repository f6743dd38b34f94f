"""The pages when the network misbehaves: a path that stalls with its sockets open, a request
that hangs, a reconnect after the order moved on, a resync while the page reads the order again.
A real server in a real Chromium; Playwright sits in each page's WebSocket path to stall or cut it."""
from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
import websockets

from playwright.async_api import Browser, Page, Route, WebSocketRoute, expect
from playwright.async_api import TimeoutError as PlaywrightTimeout

from tests.orders_helpers import PICKUP, Ops, merchant, rider
from tests.test_ops_actions import answer_prompts
from tests.test_pages import browser, new_page  # noqa: F401 - the module's Chromium fixture
from tests.test_pubsub import kill_pubsub_connections
from tracker.launcher import ServerProcess
from tracker.redis_client import connect


class Valve:
    """The page's WebSockets, passed through Playwright: ``freeze()`` stops bytes both ways on
    those open now (they stay open: a stalled path), ``cut()`` closes them, ``blocked`` turns new
    ones away; ``inject`` sends a frame to the page as if from the server; ``latency`` (seconds)
    holds every frame that long each way (a slow path: a round trip of twice that)."""

    def __init__(self, latency: float = 0.0) -> None:
        self.open: list[tuple[WebSocketRoute, WebSocketRoute, dict[str, bool]]] = []
        self.blocked = False
        self.latency = latency
        self.opened = 0  # sockets the page opened, all told
        self.started = time.monotonic()
        self.seen: list[tuple[float, str]] = []  # (s since made) sockets opened, and frames the server sent that end a socket's run

    def note(self, what: str) -> None:
        self.seen.append((round(time.monotonic() - self.started, 1), what))

    async def attach(self, page: Page) -> "Valve":
        def handle(ws: WebSocketRoute) -> None:
            self.opened += 1
            self.note(f"socket {self.opened} opened")
            if self.blocked:
                asyncio.ensure_future(ws.close(code=1011, reason="blocked"))
                return
            state = {"frozen": False}
            server = ws.connect_to_server()

            def passing(to: WebSocketRoute) -> Any:
                def send(m: Any) -> None:
                    if state["frozen"]:
                        return
                    if self.latency:
                        asyncio.get_running_loop().call_later(self.latency, lambda: state["frozen"] or to.send(m))
                    else:
                        to.send(m)
                return send

            def from_server(m: Any) -> None:
                if isinstance(m, str) and ('"resync"' in m or '"error"' in m):
                    self.note(m[:120])
                passing(ws)(m)

            ws.on_message(passing(server))
            server.on_message(from_server)
            self.open.append((ws, server, state))

        await page.route_web_socket(re.compile(r".*/v1/ws/.*"), handle)
        return self

    def freeze(self) -> None:
        for _, _, state in self.open:
            state["frozen"] = True

    async def cut(self) -> None:
        for ws, server, state in self.open:
            state["frozen"] = True
            await ws.close(code=1011, reason="cut")
            await server.close()
        self.open.clear()

    def inject(self, frame: str) -> None:
        self.open[-1][0].send(frame)


# The page's online state over time: window.__online, [ms since the page began, "yes"|"no"].
WATCH_ONLINE = """addEventListener("DOMContentLoaded", () => { window.__online = [];
    new MutationObserver(() => window.__online.push([Math.round(performance.now()), document.body.dataset.online]))
      .observe(document.body, { attributes: true, attributeFilter: ["data-online"] }); });"""


async def went_offline(page: Page, since_ms: float, valve: Valve, timeout_ms: float = 20_000) -> float:
    """When (the page's ms) the page went offline after ``since_ms``, from its record: polling
    ``data-online`` can miss an offline spell that a fresh socket ends within a fraction of a second."""
    seen = f"(window.__online || []).find(([at, state]) => state === 'no' && at >= {since_ms})"
    try:
        await page.wait_for_function(f"() => {seen}", timeout=timeout_ms)
    except PlaywrightTimeout:
        raise AssertionError(f"not offline within {timeout_ms / 1000:g} s: {await what_happened(page, valve)}") from None
    return float((await page.evaluate(f"() => {seen}"))[0])


async def what_happened(page: Page, valve: Valve) -> str:
    """The board's online states and its sockets' story, for a failure's message."""
    return f"online states (ms, state): {await page.evaluate('window.__online')}; sockets (s): {valve.seen}"


@contextlib.asynccontextmanager
async def kitchen_board(server: ServerProcess, uid, browser: Browser, latency: float = 0.0  # type: ignore[no-untyped-def]  # noqa: F811
                        ) -> AsyncIterator[tuple[Page, Valve, str, Ops]]:
    """A kitchen board with one order placed on it, its sockets through a valve holding each frame
    ``latency`` s each way, its online states recorded (WATCH_ONLINE): the page, the valve, the
    order and the operator's client."""
    ops = Ops(server)
    oid, mid = uid("o"), uid("m")
    page = await new_page(browser)
    valve = await Valve(latency=latency).attach(page)
    await page.add_init_script(WATCH_ONLINE)
    try:
        await ops.create(oid, mid)
        await page.goto(f"{server.base_url}/merchant?token={server.token('merchant', mid)}")
        await expect(page.locator(f'tr[data-order="{oid}"]')).to_have_attribute("data-status", "placed", timeout=10_000)
        yield page, valve, oid, ops
    finally:
        await page.context.close()
        await ops.close()


@contextlib.asynccontextmanager
async def board_over_a_slow_link(server: ServerProcess, uid, browser: Browser  # type: ignore[no-untyped-def]  # noqa: F811
                                 ) -> AsyncIterator[tuple[Page, Valve, str]]:
    """A kitchen board behind a 5.6 s round trip (2.8 s each way), one order placed on it, the
    link measured (the opening ping answered): the page, its valve and the order."""
    async with kitchen_board(server, uid, browser, latency=2.8) as (page, valve, oid, _):
        await page.wait_for_timeout(4000)  # (the opening ping's answer is in: the link is measured)
        yield page, valve, oid


async def test_a_kitchen_press_on_a_stalled_socket_says_it_got_no_answer_and_the_board_reconnects(
        server: ServerProcess, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    async with kitchen_board(server, uid, browser) as (page, valve, oid, ops):
        body, confirm = page.locator("body"), page.get_by_role("button", name=f"Confirm {oid}")
        await expect(body).to_have_attribute("data-online", "yes")
        valve.freeze()  # no bytes either way, nothing closed
        pressed = await page.evaluate("performance.now()")
        await confirm.click()
        await went_offline(page, pressed, valve, timeout_ms=8000)  # the dead socket is found
        await expect(page.locator("#prompts [data-kind=error]")).to_contain_text(
            f"Order {oid}: no answer from the server", timeout=8000)  # the press is not lost silently
        assert (await ops.get(oid))["status"] == "placed"  # (it never reached the server)
        await expect(body).to_have_attribute("data-online", "yes", timeout=6000)  # on a fresh socket
        await confirm.click()
        await expect(page.locator(f'tr[data-order="{oid}"]')).to_have_attribute("data-status", "confirmed")


async def test_a_kitchen_press_whose_socket_is_cut_says_so_though_the_new_socket_talks(
        server: ServerProcess, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """A press sent on a socket that then dies is not answered on the fresh one the board opens:
    the board says "no answer" after its usual wait, not the 20 s it gives a server that is merely
    slow (it had taken the fresh socket's frames for the server working on the press)."""
    async with kitchen_board(server, uid, browser) as (page, valve, oid, ops):
        body = page.locator("body")
        await expect(body).to_have_attribute("data-online", "yes")
        valve.freeze()  # the press goes nowhere...
        await page.get_by_role("button", name=f"Confirm {oid}").click()
        pressed = time.monotonic()
        await valve.cut()  # ...and its socket closes: the board is back at once, on a fresh one
        await expect(body).to_have_attribute("data-online", "yes", timeout=5000)
        assert valve.opened == 2
        await expect(page.locator("#prompts [data-kind=error]")).to_contain_text(
            f"Order {oid}: no answer from the server", timeout=12_000)
        assert time.monotonic() - pressed < 15, valve.seen  # (5-6 s; it had waited 20)
        assert (await ops.get(oid))["status"] == "placed"  # (it never reached the server)


async def test_a_kitchen_board_on_a_slow_link_keeps_its_socket_and_its_press_is_answered(
        server: ServerProcess, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """A round trip of 5.6 s (beyond the 4 s a check used to wait) is a slow link, not a dead
    one: the board measures it, waits for its answers, and neither drops the socket nor says a
    press went unanswered."""
    async with board_over_a_slow_link(server, uid, browser) as (page, valve, oid):
        await page.get_by_role("button", name=f"Confirm {oid}").click()
        row = page.locator(f'tr[data-order="{oid}"]')
        await expect(row).to_have_attribute("data-status", "confirmed", timeout=15_000)
        await page.wait_for_timeout(1500)
        await expect(page.locator("#prompts [data-kind=error]")).to_have_count(0)  # no "no answer"
        assert [state for _, state in await page.evaluate("window.__online")] == ["yes"], await what_happened(page, valve)
        assert valve.opened == 1, await what_happened(page, valve)  # the one socket all along
        await expect(page.locator("body")).to_have_attribute("data-online", "yes")


async def test_a_slow_moment_while_the_board_loads_does_not_keep_its_checks_slow(
        server: ServerProcess, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """A link slow only while the board loads (a handover): its checks wait longer at first,
    then, the link fast again, as little as ever, so a path that stalls half a minute later is
    found as soon as on a link that was always fast (it had waited 3x the first slow round trip,
    17 s, for as long as frames kept coming)."""
    async with board_over_a_slow_link(server, uid, browser) as (page, valve, oid):
        valve.latency = 0.0
        await page.wait_for_timeout(30_000)  # (the slow measure fades: a half-life of 15 s)
        valve.freeze()
        pressed = await page.evaluate("performance.now()")
        await page.get_by_role("button", name=f"Confirm {oid}").click()
        found = (await went_offline(page, pressed, valve) - pressed) / 1000
        assert found < 12, (found, await what_happened(page, valve))  # (4-6 s on an idle machine; the slow measure kept it 17-19 s)


async def test_the_ops_page_gives_up_a_hung_snapshot_and_says_it_is_not_updating(
        server: ServerProcess, browser: Browser) -> None:  # noqa: F811
    page = await new_page(browser)
    hang = {"on": False}
    held: list[Route] = []

    async def snapshot(route: Route) -> None:
        if hang["on"]:
            held.append(route)  # never answered: a request lost on a stalled path
        else:
            await route.continue_()

    await page.route("**/v1/ops/snapshot*", snapshot)
    try:
        await page.goto(f"{server.base_url}/ops?token={server.token('operator', 'ops')}")
        await expect(page.locator("#updated")).to_contain_text("updated")
        hang["on"] = True
        banner = page.locator("#offline")
        await expect(banner).to_contain_text("not updating", timeout=12_000)
        await expect(banner).to_contain_text("No answer from the server")
        hang["on"] = False
        await expect(banner).to_be_hidden(timeout=8000)  # polling went on
    finally:
        await page.context.close()


class Stall:
    """The page's HTTP requests to the API held unanswered while ``on`` (a stalled path: nothing
    comes back, nothing fails); ``reaches`` picks requests that reach the server first (their
    answers are what is lost)."""

    def __init__(self, reaches: Any = lambda request: False) -> None:
        self.on = False
        self.reaches = reaches
        self.held: list[Route] = []

    async def attach(self, page: Page) -> "Stall":
        async def handle(route: Route) -> None:
            if not self.on:
                await route.continue_()
                return
            if self.reaches(route.request):
                await route.fetch()  # done on the server; its answer never gets back
            self.held.append(route)

        await page.route("**/v1/**", handle)
        return self


async def test_the_ops_page_says_what_became_of_a_pause_and_a_cancel_pressed_into_a_stall(
        server: ServerProcess, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """Pause (whose request reaches the server, its answer lost) and Cancel (whose request does
    not) pressed into a stall: each says at once that it waits, a second Pause says one is
    pending, each says within 15 s that no answer came, and once the server answers again what
    became of it: the rider paused after all, the order not cancelled, for want of an answer,
    not "the server's database"."""
    ops = Ops(server)
    oid, mid, rid = uid("o"), uid("m"), uid("r")
    courier = await rider(server, rid)

    async def online() -> None:  # (fixes keep the rider in the Riders table)
        while True:
            await courier.location(PICKUP["lat"] + 0.002, PICKUP["lng"])
            await asyncio.sleep(3)

    fixes = asyncio.ensure_future(online())
    page = await new_page(browser)
    stall = await Stall(lambda r: r.method == "POST" and r.url.endswith(f"/v1/riders/{rid}/pause")).attach(page)
    try:
        await ops.create(oid, mid)
        await page.goto(f"{server.base_url}/ops?token={server.token('operator', 'ops')}&order={oid}")
        await expect(page.locator("#order-summary")).to_contain_text(f"{oid}: placed")
        pause = page.locator(f'#riders [data-rider-action="pause"][data-rider="{rid}"]')
        await expect(pause).to_be_visible()
        asked = answer_prompts(page, ["flat tyre", "customer phoned"])
        rider_note, order_note = page.locator("#rider-note"), page.locator("#order-note")
        stall.on = True
        await pause.click()
        pressed = time.monotonic()
        await expect(rider_note).to_have_text(f"Pausing rider {rid}: waiting for the server…")
        await expect(pause).to_have_attribute("aria-disabled", "true")
        cancelled = time.monotonic()
        await page.get_by_role("button", name="Cancel order").click()
        await pause.press("Enter")  # again (greyed, aria-disabled, but pressed): not asked why again, told why nothing happens
        await expect(rider_note).to_contain_text(f"Still waiting for the server's answer: rider {rid} is being paused")
        assert len(asked) == 2, asked
        await expect(rider_note).to_have_text(
            f"Rider {rid}: no answer from the server within 15 s: not known whether it was paused. Checking…", timeout=17_000)
        assert time.monotonic() - pressed < 17
        await expect(order_note).to_have_text(
            f"Order {oid}: no answer from the server within 15 s: not known whether it was cancelled. Checking…")
        assert time.monotonic() - cancelled < 17  # (each counted from its own press: the Cancel came later)
        await pause.press("Enter")  # while it checks
        await expect(rider_note).to_contain_text(f"Still checking whether rider {rid} was paused")
        assert len(asked) == 2, asked
        stall.on = False
        await expect(rider_note).to_have_text(f"Rider {rid} was paused after all: no new offers until resumed.", timeout=25_000)
        await expect(order_note).to_have_text(re.compile(rf"^Order {oid} was not cancelled: no answer from the server .*Try again\.$"),
                                              timeout=25_000)
        assert "database" not in await order_note.inner_text()
        assert (await ops.get(oid))["status"] == "placed"
        snap = (await ops.client.get("/v1/ops/snapshot")).json()
        assert [p["reason"] for p in snap["paused_riders"] if p["id"] == rid] == ["flat tyre"]
        resume = page.locator(f'#riders [data-rider-action="resume"][data-rider="{rid}"]')
        await expect(resume).to_be_visible()
        await expect(resume).not_to_have_attribute("aria-disabled", "true")
    finally:
        fixes.cancel()
        await page.context.close()
        await courier.close()
        await ops.close()


async def test_the_ops_page_says_an_order_look_up_got_no_answer_and_shows_the_order_once_it_does(
        server: ServerProcess, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    ops = Ops(server)
    oid, mid = uid("o"), uid("m")
    page = await new_page(browser)
    stall = await Stall().attach(page)
    try:
        await ops.create(oid, mid)
        await page.goto(f"{server.base_url}/ops?token={server.token('operator', 'ops')}")
        await expect(page.locator("#updated")).to_contain_text("updated")
        stall.on = True
        await page.locator("#order-id").fill(oid)
        await page.keyboard.press("Enter")
        note = page.locator("#order-note")
        await expect(note).to_have_text(f"Looking up order {oid}: waiting for the server…")
        await expect(note).to_have_text(f"Order {oid} could not be read: no answer from the server within 8 s. Trying again…",
                                        timeout=10_000)
        stall.on = False
        await expect(page.locator("#order-summary")).to_contain_text(f"{oid}: placed", timeout=12_000)
        await expect(note).to_have_text("")
    finally:
        await page.context.close()
        await ops.close()


async def test_the_ops_page_retries_after_jittered_pauses(server: ServerProcess, browser: Browser) -> None:  # noqa: F811
    """The pauses between attempts grow (2 s, 4 s, ...) times a random factor from 0.5 to 1.5, as
    the docs say, so pages cut off together do not come back together. The page's random
    numbers are pinned to 0 here: the shortest pauses, 1 s then 2 s."""
    page = await new_page(browser)
    await page.add_init_script("Math.random = () => 0;")
    await page.add_init_script(WATCH_SNAPSHOT_ATTEMPTS)

    async def refuse(route: Route) -> None:
        await route.abort()

    await page.route("**/v1/ops/snapshot*", refuse)
    try:
        await page.goto(f"{server.base_url}/ops?token={server.token('operator', 'ops')}")
        attempts: list[list[float | None]] = []
        for _ in range(100):
            attempts = await page.evaluate("window.__attempts")
            if len(attempts) >= 3:
                break
            await asyncio.sleep(0.1)
        # (timed in the page, from an attempt's failure to the next attempt: the test process's
        # own delays in seeing and turning away a request are no part of the page's pauses)
        gaps = [(b[0] - a[1]) / 1000 for a, b in zip(attempts, attempts[1:]) if a[1] is not None][:2]
        assert len(gaps) == 2 and 0.9 <= gaps[0] < 1.5 and 1.9 <= gaps[1] < 2.5, (gaps, attempts)
    finally:
        await page.context.close()


# The ops page's snapshot requests, as the page makes them: window.__attempts, [ms when asked
# (performance.now()), ms when it failed or null] for each.
WATCH_SNAPSHOT_ATTEMPTS = """(() => { window.__attempts = []; const fetched = window.fetch;
    window.fetch = function (resource, ...rest) {
        const asked = fetched.call(this, resource, ...rest);
        if (String(resource?.url ?? resource).includes("/v1/ops/snapshot")) {
            const attempt = [performance.now(), null];
            window.__attempts.push(attempt);
            asked.catch(() => { attempt[1] = performance.now(); });
        }
        return asked;
    }; })();"""


async def test_the_kitchen_board_does_not_announce_standing_prompts_again_on_a_reconnect(
        server: ServerProcess, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    ops = Ops(server)
    oid, mid, rid = uid("o"), uid("m"), uid("r")
    courier = await rider(server, rid)
    page = await new_page(browser)
    valve = await Valve().attach(page)
    await page.add_init_script(WATCH_ONLINE)
    try:
        await page.goto(f"{server.base_url}/merchant?token={server.token('merchant', mid)}")
        body = page.locator("body")
        await expect(body).to_have_attribute("data-online", "yes")
        await ops.create(oid, mid, prep_minutes=15)
        await page.get_by_role("button", name=f"Confirm {oid}").click()
        await expect(page.locator(f'tr[data-order="{oid}"]')).to_have_attribute("data-status", "confirmed")
        await ops.assign(oid, rid)
        await courier.location(PICKUP["lat"] + 0.01, PICKUP["lng"])
        prompt = page.locator(f'.prompt[data-order="{oid}"][data-kind="start_preparing"]')
        await expect(prompt).to_contain_text("start plating")
        await page.evaluate("""() => { window.added = [];
            new MutationObserver((ms) => { for (const m of ms) for (const n of m.addedNodes) window.added.push(n.textContent); })
              .observe(document.getElementById('prompts'), { childList: true, subtree: true }); }""")
        for _ in range(2):  # the board reconnects, and its feed's catch-up sends the standing prompt again
            cut = await page.evaluate("performance.now()")
            await valve.cut()
            await went_offline(page, cut, valve, timeout_ms=5000)  # (offline for as little as 0.25 s: recorded, not polled)
            await expect(body).to_have_attribute("data-online", "yes", timeout=8000)
        await page.wait_for_timeout(500)
        assert await page.evaluate("window.added") == []  # nothing read out again
        await expect(prompt).to_have_count(1)
    finally:
        await page.context.close()
        await courier.close()
        await ops.close()


async def test_the_kitchen_board_counts_a_reason_as_the_server_does(server: ServerProcess, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """150 emoji are 150 characters (300 UTF-16 units): within the 200 the server takes."""
    ops = Ops(server)
    oid, mid = uid("o"), uid("m")
    page = await new_page(browser)
    asked: list[str] = []

    async def answer(dialog: Any) -> None:
        asked.append(dialog.message)
        await (dialog.accept("🍕" * 150) if dialog.type == "prompt" and len(asked) == 1 else dialog.dismiss())

    page.on("dialog", lambda d: asyncio.ensure_future(answer(d)))
    try:
        await ops.create(oid, mid)
        await page.goto(f"{server.base_url}/merchant?token={server.token('merchant', mid)}")
        await expect(page.locator("body")).to_have_attribute("data-online", "yes")
        await page.get_by_role("button", name=f"Cancel order {oid}").click()
        await expect(page.locator(f'tr[data-order="{oid}"]')).to_have_attribute("data-status", "cancelled")
        assert len(asked) == 1, asked  # asked once: not told it is too long
        assert (await ops.get(oid))["events"][-1]["reason"] == "🍕" * 150
    finally:
        await page.context.close()
        await ops.close()


async def test_the_tracking_page_drops_an_estimate_that_went_while_it_was_offline(
        own_redis, start_server, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    srv = start_server({"TRACKER_DISPATCH_INTERVAL_S": "0.3", "TRACKER_ESTIMATE_GRACE_S": "1"}, redis=own_redis)
    ops = Ops(srv)
    oid, mid = uid("o"), uid("m")
    courier = await rider(srv, uid("r"))
    page = await new_page(browser, mobile=True)
    valve = await Valve().attach(page)
    try:
        await courier.location(PICKUP["lat"] + 0.002, PICKUP["lng"])
        await ops.create(oid, mid, prep_minutes=30)  # a rider is planned, not offered it yet
        kitchen = await merchant(srv, mid)
        await kitchen.confirm(oid)
        await kitchen.close()
        await page.goto(f"{srv.base_url}/track/{oid}?token={srv.token('customer', oid)}")
        eta = page.locator("#eta")
        await expect(eta).to_have_text(re.compile(r"^\d+ min$"), timeout=10_000)
        valve.blocked = True
        await valve.cut()  # the page is offline...
        await expect(page.locator("body")).to_have_attribute("data-online", "no")
        await courier.close()  # ...while the only rider leaves, and the plan with it
        for _ in range(100):
            if (await ops.get(oid))["planned_eta"] is None:
                break
            await asyncio.sleep(0.1)
        assert (await ops.get(oid))["planned_eta"] is None
        valve.blocked = False
        await expect(page.locator("body")).to_have_attribute("data-online", "yes", timeout=15_000)
        await expect(eta).to_have_text("finding a rider")  # not the old estimate counted down
    finally:
        await page.context.close()
        await ops.close()


async def test_the_tracking_page_says_what_it_waits_for_when_a_rider_without_a_position_is_assigned(
        server: ServerProcess, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    ops = Ops(server)
    oid, mid = uid("o"), uid("m")
    page = await new_page(browser, mobile=True)
    try:
        await ops.create(oid, mid)
        kitchen = await merchant(server, mid)
        await kitchen.confirm(oid)
        await kitchen.close()
        await page.goto(f"{server.base_url}/track/{oid}?token={server.token('customer', oid)}")
        line = page.locator("#eta-line")
        await expect(line).to_have_text(re.compile(r"finding a rider"))
        assert (await ops.assign(oid, uid("r"))).status_code == 200  # a rider not heard from yet
        await expect(page.locator("#status")).to_have_attribute("data-status", "assigned")
        await expect(line).to_have_text(re.compile(r"^Estimated arrival:\s+once the rider's position comes in$"))
        await page.reload()
        await expect(page.locator("#status")).to_have_attribute("data-status", "assigned")
        await expect(line).to_have_text(re.compile(r"^Estimated arrival:\s+once the rider's position comes in$"))
    finally:
        await page.context.close()
        await ops.close()


async def test_the_tracking_page_goes_on_without_a_reload_after_a_live_gap(
        own_redis, start_server, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """The server cut from its pub/sub says `resync` `live_gap` and carries on without a gap:
    the page needs no reload, and shows what comes next."""
    srv = start_server(redis=own_redis)
    ops = Ops(srv)
    oid, mid = uid("o"), uid("m")
    page = await new_page(browser, mobile=True)
    reads: list[str] = []
    page.on("request", lambda r: reads.append(r.url) if f"/v1/orders/{oid}" in r.url else None)
    frames: list[str] = []
    page.on("websocket", lambda ws: ws.on("framereceived", lambda f: frames.append(str(f))))
    redis = connect(own_redis)
    try:
        await ops.create(oid, mid)
        await page.goto(f"{srv.base_url}/track/{oid}?token={srv.token('customer', oid)}")
        await expect(page.locator("body")).to_have_attribute("data-online", "yes")
        await kill_pubsub_connections(redis)
        for _ in range(50):
            if any("live_gap" in f for f in frames):
                break
            await asyncio.sleep(0.1)
        assert any("live_gap" in f for f in frames), frames
        kitchen = await merchant(srv, mid)
        await kitchen.confirm(oid)
        await kitchen.close()
        await expect(page.locator("#status")).to_have_attribute("data-status", "confirmed")
        assert len(reads) == 1, reads  # the first load only
    finally:
        await redis.aclose()
        await page.context.close()
        await ops.close()


async def test_the_tracking_page_never_steps_back_when_a_reload_lands_after_a_live_event(
        server: ServerProcess, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """After `too_many_missed` the page reads the order again; a live event that arrives while
    that read is on its way (slow network: the snapshot taken first, delivered 2 s later) stays
    shown, and two resyncs read it one at a time."""
    ops = Ops(server)
    oid, mid = uid("o"), uid("m")
    page = await new_page(browser, mobile=True)
    valve = await Valve().attach(page)
    loads = {"started": 0, "running": 0, "most": 0}

    async def slow(route: Route) -> None:
        loads["started"] += 1
        loads["running"] += 1
        loads["most"] = max(loads["most"], loads["running"])
        try:
            answer = await route.fetch()  # the snapshot is taken now...
            if loads["started"] > 1:
                await asyncio.sleep(2.0)  # ...and lands later
            await route.fulfill(response=answer)
        finally:
            loads["running"] -= 1

    await page.route(f"**/v1/orders/{oid}", slow)
    try:
        await ops.create(oid, mid)
        await page.goto(f"{server.base_url}/track/{oid}?token={server.token('customer', oid)}")
        status = page.locator("#status")
        await expect(page.locator("body")).to_have_attribute("data-online", "yes")
        valve.inject('{"type": "resync", "reason": "too_many_missed"}')  # as the server says it
        valve.inject('{"type": "resync", "reason": "too_many_missed"}')
        kitchen = await merchant(server, mid)
        await kitchen.confirm(oid)
        await kitchen.close()
        for _ in range(80):  # both reloads done
            if loads["started"] >= 3 and loads["running"] == 0:
                break
            assert await status.get_attribute("data-status") in ("placed", "confirmed")
            await asyncio.sleep(0.1)
        await expect(status).to_have_attribute("data-status", "confirmed")
        await page.wait_for_timeout(300)
        await expect(status).to_have_attribute("data-status", "confirmed")  # not rolled back by an old snapshot
        assert loads["started"] == 3 and loads["most"] == 1, loads  # the first load, then one reload at a time
    finally:
        await page.context.close()
        await ops.close()


async def test_the_order_channel_and_the_kitchen_feed_answer_a_ping(server: ServerProcess, uid) -> None:  # type: ignore[no-untyped-def]
    """What the pages check their sockets with: ``ping`` answers ``pong`` (its ``id`` as ``ref``)."""
    ops = Ops(server)
    oid, mid = uid("o"), uid("m")
    try:
        await ops.create(oid, mid)
        for path, role, sub in ((f"/v1/ws/customer?order_id={oid}", "customer", oid), ("/v1/ws/merchant", "merchant", mid)):
            headers = {"Authorization": f"Bearer {server.token(role, sub)}"}
            async with websockets.connect(server.ws_url + path, additional_headers=headers) as ws:
                await ws.send('{"type": "ping", "id": 7}')
                while (frame := orjson.loads(await asyncio.wait_for(ws.recv(), 5)))["type"] != "pong":
                    assert frame["type"] != "error", frame
                assert frame == {"type": "pong", "ref": 7}, frame
    finally:
        await ops.close()
