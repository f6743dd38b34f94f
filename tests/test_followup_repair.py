"""An order step whose follow-up writes in other slots are lost to a Redis failure is repaired:
the order is still dispatched, and still on its rider's route.

The failure is made in the real Redis: the key a follow-up writes holds the wrong type while
the step runs (as a node dying between the step and its follow-ups would), then is cleared.
"""
from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable

import httpx
import pytest

from tests.orders_helpers import PICKUP, Ops, confirmed_order, merchant, rider
from tests.test_dispatch_live import FAST, rider_near_restaurant
from tracker.geo import dispatch_region
from tracker.locations import rider_orders_key
from tracker.orders import open_orders_key
from tracker.orders.counts import _MARK, APPLIED_KEY, BY_STATUS_KEY
from tracker.orders.followups import FOLLOWUPS_KEY
from tracker.orders.repair import RESCANNED_KEY
from tracker.orders.store import kitchen_queue_key, order_key
from tracker.launcher import ServerProcess
from tracker.redis_client import AnyRedis, connect

REPAIR_FAST = {**FAST, "TRACKER_FOLLOWUP_REPAIR_S": "1"}


@dataclass
class Repairing:
    """A server of its own that repairs after 1 s, the platform's HTTP client, and a client of its Redis."""

    srv: ServerProcess
    ops: Ops
    redis: AnyRedis


@pytest.fixture
async def repairing(own_redis: str, start_server: Callable[..., Any]) -> AsyncIterator[Repairing]:
    srv = start_server(REPAIR_FAST, redis=own_redis)
    client = Repairing(srv, Ops(srv), connect(own_redis))
    try:
        yield client
    finally:
        await client.ops.close()
        await client.redis.aclose()


async def test_an_order_confirmed_while_its_open_index_write_fails_is_still_dispatched(
        repairing: Repairing, uid: Callable[[str], str]) -> None:
    srv, ops, redis = repairing.srv, repairing.ops, repairing.redis
    oid, mid = uid("o"), uid("m")
    index = open_orders_key(dispatch_region(PICKUP["lat"], PICKUP["lng"]))
    await ops.create(oid, mid)
    await redis.set(index, "not a sorted set")  # the follow-up write will fail
    kitchen = await merchant(srv, mid)
    await kitchen.confirm(oid)
    await kitchen.event(oid, "confirmed")  # the step stands
    await kitchen.confirm(oid)
    error = await kitchen.expect("error")  # the first error frame answers the second confirm:
    assert error["code"] == "invalid_transition", error  # the first was answered as done
    await kitchen.close()
    ready = (await ops.client.get("/readyz")).json()
    assert "order-followup-repair" in ready["degraded"], ready  # and its failure is shown
    await redis.delete(index)  # the failure passes; nothing asks again
    courier = await rider_near_restaurant(srv, uid("r"), 0.002)
    offer = await courier.expect("offer", timeout=10)
    assert [o["order_id"] for o in offer["orders"]] == [oid]
    await courier.close()


async def test_a_hand_assignment_whose_route_write_fails_is_on_the_riders_route_after_repair(
        repairing: Repairing, uid: Callable[[str], str]) -> None:
    srv, ops, redis = repairing.srv, repairing.ops, repairing.redis
    oid, mid, rid = uid("o"), uid("m"), uid("r")
    near = await rider_near_restaurant(srv, uid("near"), 0.001)
    try:
        early = await rider(srv, rid)  # (no position: dispatch offers it nothing)
        await confirmed_order(srv, ops, oid, mid)
        offer = await near.expect("offer", timeout=10)
        await redis.set(rider_orders_key(rid), "not a set")  # the rider's order set cannot be written
        resp = await ops.assign(oid, rid)
        assert resp.status_code == 200 and resp.json()["rider_id"] == rid, resp.text  # the step stands
        assert [o["order_id"] for o in (await early.expect("assigned"))["orders"]] == [oid]  # and is told
        withdrawn = await near.expect("offer_withdrawn", timeout=3)  # at once, not at the repair
        assert withdrawn["offer_id"] == offer["offer_id"]
        await early.close()
        for _ in range(50):  # while the key stays wrong, each repair fails, and says so
            ready = (await ops.client.get("/readyz")).json()
            if "order-followup-repair" in ready["degraded"]:
                break
            await asyncio.sleep(0.1)
        task = next(t for t in ready["tasks"] if t["name"] == "order-followup-repair")
        assert "WRONGTYPE" in task["last_error"] and "order-followup-repair" in ready["degraded"], ready
        await redis.delete(rider_orders_key(rid))
        deadline = time.monotonic() + 10
        courier = await rider(srv, rid, keep_route=True)
        route = await courier.expect("route", timeout=5)
        while not route["orders"] and time.monotonic() < deadline:  # repaired within about 2 s
            await courier.close()
            await asyncio.sleep(0.2)
            courier = await rider(srv, rid, keep_route=True)
            route = await courier.expect("route", timeout=5)
        assert [(o["order_id"], o["status"]) for o in route["orders"]] == [(oid, "assigned")]
        await courier.close()
    finally:
        await near.close()


