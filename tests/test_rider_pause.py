"""The operator pauses a rider it cannot trust with new work for now, and resumes it: offers
stop on every path (rounds, an open offer, an accept racing the pause), the rider is told,
also when it reconnects, the ops page says so and has the buttons; a real server, real
sockets, Chromium."""
from __future__ import annotations

import asyncio
from typing import Iterator

import httpx
import pytest
from playwright.async_api import Browser, expect

from tests.orders_helpers import PICKUP, Ops, confirmed_order, rider, round_since, server_now
from tests.redis_freeze import FreezingRelay
from tests.test_dispatch_live import FAST, offered, rider_near_restaurant
from tests.test_offer_killed_accept import relayed_redis  # noqa: F401 - a fixture
from tests.test_ops_actions import answer_prompts, operator_and_rider
from tests.test_pages import browser  # noqa: F401 - the module's Chromium fixture
from tracker.launcher import ServerProcess


async def _pause(ops: Ops, rider_id: str, body: dict | None = None, token: str | None = None) -> httpx.Response:  # type: ignore[type-arg]
    headers = {"Authorization": f"Bearer {token}"} if token else None
    return await ops.client.post(f"/v1/riders/{rider_id}/pause", json={"reason": "bike broke"} if body is None else body,
                                 headers=headers)


async def _snapshot_rider(ops: Ops, rider_id: str) -> dict:  # type: ignore[type-arg]
    snap = (await ops.client.get("/v1/ops/snapshot")).json()
    return next(r for r in snap["riders"] if r["id"] == rider_id)


async def test_a_paused_rider_is_offered_nothing_until_resumed(own_redis, start_server, uid) -> None:  # type: ignore[no-untyped-def]
    srv: ServerProcess = start_server(FAST, redis=own_redis)
    ops = Ops(srv)
    oid, mid, rid = uid("o"), uid("m"), uid("r")
    courier = await rider_near_restaurant(srv, rid, 0.002)
    try:
        await courier.availability(True)  # what its app says: the pause outweighs it
        done = await _pause(ops, rid)
        assert done.status_code == 200, done.text
        assert done.json()["paused"]["reason"] == "bike broke"
        told = await courier.expect("paused")
        assert (told["by"], told["reason"]) == ("operator", "bike broke")
        await confirmed_order(srv, ops, oid, mid)
        # a round has planned the order since, with no rider to offer it to: the paused one is left out
        assert (await round_since(ops, await server_now(srv.base_url)))["riders"] == 0
        with pytest.raises(asyncio.TimeoutError):  # six rounds at 0.3 s, and more
            await courier.expect("offer", timeout=2)
        row = await _snapshot_rider(ops, rid)
        assert row["state"] == "unavailable" and row["paused"]["reason"] == "bike broke", row
        near = (await ops.client.get("/v1/riders/nearby", params={"lat": PICKUP["lat"], "lng": PICKUP["lng"],
                                                                   "radius_m": 1000, "limit": 5})).json()["riders"]
        assert [r["available"] for r in near if r["id"] == rid] == [False]

        await courier.close()  # its app restarts: still paused, and its route says so
        courier = await rider(srv, rid, keep_route=True)
        route = await courier.expect("route")
        assert route["paused"]["reason"] == "bike broke" and route["paused"]["by"] == "ops", route
        await courier.location(PICKUP["lat"] + 0.002, PICKUP["lng"])

        resumed = await ops.client.post(f"/v1/riders/{rid}/resume")
        assert resumed.status_code == 200 and resumed.json()["paused"] is None
        assert (await courier.expect("resumed"))["by"] == "operator"
        offer = await courier.expect("offer", timeout=10)
        assert [o["order_id"] for o in offer["orders"]] == [oid]
        assert (await _snapshot_rider(ops, rid))["paused"] is None
    finally:
        await courier.close()
        await ops.close()


async def test_pausing_withdraws_the_open_offer_and_a_late_accept_is_refused(own_redis, start_server, uid) -> None:  # type: ignore[no-untyped-def]
    srv: ServerProcess = start_server({**FAST, "TRACKER_OFFER_TIMEOUT_S": "30"}, redis=own_redis)
    ops = Ops(srv)
    oid, mid, rid = uid("o"), uid("m"), uid("r")
    courier = await rider_near_restaurant(srv, rid, 0.002)
    try:
        offer = await offered(ops, courier, oid, mid)
        assert (await _pause(ops, rid)).status_code == 200
        withdrawn = await courier.expect("offer_withdrawn")
        assert withdrawn["offer_id"] == offer["offer_id"]
        await courier.accept(offer["offer_id"])  # the rider's tap crossed the pause
        refused = await courier.expect("error")
        assert refused["code"] == "conflict", refused  # withdrawn already: nothing to accept
        order = await ops.get(oid)
        assert order["status"] == "confirmed" and order["rider_id"] is None  # back for another rider
    finally:
        await courier.close()
        await ops.close()


@pytest.fixture
def second_relay(relayed_redis) -> Iterator[FreezingRelay]:  # type: ignore[no-untyped-def]  # noqa: F811
    """Another relay to the same Redis (closed after the servers a test starts, if named before them)."""
    with FreezingRelay(relayed_redis[0]) as relay:
        yield relay


