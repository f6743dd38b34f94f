"""The ops snapshot and page count the whole fleet, say when their lists are cut, and show
how old the newest dispatch round is: a real server, real rider sockets, a real Chromium."""
from __future__ import annotations

import asyncio
import re
import signal
from typing import Any, Callable

import pytest
from playwright.async_api import Browser, expect

from tests.orders_helpers import PICKUP, Ops, confirm_all, merchant, platform_kitchen, rider
from tests.test_pages import browser, new_page  # noqa: F401
from tracker.errors import SettingsError
from tracker.launcher import ServerProcess
from tracker.orders.counts import SERVICE_KEY
from tracker.redis_client import connect
from tracker.settings import Settings

FAR = (48.8566, 2.3522)  # the riders wait in another town: no offer changes their state
NO_ROUNDS = {"TRACKER_DISPATCH_INTERVAL_S": "3600"}  # and no dispatch round runs after the start


async def snapshot(ops: Ops, query: str = "") -> dict[str, Any]:
    resp = await ops.client.get("/v1/ops/snapshot" + query)
    assert resp.status_code == 200, resp.text
    return resp.json()


async def a_fleet(server: ServerProcess, ops: Ops, uid: Callable[[str], str], free: int) -> tuple[list, dict[str, int]]:
    """``free`` free riders, one unavailable, one carrying an order; two more orders waiting.
    Returns the sockets and the figures the ops page must show."""
    mid, waiting = uid("m"), [uid(f"o{i}") for i in range(3)]
    ids = [uid(f"r{i}") for i in range(free + 2)]
    riders = [await rider(server, rid) for rid in ids]
    for i, r in enumerate(riders):
        await r.location(FAR[0] + 0.001 * i, FAR[1])
    await riders[-1].availability(False)
    kitchen = await merchant(server, mid)
    try:
        for oid in waiting:
            assert (await ops.create(oid, mid)).status_code == 201
            await kitchen.confirm(oid)
            await kitchen.event(oid, "confirmed")
    finally:
        await kitchen.close()
    assert (await ops.assign(waiting[0], ids[-2])).status_code == 200
    return riders, {"riders": free + 2, "online": free + 1, "free": free, "busy": 1, "unavailable": 1,
                    "silent": 0, "open_orders": len(waiting) - 1}


async def counted(ops: Ops, want: dict[str, int]) -> dict[str, Any]:
    """The uncut snapshot once every rider's fix is written."""
    for _ in range(100):
        snap = await snapshot(ops)
        if len(snap["riders"]) == want["riders"] and len(snap["open_orders"]) == want["open_orders"]:
            return snap
        await asyncio.sleep(0.1)
    pytest.fail(f"the fleet never showed up whole: {snap['riders']}")


async def test_snapshot_totals_count_the_whole_fleet_when_its_lists_are_cut(own_redis, start_server, uid) -> None:  # type: ignore[no-untyped-def]
    srv = start_server(NO_ROUNDS, redis=own_redis)
    ops = Ops(srv)
    riders: list = []
    try:
        riders, want = await a_fleet(srv, ops, uid, free=4)
        whole = await counted(ops, want)
        states = [r["state"] for r in whole["riders"]]
        assert {k: whole["totals"][k] for k in want} == want
        assert want == {"riders": len(states), "online": len(states) - states.count("unavailable"),
                        "free": states.count("free"), "busy": states.count("busy"),
                        "unavailable": states.count("unavailable"), "silent": 0,
                        "open_orders": len(whole["open_orders"])}  # uncut, the totals are the lists' counts
        assert whole["truncated"] == {"riders": False, "open_orders": False, "kitchen_queue": False,
                                      "running_late": False}

        cut = await snapshot(ops, "?max_riders=2&max_orders=1")
        assert {k: cut["totals"][k] for k in want} == want  # the same totals from the cut lists
        assert cut["truncated"] == {"riders": True, "open_orders": True, "kitchen_queue": False, "running_late": False}
        assert len(cut["riders"]) == 2 and len(cut["open_orders"]) == 1
        assert cut["riders"][0]["state"] == "busy"  # who needs watching is listed first
        assert sum(c["free_riders"] for c in cut["cells"]) == want["free"]  # the hexagons count them all
        assert set(cut) >= {"ts", "riders", "open_orders", "cells", "dispatch", "service"}

        only = await snapshot(ops, "?max_riders=0&max_orders=0")
        assert only["riders"] == only["open_orders"] == [] and only["totals"]["online"] == want["online"]
        assert len((await snapshot(ops, "?max_riders=" + "0" * 5000 + "1"))["riders"]) == 1  # (leading zeros: a small number)
        for bad in ("max_riders=5001", "max_riders=-1", "max_orders=1e3", "max_orders=two", "max_riders=" + "9" * 5000):
            resp = await ops.client.get("/v1/ops/snapshot?" + bad)
            assert resp.status_code == 400 and bad.split("=")[0] in resp.json()["error"]["message"], resp.text
    finally:
        for r in riders:
            await r.close()
        await ops.close()