async def test_an_order_left_in_a_riders_set_does_not_keep_it_from_dispatch(
        repairing: Repairing, uid: Callable[[str], str]) -> None:
    """A lost write left a delivered order in the rider's order set: the rider is still idle
    for dispatch (it used to be left out of every round, for good)."""
    srv, ops, redis = repairing.srv, repairing.ops, repairing.redis
    done, oid, mid, rid = uid("done"), uid("o"), uid("m"), uid("r")
    courier = await rider_near_restaurant(srv, rid, 0.002)
    try:
        await ops.create(done, mid)
        assert (await ops.cancel(done)).status_code == 200
        await redis.sadd(rider_orders_key(rid), done)  # not its order, not carried by anyone
        await confirmed_order(srv, ops, oid, mid)
        offer = await courier.expect("offer", timeout=10)
        assert [o["order_id"] for o in offer["orders"]] == [oid]
    finally:
        await courier.close()


async def test_repair_tells_nobody_of_a_step_that_never_ran(
        repairing: Repairing, uid: Callable[[str], str]) -> None:
    """A journaled cancel whose step never ran (Redis failed before the script) leaves the
    rider's order alone: no ``order_cancelled`` from the repair."""
    srv, ops, redis = repairing.srv, repairing.ops, repairing.redis
    oid, mid, rid = uid("o"), uid("m"), uid("r")
    courier = await rider(srv, rid)
    try:
        await confirmed_order(srv, ops, oid, mid)
        assert (await ops.assign(oid, rid)).status_code == 200
        await courier.expect("assigned")
        await redis.zadd(FOLLOWUPS_KEY, {json.dumps([oid, "cancelled", "x"]): 0})  # long overdue
        for _ in range(50):
            if not await redis.zcard(FOLLOWUPS_KEY):
                break
            await asyncio.sleep(0.1)
        assert not await redis.zcard(FOLLOWUPS_KEY)  # repaired (and dropped)
        with pytest.raises(asyncio.TimeoutError):
            await courier.expect("order_cancelled", timeout=1.5)
        assert (await ops.get(oid))["status"] == "assigned"
    finally:
        await courier.close()


async def _by_status(ops: Ops) -> dict[str, int]:
    return (await ops.client.get("/v1/ops/snapshot")).json()["service"]["by_status"]


async def test_counts_lost_with_a_step_are_made_good_once(repairing: Repairing, uid: Callable[[str], str]) -> None:
    """The ops page's orders-by-status counts: a step or a create whose count could not be
    written is counted by the repair, exactly once, retries or not (they used to drift, and
    went negative)."""
    srv, ops, redis = repairing.srv, repairing.ops, repairing.redis
    oid, late, mid = uid("o"), uid("b"), uid("m")
    await confirmed_order(srv, ops, oid, mid)
    assert {s: n for s, n in (await _by_status(ops)).items() if n} == {"confirmed": 1}
    await redis.set(APPLIED_KEY, "not a sorted set")  # the counters cannot be written
    assert (await ops.cancel(oid)).status_code == 200  # the step stands
    assert (await ops.create(late, mid)).status_code == 201  # stored: answered as created
    assert "order-followup-repair" in (await ops.client.get("/readyz")).json()["degraded"]  # and the failure shown
    await redis.delete(APPLIED_KEY)  # the failure passes; nobody retries
    for _ in range(50):
        counts = {s: n for s, n in (await _by_status(ops)).items() if n}
        if counts.get("cancelled") and counts.get("placed"):
            break
        await asyncio.sleep(0.1)
    assert counts == {"placed": 1, "cancelled": 1}
    await asyncio.sleep(2.5)  # more repair passes, and a retry, count nothing twice
    assert (await ops.create(late, mid)).status_code == 200
    assert {s: n for s, n in (await _by_status(ops)).items() if n} == {"placed": 1, "cancelled": 1}


