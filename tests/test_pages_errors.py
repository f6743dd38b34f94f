"""The pages in a real headless Chromium when the server refuses them: a missing, bad, expired
or out-of-scope token, or an unknown order. The page stops trying and says what is wrong,
instead of showing "offline" and reconnecting forever."""
from __future__ import annotations

import asyncio
import contextlib
import re
import time
from typing import AsyncIterator

import httpx
import pytest
from playwright.async_api import Browser, Page, Route, expect

from clients.jsonsocket import JsonSocket
from tests.basic_auth_proxy import BasicAuthProxy
from tests.orders_helpers import Ops
from tests.test_pages import browser, new_page  # noqa: F401 - the module's Chromium fixture
from tracker.auth import issue_token
from tracker.launcher import ServerProcess, free_port


def expired(server: ServerProcess, role: str, sub: str) -> str:
    return issue_token(server.secret, role, sub, 60, now=time.time() - 3600)


# (name, the page's path and query given the server and an order id, what the message names)
CASES = {
    "merchant-no-token": (lambda s, oid: "/merchant", "unauthorized: missing token"),
    "merchant-bad-token": (lambda s, oid: "/merchant?token=bad", "unauthorized: invalid token"),
    "merchant-expired": (lambda s, oid: f"/merchant?token={expired(s, 'merchant', 'm1')}", "unauthorized: token expired"),
    "ops-bad-token": (lambda s, oid: "/ops?token=bad", "unauthorized: invalid token"),
    "ops-merchant-token": (lambda s, oid: f"/ops?token={s.token('merchant', 'm1')}", "forbidden"),
    "track-no-token": (lambda s, oid: f"/track/{oid}", "unauthorized: missing token"),
    "track-bad-token": (lambda s, oid: f"/track/{oid}?token=bad", "unauthorized: invalid token"),
    "track-expired": (lambda s, oid: f"/track/{oid}?token={expired(s, 'customer', oid)}", "unauthorized: token expired"),
    "track-other-order": (lambda s, oid: f"/track/{oid}?token={s.token('customer', oid + 'x')}", "forbidden"),
    "track-unknown-order": (lambda s, oid: f"/track/{oid}x?token={s.token('operator', 'ops')}", "not_found"),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_page_refused_says_why_and_stops_retrying(case: str, server: ServerProcess, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    path, names = CASES[case]
    ops = Ops(server)
    oid = uid("o")
    page = await new_page(browser, mobile=True)
    sockets: list[str] = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url) if "/v1/" in r.url else None)
    try:
        assert (await ops.create(oid, uid("m"))).status_code == 201
        await page.goto(server.base_url + path(server, oid))
        problem = page.get_by_role("alert").filter(has_text="Your link is not valid")
        await expect(problem).to_be_visible()
        await expect(problem).to_contain_text("Ask for a new link")
        await expect(problem).to_have_attribute("data-reason", re.compile("^" + re.escape(names)))  # for support
        said = await problem.inner_text()
        assert said.lower().count("ask for a new") == 1, said  # asked once, not again in the server's words
        if case.startswith("ops"):
            assert names in said, said  # the operator also reads the server's reason
        else:  # a customer or a kitchen reads plain words only
            assert not re.search(r"unauthorized|forbidden|not_found|token:|segments|signature|\(", said, re.I), said
        if case.startswith("track"):  # no empty map (nor its legend) under the refusal
            await expect(page.locator("#map")).to_be_hidden()
            await expect(page.locator(".legend")).to_be_hidden()
        await expect(page.get_by_text(re.compile("Offline|Cannot reach the server"))).to_be_hidden()
        if case.startswith("track"):
            await expect(page.locator("#status")).not_to_have_text("Loading…")
        if case.startswith("merchant"):  # not "No open orders: new ones appear here", as if it were live
            await expect(page.locator("#no-orders")).to_be_hidden()
        # it stays that way: no reconnecting, no polling (a retry would come within a second)
        asked = len(sockets) + len(requests)
        await page.wait_for_timeout(1500)
        assert len(sockets) + len(requests) == asked, (sockets, requests)
        await expect(problem).to_be_visible()
        await expect(page.get_by_text(re.compile("Offline|Cannot reach the server"))).to_be_hidden()
    finally:
        await page.context.close()
        await ops.close()