async def test_an_accept_whose_claim_lands_after_the_pause_is_refused(
        relayed_redis, second_relay, start_server, uid) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """The accept read no pause; the pause is written before the accept's claim of the offer, and
    the pause's own claim (to withdraw it) comes after: the accept still answers ``forbidden``."""
    relay_a, relay_b = relayed_redis[1], second_relay
    slow = {**FAST, "TRACKER_OFFER_TIMEOUT_S": "60"}
    srv_a: ServerProcess = start_server(slow, redis=relay_a.url)  # the rider's socket: its accept
    srv_b: ServerProcess = start_server(slow, redis=relay_b.url)  # the operator's pause
    ops = Ops(srv_b)
    oid, mid, rid = uid("o"), uid("m"), uid("r")
    courier = await rider_near_restaurant(srv_a, rid, 0.002)
    try:
        offer = await offered(ops, courier, oid, mid)
        claim = (b"EVALSHA", f"claimed:{offer['offer_id']}".encode())
        relay_a.hold_before(*claim)
        await courier.accept(offer["offer_id"])
        await relay_a.held()  # the accept found no pause, its claim is on its way
        relay_b.hold_before(*claim)
        pausing = asyncio.create_task(_pause(ops, rid))
        await relay_b.held()  # the pause is written, its withdrawal's claim is on its way
        relay_a.let_go()
        answer = await courier.expect(lambda f: f.get("type") in ("assigned", "error"))
        relay_b.let_go()
        assert (await pausing).status_code == 200
        assert (answer["type"], answer.get("code")) == ("error", "forbidden"), answer
        order = await ops.get(oid)
        assert order["status"] == "confirmed" and order["rider_id"] is None, order
        assert (await courier.expect("offer_withdrawn"))["offer_id"] == offer["offer_id"]
    finally:
        await courier.close()
        await ops.close()


async def test_only_the_operator_pauses_and_only_with_a_reason(server: ServerProcess, uid) -> None:
    ops = Ops(server)
    rid = uid("r")
    try:
        for body in ({}, {"reason": "  "}, {"reason": 5}, {"reason": "x" * 201}):
            resp = await _pause(ops, rid, body)
            assert resp.status_code == 400 and resp.json()["error"]["code"] == "bad_message", (body, resp.text)
        as_rider = await _pause(ops, rid, token=server.token("rider", rid))
        assert as_rider.status_code == 403 and as_rider.json()["error"]["code"] == "forbidden"
        bad_id = await ops.client.post("/v1/riders/no%20spaces/resume")
        assert bad_id.status_code == 400 and bad_id.json()["error"]["code"] == "bad_request"
        never = await ops.client.post(f"/v1/riders/{rid}/resume")  # not paused: nothing changes
        assert never.status_code == 200 and never.json() == {"rider_id": rid, "paused": None}

        ahead = await _pause(ops, rid, {"reason": "starts after training"})  # never connected: still listed
        first_at = ahead.json()["paused"]["at"]
        again = await _pause(ops, rid, {"reason": "training moved to Friday"})
        assert again.json()["paused"] == {"reason": "training moved to Friday", "at": first_at, "by": "ops"}
        snap = (await ops.client.get("/v1/ops/snapshot")).json()
        assert {"id": rid, "reason": "training moved to Friday", "at": first_at, "by": "ops"} in snap["paused_riders"]
        assert snap["totals"]["paused_riders"] >= 1 and rid not in {r["id"] for r in snap["riders"]}
        assert (await ops.client.post(f"/v1/riders/{rid}/resume")).status_code == 200
        snap = (await ops.client.get("/v1/ops/snapshot")).json()
        assert rid not in {p["id"] for p in snap["paused_riders"]}
        assert "rider paused" in server.log_tail(400) and "rider resumed" in server.log_tail(400)
    finally:
        await ops.close()


async def test_the_operator_pauses_and_resumes_a_rider_on_the_ops_page(own_redis, start_server, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    srv: ServerProcess = start_server(FAST, redis=own_redis)
    rid = uid("r")
    async with operator_and_rider(srv, rid, browser) as (ops, courier, page):
        await courier.location(PICKUP["lat"] + 0.002, PICKUP["lng"])
        await page.goto(f"{srv.base_url}/ops?token={srv.token('operator', 'ops')}")
        asked = answer_prompts(page, ["", "reported a flat tyre"])  # a blank reason is asked again
        row = page.locator(f'#riders tr[data-rider="{rid}"]')
        await row.get_by_role("button", name=f"Pause rider {rid}: no new offers").click()
        await expect(page.locator("#rider-note")).to_have_text(f"Rider {rid} paused: no new offers until resumed.")
        await expect(row).to_contain_text("unavailable · paused by the operator: reported a flat tyre")
        assert (await courier.expect("paused"))["reason"] == "reported a flat tyre"
        assert len(asked) == 2 and "required" in asked[1], asked
        await row.get_by_role("button", name=f"Resume rider {rid}: offers again").click()
        await expect(row).to_contain_text("free")
        await expect(row).not_to_contain_text("paused")
        await courier.expect("resumed")
        assert (await _snapshot_rider(ops, rid))["paused"] is None

        away = uid("r-away")  # paused while offline: found and resumed in "Paused riders"
        assert (await _pause(ops, away, {"reason": "lost phone"})).status_code == 200
        listed = page.locator(f'#paused-riders tr[data-rider="{away}"]')
        await expect(listed).to_contain_text("lost phone")
        await listed.get_by_role("button", name=f"Resume rider {away}: offers again").click()
        await expect(listed).to_have_count(0)
        await expect(page.locator("#paused-riders")).to_contain_text("None: every rider may be offered orders.")