async def test_ops_page_says_it_shows_n_of_m_and_counts_them_all(own_redis, start_server, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    srv = start_server(NO_ROUNDS, redis=own_redis)
    ops = Ops(srv)
    riders: list = []
    page = await new_page(browser)
    try:
        riders, want = await a_fleet(srv, ops, uid, free=4)
        await counted(ops, want)
        await page.goto(f"{srv.base_url}/ops?token={srv.token('operator', 'ops')}&max_riders=2&max_orders=1")
        figure = lambda name: page.locator(f'[data-figure="{name}"] b')  # noqa: E731
        await expect(figure("riders online")).to_have_text(str(want["online"]))
        await expect(figure("free riders")).to_have_text(str(want["free"]))
        await expect(figure("riders unavailable")).to_have_text(str(want["unavailable"]))
        await expect(figure("orders waiting for a rider")).to_have_text(str(want["open_orders"]))
        await expect(page.locator("#capped")).to_have_text(re.compile(
            rf"^Showing 2 of {want['riders']} riders and 1 of {want['open_orders']} open orders\b.*count them all"))
        await expect(page.get_by_role("table", name=f"Riders (showing 2 of {want['riders']})")).to_be_visible()
        await expect(page.locator("[data-marker]")).to_have_count(2)
        await page.goto(f"{srv.base_url}/ops?token={srv.token('operator', 'ops')}")  # uncut: nothing to say
        await expect(page.get_by_role("table", name=f"Riders ({want['riders']})")).to_be_visible()
        await expect(page.locator("#capped")).to_be_hidden()
    finally:
        await page.context.close()
        for r in riders:
            await r.close()
        await ops.close()


async def newest_round_by(ops: Ops, server: ServerProcess) -> dict[str, Any]:
    """The snapshot's newest dispatch round once ``server`` has planned an order."""
    for _ in range(100):
        planned = (await snapshot(ops))["dispatch"]
        if planned.get("orders") and f":{server.proc.pid}:" in planned["process"]:  # type: ignore[union-attr]
            return planned
        await asyncio.sleep(0.1)
    pytest.fail(f"no round planned by the first server: {planned}")


async def test_ops_page_shows_how_old_the_last_round_is_and_when_dispatch_stalls(own_redis, start_server, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    # The first server holds the order's region (its lease lasts three of its 5 s rounds); the
    # second, whose page is watched, would plan every 0.5 s but cannot take the region from it.
    planner = start_server({"TRACKER_DISPATCH_INTERVAL_S": "5"}, redis=own_redis)
    ops, oid, mid = Ops(planner), uid("o"), uid("m")
    page = await new_page(browser)
    frozen = False
    try:
        assert (await ops.create(oid, mid)).status_code == 201
        kitchen = await merchant(planner, mid)
        await kitchen.confirm(oid)
        await kitchen.close()
        planned = await newest_round_by(ops, planner)
        watched = start_server({"TRACKER_DISPATCH_INTERVAL_S": "0.5"}, redis=own_redis)
        await page.goto(f"{watched.base_url}/ops?token={watched.token('operator', 'ops')}")
        where = page.locator("#dispatch-where")
        await expect(where).to_have_text(re.compile(
            rf"^\d+ s ago, region {planned['region']}, process {re.escape(planned['process'])}$"))
        planner.proc.send_signal(signal.SIGSTOP)  # type: ignore[union-attr]  # hung: its lease holds for up to 15 s
        frozen = True
        late = page.locator("#dispatch-late")
        stalled = r"^Orders have waited \d+ s with no dispatch round \(one is due every 0\.5 s\)"
        await expect(late).to_have_text(re.compile(stalled), timeout=8000)
        seconds = int((await where.text_content() or "").split()[0])
        assert seconds >= 2, seconds  # older than three rounds, and it says so
    finally:
        if frozen:
            planner.proc.send_signal(signal.SIGCONT)  # type: ignore[union-attr]
        await page.context.close()
        await ops.close()


async def test_ops_page_lists_the_orders_waiting_with_their_estimates(own_redis, start_server, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """An operator sees which orders wait, for how long, and which have no rider in sight."""
    srv = start_server({"TRACKER_DISPATCH_INTERVAL_S": "0.3"}, redis=own_redis)
    ops = Ops(srv)
    mid, far_mid = uid("m"), uid("mfar")
    planned, alone = uid("o-planned"), uid("o-alone")
    courier = await rider(srv, uid("r"))
    page = await new_page(browser)
    try:
        await courier.location(52.522, 13.405)
        ready_at = int((await ops.client.get("/healthz")).json()["ts"]) + 30 * 60_000  # no offer yet
        assert (await ops.create(alone, far_mid, pickup={"lat": 48.8566, "lng": 2.3522},
                                 dropoff={"lat": 48.86, "lng": 2.36})).status_code == 201  # Paris: no rider
        assert (await ops.create(planned, mid, ready_at=ready_at)).status_code == 201
        kitchen = await platform_kitchen(srv, far_mid)
        await confirm_all(kitchen, alone)
        await kitchen.close()
        kitchen = await platform_kitchen(srv, mid)
        await confirm_all(kitchen, planned)
        await kitchen.close()
        await page.goto(f"{srv.base_url}/ops?token={srv.token('operator', 'ops')}")
        rows = page.locator("#waiting tr")
        await expect(rows).to_have_count(2)
        assert await rows.evaluate_all("rs => rs.map((r) => r.dataset.order)") == [alone, planned]  # longest first
        # ready in 30, then 2 of service, 6 on the road and half the hand-over
        await expect(rows.nth(1).locator("td").nth(3)).to_have_text(re.compile(r"\(in (39|40) min\)"), timeout=10_000)
        await expect(rows.nth(0).locator("td").nth(3)).to_have_text("none: no rider can be planned now")
        await expect(page.locator("#waiting-shown")).to_have_text("(2)")
    finally:
        await page.context.close()
        await courier.close()
        await ops.close()


async def test_a_rider_whose_announced_shift_has_not_begun_is_not_counted_free(own_redis, start_server, uid) -> None:  # type: ignore[no-untyped-def]
    """It takes no offer until then: counted with the unavailable riders, not the free ones."""
    srv = start_server(NO_ROUNDS, redis=own_redis)
    ops = Ops(srv)
    early, ready = await rider(srv, uid("r-early")), await rider(srv, uid("r-ready"))
    try:
        now = (await snapshot(ops))["ts"]
        await early.availability(True, shift_start=now + 3_600_000, shift_end=now + 7_200_000)
        for i, r in enumerate((early, ready)):
            await r.location(FAR[0] + 0.001 * i, FAR[1])
        snap = await counted(ops, {"riders": 2, "open_orders": 0})
        assert {r["id"]: r["state"] for r in snap["riders"]} == {uid("r-early"): "unavailable", uid("r-ready"): "free"}
        assert (snap["totals"]["free"], snap["totals"]["unavailable"]) == (1, 1)
    finally:
        await early.close()
        await ready.close()
        await ops.close()


async def _metric(ops: Ops, name: str, want: float) -> float:
    """``name`` on the process's /metrics once it shows ``want`` (its gauges are refreshed every
    5 s), else as it last read."""
    for _ in range(100):
        found = re.search(rf"^{name} (\S+)$", (await ops.client.get("/metrics")).text, re.M)
        if found and float(found.group(1)) == want:
            break
        await asyncio.sleep(0.1)
    assert found, name
    return float(found.group(1))


async def test_the_on_time_share_follows_the_target_of_the_process_that_reads_it(own_redis, start_server, uid) -> None:  # type: ignore[no-untyped-def]
    """Two processes on one Redis, one with a target of 1 s, one of an hour: a delivery that
    took over a second is late for the first and on time for the second, on the snapshot and on
    /metrics alike, whichever process counted it (the verdict was fixed by the delivering
    process's target, and shown under each reader's own). Deliveries counted before the
    click-to-door histogram existed keep the verdict they were given."""
    strict = start_server({**NO_ROUNDS, "TRACKER_ON_TIME_TARGET_MIN": str(1 / 60)}, redis=own_redis)
    lenient = start_server({**NO_ROUNDS, "TRACKER_ON_TIME_TARGET_MIN": "60"}, redis=own_redis)
    ops, other = Ops(strict), Ops(lenient)
    oid, mid, rid = uid("o"), uid("m"), uid("r")
    kitchen, courier = await platform_kitchen(strict, mid), await rider(strict, rid)
    redis = connect(own_redis)
    try:
        await redis.hset(SERVICE_KEY, mapping={"delivered": 2, "on_time": 1, "ctd_minutes_sum": 70})  # an earlier version's
        assert (await ops.create(oid, mid, prep_minutes=0)).status_code == 201
        await confirm_all(kitchen, oid)
        await courier.location(PICKUP["lat"], PICKUP["lng"])
        assert await ops.rider_seen_at(rid, PICKUP["lat"], PICKUP["lng"])
        assert (await ops.assign(oid, rid)).status_code == 200
        for step in ("at_pickup", "picked_up", "at_dropoff"):
            await courier.progress(oid, step)
            await kitchen.event(oid, step)
        placed = (await ops.get(oid))["placed_at"]
        while (await ops.client.get("/healthz")).json()["ts"] < placed + 1500:  # over the strict target
            await asyncio.sleep(0.1)
        await courier.progress(oid, "delivered")  # counted by the strict process
        await kitchen.event(oid, "delivered")
        for reader, target, share in ((ops, 1 / 60, 1 / 3), (other, 60.0, 2 / 3)):
            service = (await reader.client.get("/v1/ops/snapshot")).json()["service"]
            assert (service["delivered"], service["target_min"], service["on_time_share"]) == (3, target, share)
            assert await _metric(reader, "tracker_on_time_share", share) == share
    finally:
        await redis.aclose()
        await kitchen.close()
        await courier.close()
        await ops.close()
        await other.close()


def test_the_on_time_target_is_a_whole_number_of_seconds() -> None:
    """The fleet's click-to-door is kept to the second: a target between two seconds is refused
    at start rather than judged wrongly."""
    assert Settings.from_env({"TRACKER_ON_TIME_TARGET_MIN": "7.5"}).on_time_target_min == 7.5
    with pytest.raises(SettingsError, match="whole number of seconds"):
        Settings.from_env({"TRACKER_ON_TIME_TARGET_MIN": "0.001"})