async def test_a_page_turned_away_by_a_full_server_backs_off_then_gets_in(start_server, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    srv = start_server({"TRACKER_MAX_SOCKETS": "1"})
    ops = Ops(srv)
    oid = uid("o")
    assert (await ops.create(oid, uid("m"))).status_code == 201
    page = await new_page(browser, mobile=True)
    sockets: list[float] = []
    page.on("websocket", lambda ws: sockets.append(time.monotonic()))
    holder = await JsonSocket.open(f"{srv.ws_url}/v1/ws/rider", srv.token("rider", uid("r")))  # the one slot
    try:
        await page.goto(f"{srv.base_url}/track/{oid}?token={srv.token('customer', oid)}")
        await expect(page.get_by_text(re.compile("Offline"))).to_be_visible()  # not a refusal: it will try again
        await page.evaluate("""() => {  // count every moment the banner goes away
          window.bannerHidden = 0;
          const banner = document.getElementById("offline");
          new MutationObserver(() => { if (banner.hidden) window.bannerHidden += 1; })
            .observe(banner, { attributes: true, attributeFilter: ["hidden"] });
        }""")
        await page.wait_for_timeout(6000)
        # Turned away at once each time (1013), it waits longer and longer: not twice a second.
        tries = [t for t in sockets if t - sockets[0] < 6]
        assert 2 <= len(tries) <= 6, [round(t - sockets[0], 2) for t in sockets]
        # and the page never looked online meanwhile (the socket opens, then is closed at once)
        assert await page.evaluate("window.bannerHidden") == 0
        await holder.close()  # a slot frees up: the page gets in at its next try
        await expect(page.locator("#status")).not_to_have_text("Loading…", timeout=20000)
        await expect(page.get_by_text(re.compile("Offline"))).to_be_hidden(timeout=20000)
    finally:
        await page.close()
        await ops.close()


async def test_a_page_whose_link_is_revoked_says_so_at_once_and_stops(server: ServerProcess, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    ops = Ops(server)
    oid = uid("o")
    page = await new_page(browser, mobile=True)
    sockets: list[str] = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    try:
        assert (await ops.create(oid, uid("m"))).status_code == 201
        await page.goto(f"{server.base_url}/track/{oid}?token={server.token('customer', oid)}")
        await expect(page.locator("#status")).not_to_have_text("Loading…")
        await expect(page.locator("#eta-line")).to_be_visible()
        revoked = await ops.client.post("/v1/tokens/revoke", json={"role": "customer", "sub": oid})
        assert revoked.status_code == 200, revoked.text
        problem = page.get_by_role("alert").filter(has_text="Your link is not valid")
        await expect(problem).to_contain_text("it has been revoked", timeout=5000)
        await expect(problem).to_have_text("Your link is not valid: it has been revoked. Ask for a new link.")
        for shown_before in ("#eta-line", "#timeline", "#map"):  # nothing of the order stays on show under the refusal
            await expect(page.locator(shown_before)).to_be_hidden()
        asked = len(sockets)
        await page.wait_for_timeout(1500)  # no reconnecting with a token that will not work again
        assert len(sockets) == asked, sockets
    finally:
        await page.context.close()
        await ops.close()


async def test_a_kitchen_board_whose_link_is_revoked_shows_no_orders_as_if_live(server: ServerProcess, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """Revoked while open, the board would never be updated again: its orders, their buttons
    and its prompts go, as on the tracking page, and the banner alone says what to do."""
    ops = Ops(server)
    oid, mid = uid("o"), uid("m")
    page = await new_page(browser, mobile=True)
    try:
        assert (await ops.create(oid, mid)).status_code == 201
        await page.goto(f"{server.base_url}/merchant?token={server.token('merchant', mid)}")
        await expect(page.get_by_role("button", name=f"Confirm {oid}")).to_be_visible()
        await expect(page.locator("#count")).to_have_text("(1 open)")
        revoked = await ops.client.post("/v1/tokens/revoke", json={"role": "merchant", "sub": mid})
        assert revoked.status_code == 200, revoked.text
        problem = page.get_by_role("alert").filter(has_text="Your link is not valid")
        await expect(problem).to_have_text("Your link is not valid: it has been revoked. Ask for a new link.", timeout=5000)
        for shown_before in (f'tr[data-order="{oid}"]', "#orders-title", "#prompts-title"):
            await expect(page.locator(shown_before)).to_be_hidden()
        await expect(page.get_by_role("button")).to_have_count(0)  # nothing to press that would not be sent
    finally:
        await page.context.close()
        await ops.close()


async def test_an_ops_page_whose_link_is_revoked_shows_no_figures_as_if_live(server: ServerProcess, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """The ops page stops polling once its token is refused: the figures, map and tables it
    showed (with their buttons, and the "updated" time) go rather than look live, as on the
    other pages; the banner says why, the server's reason after the words."""
    ops = Ops(server)
    oid, sub = uid("o"), uid("ops")
    page = await new_page(browser)
    try:
        assert (await ops.create(oid, uid("m"))).status_code == 201
        await page.goto(f"{server.base_url}/ops?token={server.token('operator', sub)}&order={oid}")
        await expect(page.locator("#updated")).to_contain_text("updated")
        await expect(page.locator("#order-summary")).to_contain_text(oid)
        revoked = await ops.client.post("/v1/tokens/revoke", json={"role": "operator", "sub": sub})
        assert revoked.status_code == 200, revoked.text
        problem = page.get_by_role("alert").filter(has_text="Your link is not valid")
        await expect(problem).to_contain_text("it has been revoked", timeout=10000)  # (at the next poll, within 2 s)
        for shown_before in ("#figures", "#map", "#order-summary", "#riders-title", "#updated"):
            await expect(page.locator(shown_before)).to_be_hidden()
        await expect(page.get_by_role("button")).to_have_count(0)
    finally:
        await page.context.close()
        await ops.close()


async def test_the_ops_page_says_when_the_server_cannot_reach_redis(tmp_path, browser: Browser) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """A server whose Redis went away still answers (503 redis_unavailable): the page says that,
    not "Cannot reach the server", which would send an operator after the wrong thing."""
    from tracker.embedded_redis import EmbeddedRedis

    external = EmbeddedRedis(tmp_path / "redis", port=free_port())  # a REDIS_URL Redis, restarted by hand
    with external, ServerProcess(redis_url=external.url, data_dir=tmp_path / "data") as srv:
        page = await new_page(browser)
        try:
            await page.goto(f"{srv.base_url}/ops?token={srv.token('operator', 'ops')}")
            await expect(page.locator("#updated")).to_contain_text("updated")
            await expect(page.locator("#degraded")).to_be_hidden()
            external.stop()
            banner = page.locator("#offline")
            await expect(banner).to_be_visible(timeout=15_000)
            await expect(banner).to_have_text(re.compile("cannot reach its Redis"))
            external.start()  # back: the page says so, and which of the server's tasks failed meanwhile
            await expect(banner).to_be_hidden(timeout=20_000)
            degraded = page.locator("#degraded")
            await expect(degraded).to_be_visible()
            await expect(degraded).to_have_text(re.compile(
                r"^Background tasks of this server process failed in the last minute: .*last \d+ s ago\)"))
        finally:
            await page.context.close()


async def test_the_kitchen_board_says_in_plain_words_when_a_press_hit_a_redis_that_did_not_answer(
        tmp_path, browser: Browser) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """Redis hangs (stopped) while Confirm is pressed: the server answers redis_unavailable after
    its wait; the board tells the kitchen what that means for the order, without Redis's jargon.
    The step is "not known to be done" (docs/protocol.md): the board reads the order once Redis
    is back and says which. Here Redis stopped before the server read the order, so the step
    never went out: the board says to press again, and the second press moves it."""
    import os
    import signal

    from tracker.embedded_redis import EmbeddedRedis

    external = EmbeddedRedis(tmp_path / "redis", port=free_port())
    with external, ServerProcess(redis_url=external.url, data_dir=tmp_path / "data") as srv:
        ops = Ops(srv)
        page = await new_page(browser)
        try:
            assert (await ops.create("o1", "m1")).status_code == 201
            await page.goto(f"{srv.base_url}/merchant?token={srv.token('merchant', 'm1')}")
            confirm = page.get_by_role("button", name="Confirm o1")
            await expect(confirm).to_be_visible()
            assert external._proc is not None
            os.kill(external._proc.pid, signal.SIGSTOP)
            note = page.locator("#prompts [data-kind=error]")
            try:
                await confirm.click()
                await expect(note).to_have_text(
                    'Order o1: the server could not save "Confirm" just now (its database did not answer), but it may '
                    "still go through. Checking…", timeout=15_000)
                assert "Redis" not in await note.inner_text()
            finally:
                os.kill(external._proc.pid, signal.SIGCONT)
            await expect(note).to_have_text('Order o1: "Confirm" did not go through. Press again.', timeout=20_000)
            assert await page.locator('tr[data-order="o1"]').get_attribute("data-status") == "placed"
            await confirm.click()  # as the note says (Ready is offered once it is confirmed)
            await expect(page.get_by_role("button", name="Ready o1")).to_be_visible(timeout=10_000)
        finally:
            await page.context.close()
            await ops.close()


async def test_a_kitchens_press_that_a_frozen_redis_took_when_it_woke_reads_as_done_after_all(
        tmp_path, browser: Browser) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """Redis stops just as the confirm's step is on its way to it: the server answers
    redis_unavailable after its wait, and Redis takes the step when it wakes. The board reads
    the order once the server answers again and says the press went through: the kitchen is not
    sent to press again, and its Ready button comes without a second press. While it checks, the
    row's buttons wait (greyed), as for a press not answered yet."""
    from tests.redis_freeze import FreezingRelay
    from tracker.embedded_redis import EmbeddedRedis

    with EmbeddedRedis(tmp_path / "redis", port=free_port()) as redis, FreezingRelay(redis) as relay, \
            ServerProcess(redis_url=relay.url, data_dir=tmp_path / "data") as srv:
        ops = Ops(srv)
        page = await new_page(browser)
        try:
            assert (await ops.create("o1", "m1")).status_code == 201
            await page.goto(f"{srv.base_url}/merchant?token={srv.token('merchant', 'm1')}")
            confirm = page.get_by_role("button", name="Confirm o1")
            await expect(confirm).to_be_visible()
            relay.freeze_before(b"EVALSHA", b'"order_id":"o1","kind":"confirmed"')
            try:
                await confirm.click()
                await relay.frozen()
                await expect(page.locator("#prompts [data-kind=error]")).to_have_text(
                    'Order o1: the server could not save "Confirm" just now (its database did not answer), but it may '
                    "still go through. Checking…", timeout=15_000)
                # while it is checked, the row's buttons wait: a second press would only meet the first
                await expect(confirm).to_have_attribute("aria-disabled", "true")
            finally:
                relay.thaw()
            await expect(page.locator("#prompts [data-kind=done]")).to_have_text(
                'Order o1: "Confirm" went through after all.', timeout=20_000)
            await expect(page.locator("#prompts [data-kind=error]")).to_have_count(0)
            await expect(page.get_by_role("button", name="Ready o1")).to_be_visible(timeout=15_000)
            assert (await ops.get("o1"))["status"] == "confirmed"
        finally:
            await page.context.close()
            await ops.close()


@contextlib.asynccontextmanager
async def ops_page_on_a_new_order(srv: ServerProcess, browser: Browser) -> AsyncIterator[tuple[Ops, Page]]:  # noqa: F811
    """Order o1 (kitchen m1) open in the ops page's Order panel, every reason asked answered
    "kitchen closed early"; the page and the operator's HTTP client are closed after."""
    ops = Ops(srv)
    page = await new_page(browser)
    page.on("dialog", lambda d: asyncio.ensure_future(d.accept("kitchen closed early")))
    try:
        assert (await ops.create("o1", "m1")).status_code == 201
        await page.goto(f"{srv.base_url}/ops?token={srv.token('operator', 'ops')}&order=o1")
        await expect(page.locator("#order-summary")).to_contain_text("o1: ")
        yield ops, page
    finally:
        await page.context.close()
        await ops.close()


async def test_an_operators_cancel_that_a_frozen_redis_took_when_it_woke_reads_as_done_after_all(
        tmp_path, browser: Browser) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """The ops page's "Cancel order" meets a Redis that stops as the step goes out: answered 503
    redis_unavailable, the page says it is not known whether the order was cancelled, reads it
    once the server answers again, and says it was (Redis took it when it woke)."""
    from tests.redis_freeze import FreezingRelay
    from tracker.embedded_redis import EmbeddedRedis

    with EmbeddedRedis(tmp_path / "redis", port=free_port()) as redis, FreezingRelay(redis) as relay, \
            ServerProcess(redis_url=relay.url, data_dir=tmp_path / "data") as srv:
        async with ops_page_on_a_new_order(srv, browser) as (ops, page):
            note = page.locator("#order-note")
            relay.freeze_before(b"EVALSHA", b'"order_id":"o1","kind":"cancelled"')
            try:
                await page.get_by_role("button", name="Cancel order").click()
                await relay.frozen()
                await expect(note).to_contain_text("Order o1: not known whether it was cancelled", timeout=15_000)
            finally:
                relay.thaw()
            await expect(note).to_have_text("Order o1 was cancelled after all.", timeout=20_000)
            assert (await ops.get("o1"))["status"] == "cancelled"


async def test_the_kitchen_board_does_not_take_an_operators_cancel_for_its_own_press(
        server: ServerProcess, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """While the kitchen types its reason for "Cancel order", the operator cancels the order. The
    kitchen's cancel then meets an order cancelled already: the board says so plainly, and that
    its reason was not sent; it does not say an earlier press of its own went through (it made
    none), nor show it as done."""
    oid, mid = uid("o"), uid("m")
    ops = Ops(server)
    page = await new_page(browser)

    async def operator_first(dialog) -> None:  # type: ignore[no-untyped-def]
        assert (await ops.client.post(f"/v1/orders/{oid}/cancel", json={"reason": "customer phoned"})).status_code == 200
        await dialog.accept("out of dough")
    page.on("dialog", lambda d: asyncio.ensure_future(operator_first(d)))
    try:
        assert (await ops.create(oid, mid)).status_code == 201
        await page.goto(f"{server.base_url}/merchant?token={server.token('merchant', mid)}")
        await page.get_by_role("button", name=f"Cancel order {oid}").click()
        await expect(page.locator("#prompts [data-kind=info]")).to_have_text(
            f"Order {oid} was already cancelled (see its row); your reason was not sent.", timeout=10_000)
        await expect(page.locator(f'tr[data-order="{oid}"]')).to_contain_text("cancelled by the service: customer phoned")
        await expect(page.locator("#prompts")).not_to_contain_text("earlier press")
        await expect(page.locator("#prompts [data-kind=done]")).to_have_count(0)
    finally:
        await page.context.close()
        await ops.close()


async def test_the_ops_page_does_not_take_a_kitchens_cancel_for_its_own_try(
        server: ServerProcess, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """The kitchen cancels an order while the operator types a reason for cancelling it too: the
    ops page says the order was cancelled already and the reason was not sent, not that an
    earlier try of its own went through."""
    oid, mid = uid("o"), uid("m")
    ops = Ops(server)
    page = await new_page(browser)

    async def kitchen_first(dialog) -> None:  # type: ignore[no-untyped-def]
        async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as kitchen:
            answer = await kitchen.post(f"/v1/orders/{oid}/cancel", json={"reason": "out of dough"},
                                        headers={"Authorization": "Bearer " + server.token("merchant", mid)})
        assert answer.status_code == 200, answer.text
        await dialog.accept("customer phoned")
    page.on("dialog", lambda d: asyncio.ensure_future(kitchen_first(d)))
    try:
        assert (await ops.create(oid, mid)).status_code == 201
        await page.goto(f"{server.base_url}/ops?token={server.token('operator', 'ops')}&order={oid}")
        await expect(page.locator("#order-summary")).to_contain_text(f"{oid}: ")
        await page.get_by_role("button", name="Cancel order").click()
        await expect(page.locator("#order-note")).to_have_text(
            f"Order {oid} was already cancelled before this press (see its events); your reason was not sent.",
            timeout=10_000)
        assert (await ops.get(oid))["status"] == "cancelled"
    finally:
        await page.context.close()
        await ops.close()


async def test_an_operators_action_the_server_does_not_answer_is_checked_once_it_answers_again(
        tmp_path, browser: Browser) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """The server stops answering (its process frozen) as the operator presses "Cancel order":
    after its wait the ops page says it got no answer and cannot tell whether the order was
    cancelled, reads it once the server answers again, and says which, as the order then is."""
    import os
    import signal

    with ServerProcess(data_dir=tmp_path / "data") as srv:
        async with ops_page_on_a_new_order(srv, browser) as (ops, page):
            note = page.locator("#order-note")
            assert srv.proc is not None
            os.kill(srv.proc.pid, signal.SIGSTOP)
            try:
                await page.get_by_role("button", name="Cancel order").click()
                await expect(note).to_have_text(
                    "Order o1: no answer from the server within 15 s: not known whether it was cancelled. Checking…",
                    timeout=25_000)
            finally:
                os.kill(srv.proc.pid, signal.SIGCONT)
            await expect(note).to_have_text(re.compile(r"^Order o1 was (cancelled after all\.|not cancelled: .* Try again\.)$"),
                                            timeout=30_000)
            cancelled = (await ops.get("o1"))["status"] == "cancelled"
            assert ("after all" in await note.inner_text()) == cancelled


# (page, its address given the server and an order id, what it shows once it has read the order over HTTP)
OVER_HTTP = {
    "track": (lambda s, oid: f"/track/{oid}?token={s.token('customer', oid)}", "#order-id"),
    "ops": (lambda s, oid: f"/ops?token={s.token('operator', 'ops')}&order={oid}", "#order-summary"),
}


@pytest.mark.parametrize("name", list(OVER_HTTP))
async def test_a_page_works_behind_a_proxy_that_asks_for_http_basic_auth(name: str, server: ServerProcess, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """Behind a proxy that asks for an HTTP Basic login on every request (nginx auth_basic), the
    pages' fetches sent "Authorization: Bearer <token>", which replaced the login the browser
    sends there by itself: the proxy turned each one down and the page said "Your link is not
    valid: the server turned it down". They send the token as X-Tracker-Token now, and work."""
    path, shows = OVER_HTTP[name]
    proxy = BasicAuthProxy(server.port)
    port = await proxy.start()
    ops = Ops(server)
    oid = uid("o")
    context = await browser.new_context(http_credentials={"username": "u", "password": "p"})
    page = await context.new_page()
    try:
        assert (await ops.create(oid, uid("m"))).status_code == 201
        await page.goto(f"http://127.0.0.1:{port}{path(server, oid)}")
        await expect(page.locator(shows)).to_contain_text(oid)
        if name == "track":
            await expect(page.locator("#status")).to_have_attribute("data-status", "placed")
            await expect(page.locator("body")).to_have_attribute("data-online", "yes")  # (its socket: ?token=, as before)
        await expect(page.locator("#fatal")).to_be_hidden()
        assert any(" /v1/" in r for r in proxy.passed), (proxy.passed, proxy.denied)  # (it did go through the proxy)
    finally:
        await context.close()
        await ops.close()
        proxy.close()


@pytest.mark.parametrize("name", list(OVER_HTTP))
async def test_a_401_or_403_that_is_not_the_services_own_reads_as_not_reaching_it(name: str, server: ServerProcess, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """A 401 or 403 answered by something in front of the service (a proxy's login, a gateway's
    "403 Forbidden" page: not the service's JSON error) said "Your link is not valid" and the page
    stopped for good. The service was not reached: the page says it cannot reach it and tries
    again, and works once the way through is open."""
    path, shows = OVER_HTTP[name]
    ops = Ops(server)
    oid = uid("o")
    page = await new_page(browser)
    turned_away = [401, 403]

    async def in_front(route: Route) -> None:
        if turned_away:
            status = turned_away.pop(0)
            await route.fulfill(status=status, content_type="text/html", body=f"<html><body><h1>{status}</h1>nginx</body></html>")
        else:
            await route.continue_()

    await page.route(re.compile(r".*/v1/orders/.*" if name == "track" else r".*/v1/ops/snapshot.*"), in_front)
    try:
        assert (await ops.create(oid, uid("m"))).status_code == 201
        await page.goto(server.base_url + path(server, oid))
        await expect(page.locator("#offline")).to_be_visible()  # it cannot reach the service: not a refused link
        if name == "ops":
            await expect(page.locator("#offline")).to_have_text("Cannot reach the server: retrying…")
        await expect(page.locator("#fatal")).to_be_hidden()
        await expect(page.locator(shows)).to_contain_text(oid, timeout=15_000)
        await expect(page.locator("#offline")).to_be_hidden(timeout=15_000)  # tried again, and through
        await expect(page.locator("#fatal")).to_be_hidden()
        assert not turned_away
    finally:
        await page.context.close()
        await ops.close()