async def test_counts_of_an_earlier_version_still_add_up_during_a_rolling_upgrade(
        repairing: Repairing, uid: Callable[[str], str]) -> None:
    """Processes of the version before kept counts in ``orders:by_status`` / ``orders:service``
    and left records without counting fields; while old and new processes run side by side,
    the fleet-wide figures stay the sum of both, and an order an old process created is moved
    out of the status it was counted under, once."""
    ops, redis = repairing.ops, repairing.redis
    oid, mid = uid("o"), uid("m")
    await redis.hset("orders:by_status", mapping={"delivered": 7, "cancelled": 2})  # orders of the old version
    await redis.hset("orders:service", mapping={"delivered": 7, "on_time": 5, "ctd_minutes_sum": 231.5})
    assert (await ops.create(oid, mid)).status_code == 201
    # As if an old process had created it: a record with no counting fields, counted in the old key.
    await redis.hdel(order_key(mid, oid), "counted_status")
    await redis.hincrby(BY_STATUS_KEY, "placed", -1)
    await redis.hincrby("orders:by_status", "placed", 1)
    assert {s: n for s, n in (await _by_status(ops)).items() if n} == {"placed": 1, "delivered": 7, "cancelled": 2}
    assert (await ops.create(oid, mid)).status_code == 200  # a retry on a new process: already counted
    assert {s: n for s, n in (await _by_status(ops)).items() if n} == {"placed": 1, "delivered": 7, "cancelled": 2}
    kitchen = await merchant(repairing.srv, mid)
    await kitchen.confirm(oid)  # a new process takes the next step
    await kitchen.event(oid, "confirmed")
    await kitchen.close()
    assert (await ops.create(oid, mid)).status_code == 200  # and the platform retries its create
    assert {s: n for s, n in (await _by_status(ops)).items() if n} == {"confirmed": 1, "delivered": 7, "cancelled": 2}
    service = (await ops.client.get("/v1/ops/snapshot")).json()["service"]
    assert service["delivered"] == 7 and service["on_time_share"] == pytest.approx(5 / 7)
    assert service["click_to_door_mean_min"] == pytest.approx(231.5 / 7)
    for _ in range(70):  # /metrics shows the same fleet-wide figures (refreshed every 5 s)
        text = (await ops.client.get("/metrics")).text
        if "tracker_fleet_orders_delivered 7.0" in text:
            break
        await asyncio.sleep(0.1)
    assert "tracker_fleet_orders_delivered 7.0" in text and 'tracker_orders_by_status{status="confirmed"} 1.0' in text
    assert f"tracker_on_time_share {5 / 7!r}" in text and f"tracker_click_to_door_mean_minutes {231.5 / 7!r}" in text


async def test_an_id_used_again_after_a_late_repair_keeps_its_new_order(
        own_redis: str, start_server: Callable[..., Any], uid: Callable[[str], str]) -> None:
    """An ended order's id expires with its record even when the step's follow-ups were
    repaired later; the id used again then names the new order for good (the late repair gave
    the old id a fresh expiry, which took the new order's index with it: 404 and a record left
    in Redis forever)."""
    srv = start_server({**REPAIR_FAST, "TRACKER_ORDER_RETENTION_S": "3"}, redis=own_redis)
    ops, redis = Ops(srv), connect(own_redis)
    oid, mid = uid("o"), uid("m")
    index = open_orders_key(dispatch_region(PICKUP["lat"], PICKUP["lng"]))
    try:
        assert (await ops.create(oid, mid)).status_code == 201
        await redis.set(index, "not a sorted set")  # the cancel's follow-up write fails
        assert (await ops.cancel(oid)).status_code == 200
        await asyncio.sleep(1.5)
        await redis.delete(index)  # the failure passes: the repair re-derives the follow-ups
        for _ in range(60):
            if (await ops.client.get(f"/v1/orders/{oid}")).status_code == 404:
                break
            await asyncio.sleep(0.1)
        assert (await ops.client.get(f"/v1/orders/{oid}")).status_code == 404
        again = await ops.create(oid, mid)  # the id is free again
        assert again.status_code == 201, again.text
        await asyncio.sleep(4)  # past when the old id would have expired
        order = await ops.get(oid)
        assert order["status"] == "placed" and [e["kind"] for e in order["events"]] == ["placed"], order
    finally:
        await ops.close()
        await redis.aclose()


async def test_an_id_used_again_is_counted_like_a_new_order(
        own_redis: str, start_server: Callable[..., Any], uid: Callable[[str], str]) -> None:
    """Each life of an id has count tags of its own (they were the id and a number starting
    again at 1, so the second order's changes within the hour were taken as already applied)."""
    srv = start_server({**REPAIR_FAST, "TRACKER_ORDER_RETENTION_S": "2"}, redis=own_redis)
    ops = Ops(srv)
    oid, mid = uid("o"), uid("m")
    kitchen = await merchant(srv, mid)
    try:
        assert (await ops.create(oid, mid)).status_code == 201
        assert (await ops.cancel(oid)).status_code == 200
        await asyncio.sleep(3)
        assert (await ops.create(oid, mid)).status_code == 201
        await kitchen.confirm(oid)
        await kitchen.event(oid, "confirmed")
        assert {s: n for s, n in (await _by_status(ops)).items() if n} == {"confirmed": 1, "cancelled": 1}
        assert (await ops.cancel(oid)).status_code == 200
        assert {s: n for s, n in (await _by_status(ops)).items() if n} == {"cancelled": 2}
    finally:
        await kitchen.close()
        await ops.close()


async def test_a_step_an_earlier_version_left_unjournaled_is_repaired_after_the_upgrade(
        own_redis: str, start_server: Callable[..., Any], uid: Callable[[str], str]) -> None:
    """Earlier versions took a step without its journal entry when that could not be written (a
    cluster's ``{orders}`` node failing over): the step stood, its count stayed pending in the
    record and its open-order index was never written, and nothing retried (a confirmed order
    never dispatched). A server started on such a Redis journals these orders once, and the
    repair makes their counts and indexes good."""
    first = start_server(REPAIR_FAST, redis=own_redis)
    ops, redis = Ops(first), connect(own_redis, decode_responses=True)
    oid, mid = uid("o"), uid("m")
    region = dispatch_region(PICKUP["lat"], PICKUP["lng"])
    try:
        assert (await ops.create(oid, mid)).status_code == 201
        for _ in range(50):
            if await redis.hget(BY_STATUS_KEY, "placed") == "1":
                break
            await asyncio.sleep(0.1)
        await ops.close()
        first.stop()
        assert await redis.exists(RESCANNED_KEY)  # (the first start of this version rescanned)
        # What such a confirm left: the record stepped, its count marked but never applied, no journal.
        key = order_key(mid, oid)
        await redis.hset(key, mapping={"status": "confirmed", "confirmed_at": int(time.time() * 1000)})
        assert (await redis.eval(_MARK, 1, key, oid, "")).split("|")[1:3] == ["placed", "confirmed"]
        assert not await redis.zscore(open_orders_key(region), oid) and not await redis.zcard(FOLLOWUPS_KEY)
        await redis.delete(RESCANNED_KEY)  # as on a Redis this version has not started on yet
        second = start_server(REPAIR_FAST, redis=own_redis)
        ops = Ops(second)
        for _ in range(100):
            counts = {s: int(n) for s, n in (await redis.hgetall(BY_STATUS_KEY)).items() if int(n)}
            if counts == {"confirmed": 1}:
                break
            await asyncio.sleep(0.1)
        assert counts == {"confirmed": 1}
        assert await redis.zscore(open_orders_key(region), oid) is not None  # to be dispatched at last
        assert await redis.zscore(kitchen_queue_key(region), oid) is None  # no longer waiting for its kitchen
        assert await redis.hget(key, "count_pending") is None and await redis.exists(RESCANNED_KEY)
        assert "journaled 1 order(s) whose count" in second.log_path.read_text()
    finally:
        await ops.close()
        await redis.aclose()


async def test_readyz_tells_a_one_shot_task_that_finished_from_one_that_is_not_running(server: ServerProcess) -> None:
    """``order-followup-rescan`` returns once its work is done: ``done`` true. Before, it was listed
    ``running`` false and nothing more, as a dead task is, a false alarm for whoever alerts on it."""
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10.0) as http:
        deadline = time.monotonic() + 10
        while True:
            tasks = {t["name"]: t for t in (await http.get("/readyz")).json()["tasks"]}
            if not tasks["order-followup-rescan"]["running"] or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
    rescan, loop = tasks["order-followup-rescan"], tasks["dispatch-loop"]
    assert (rescan["running"], rescan["done"], rescan["failures"]) == (False, True, 0), rescan
    assert (loop["running"], loop["done"]) == (True, False), loop  # a long-running task, running
