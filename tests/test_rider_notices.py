"""What a rider is told without asking: its order cancelled, an order assigned by hand, an
offer made void by a hand assignment, and where it stands when it (re)connects."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, AsyncIterator

import pytest

from clients.jsonsocket import JsonSocket
from clients.rider import RiderClient
from tests.orders_helpers import PICKUP, Ops, at_the_counter, carried_after_frames, confirm_all, customer, frame_where, merchant, platform_kitchen, rider
from tests.test_pubsub import kill_pubsub_connections
from tracker.redis_client import connect
from tests.test_dispatch_live import FAST, accepted, offered, rider_near_restaurant
from tracker.launcher import ServerProcess


@dataclass
class Carrying:
    """A server of its own, and a rider near the restaurant that accepted the order it was offered."""

    srv: ServerProcess
    ops: Ops
    order_id: str
    merchant_id: str
    courier: RiderClient


@pytest.fixture
async def carrying(own_redis, start_server, uid) -> AsyncIterator[Carrying]:  # type: ignore[no-untyped-def]
    srv = start_server(FAST, redis=own_redis)
    ops = Ops(srv)
    oid, mid = uid("o"), uid("m")
    courier = await rider_near_restaurant(srv, uid("r"), 0.002)
    try:
        await accepted(srv, ops, oid, mid, courier)
        yield Carrying(srv, ops, oid, mid, courier)
    finally:
        await courier.close()
        await ops.close()


async def test_rider_hears_at_once_that_the_order_it_carries_was_cancelled(carrying: Carrying) -> None:
    oid, courier = carrying.order_id, carrying.courier
    resp = await carrying.ops.client.post(f"/v1/orders/{oid}/cancel", json={"reason": "customer called"})
    assert resp.status_code == 200, resp.text
    notice = await courier.expect("order_cancelled", timeout=5)
    assert notice == {"type": "order_cancelled", "order_id": oid, "by": "operator", "reason": "customer called"}
    # and its socket still works: the order is no longer its to report on
    await courier.progress(oid, "at_pickup")
    assert (await courier.expect("error"))["code"] == "invalid_transition"


async def test_rider_on_its_way_hears_when_the_food_is_delayed_and_ready(carrying: Carrying) -> None:
    oid, courier = carrying.order_id, carrying.courier
    kitchen = await merchant(carrying.srv, carrying.merchant_id)
    try:
        await kitchen.delay(oid, 10)
        delayed = await courier.expect("food_delayed", timeout=5)
        assert delayed["order_id"] == oid and delayed["ready_at"] == (await carrying.ops.get(oid))["ready_at"]
        await kitchen.ready(oid)
        ready = await courier.expect("food_ready", timeout=5)
        assert ready["order_id"] == oid and ready["ts"] >= delayed["ts"]  # no more waiting blind at the counter
    finally:
        await kitchen.close()


async def test_hand_assignment_tells_the_rider_and_withdraws_the_offer_made_to_another(own_redis, start_server, uid) -> None:  # type: ignore[no-untyped-def]
    srv = start_server(FAST, redis=own_redis)
    ops = Ops(srv)
    oid, mid, near_id, chosen_id = uid("o"), uid("m"), uid("near"), uid("chosen")
    near = await rider_near_restaurant(srv, near_id, 0.001)
    chosen = await rider(srv, chosen_id)
    await chosen.availability(False)  # not in dispatch: only the operator gives it work
    try:
        offer = await offered(ops, near, oid, mid)
        resp = await ops.assign(oid, chosen_id)
        assert resp.status_code == 200 and resp.json()["rider_id"] == chosen_id, resp.text
        frame = await chosen.expect("assigned", timeout=5)
        assert frame["offer_id"] is None and frame["by"] == "operator"
        assert [o["order_id"] for o in frame["orders"]] == [oid] and frame["orders"][0]["pickup"] == PICKUP
        assert set(frame["orders"][0]) == set(offer["orders"][0])  # the keys an offer's orders have
        assert frame["orders"][0]["ready_at"] == offer["orders"][0]["ready_at"]  # the same kitchen estimate
        withdrawn = await near.expect("offer_withdrawn", timeout=5)
        assert withdrawn["offer_id"] == offer["offer_id"]
        await near.accept(offer["offer_id"])
        late = await near.expect("error")
        assert late["code"] == "conflict" and "withdrawn" in late["message"], late
        again = await ops.assign(oid, near_id)  # it has a rider: take it back first
        assert again.status_code == 409 and again.json()["error"]["code"] == "conflict", again.text
        assert (await ops.get(oid))["rider_id"] == chosen_id
        assert (await ops.cancel(oid)).status_code == 200  # a finished order cannot be assigned at all
        finished = await ops.assign(oid, near_id)
        assert finished.status_code == 409 and finished.json()["error"]["code"] == "invalid_transition", finished.text
    finally:
        await near.close()
        await chosen.close()
        await ops.close()


async def test_reconnecting_rider_gets_its_route_and_its_open_offer_again(own_redis, start_server, uid) -> None:  # type: ignore[no-untyped-def]
    srv = start_server({**FAST, "TRACKER_OFFER_TIMEOUT_S": "30"}, redis=own_redis)
    ops = Ops(srv)
    first, second, mid, rid = uid("o1"), uid("o2"), uid("m"), uid("r")
    courier = await rider_near_restaurant(srv, rid, 0.002)
    try:
        await accepted(srv, ops, first, mid, courier)
        await courier.close()  # the app restarts and has forgotten everything
        courier = await rider(srv, rid, keep_route=True)
        route = await courier.expect("route", timeout=5)
        assert [(o["order_id"], o["status"]) for o in route["orders"]] == [(first, "assigned")]
        assert route["orders"][0]["dropoff"] and route["orders"][0]["merchant_id"] == mid
        await courier.location(PICKUP["lat"] + 0.002, PICKUP["lng"])
        await courier.progress(first, "at_pickup")
        await courier.progress(first, "picked_up")
        await courier.progress(first, "at_dropoff")
        await courier.progress(first, "delivered")
        offer = await offered(ops, courier, second, mid)
        courier.ws.transport.abort()  # lost the socket (no close frame) while the offer was on screen
        courier = await rider(srv, rid, keep_route=True)
        again = await courier.expect("offer", timeout=5)
        assert again["offer_id"] == offer["offer_id"] and [o["order_id"] for o in again["orders"]] == [second]
        assert [f for f in courier.received if f.get("type") == "route"] == [{"type": "route", "orders": [], "paused": None}]
        await courier.accept(again["offer_id"])
        assert (await courier.expect("assigned"))["offer_id"] == offer["offer_id"]
    finally:
        await courier.close()
        await ops.close()


async def test_an_order_taken_back_as_the_rider_connects_is_not_brought_back_by_its_route(own_redis, start_server, uid) -> None:  # type: ignore[no-untyped-def]
    """The operator takes an order back while the rider's app connects: the ``route`` read before
    the take-back must not reach the rider after the ``unassigned`` frame (the app would go on
    showing an order it no longer has). Sixty held orders make the route's read long enough for
    the take-back to land in it; on the old code 3 to 6 of the 12 connects ended wrong."""
    srv = start_server({}, redis=own_redis)
    ops = Ops(srv)
    mid, rid = uid("m"), uid("r")
    held = [uid(f"o{i}") for i in range(60)]
    kitchen = await platform_kitchen(srv, mid)
    try:
        for oid in held:
            await ops.create(oid, mid)
        await confirm_all(kitchen, *held)
        for oid in held:
            assert (await ops.assign(oid, rid)).status_code == 200
        wrong = []
        for i, taken in enumerate(held[:12]):
            async def take_back(oid: str = taken, lag: float = (i % 6) * 0.003) -> None:
                await asyncio.sleep(lag)
                resp = await ops.client.post(f"/v1/orders/{oid}/unassign", json={})
                assert resp.status_code == 200, resp.text

            courier, _ = await asyncio.gather(rider(srv, rid, keep_route=True), take_back())
            try:
                carries = await carried_after_frames(courier)
            finally:
                await courier.close()
            if taken in carries or carries != set(held[i + 1:]):
                wrong.append((taken, sorted(set(held[i + 1:]) ^ carries)))
        assert not wrong, f"the rider's view after connecting differs from what it carries: {wrong}"
    finally:
        await kitchen.close()
        await ops.close()


async def test_after_a_pubsub_cut_the_rider_is_told_its_route_again(carrying: Carrying, own_redis) -> None:  # type: ignore[no-untyped-def]
    client = connect(own_redis)
    try:
        # The server's pub/sub connection drops (a network blip): whatever its inbox carried
        # meanwhile may be lost, so the rider is told again what it carries.
        await kill_pubsub_connections(client)
        route = await carrying.courier.expect("route", timeout=10)
        assert [(o["order_id"], o["status"]) for o in route["orders"]] == [(carrying.order_id, "assigned")]
    finally:
        await client.aclose()


async def test_a_customer_resuming_with_its_last_event_still_sees_the_rider(carrying: Carrying) -> None:
    srv, oid = carrying.srv, carrying.order_id
    last = (await carrying.ops.get(oid))["events"][-1]["id"]  # the page loaded the order, then opens its channel
    url = f"{srv.ws_url}/v1/ws/customer?order_id={oid}&last_event_id={last}"
    watcher = await JsonSocket.open(url, srv.token("customer", oid))
    await carrying.courier.location(PICKUP["lat"] + 0.0021, PICKUP["lng"])
    seen = await watcher.expect("rider_location", timeout=5)  # no status event needed first
    if seen["eta"] is None:  # the frame sent on connect, read before the feed wrote the ETA (a loaded machine)
        seen = await watcher.expect("rider_location", timeout=5)
    assert seen["order_id"] == oid and seen["eta"] > 0
    await watcher.close()


async def _delayed_half_an_hour(carrying: Carrying) -> tuple[Any, Any, int, dict]:
    """The customer watching, the rider's ETA known, then the kitchen's 30-minute delay:
    (customer socket, kitchen socket, the ETA before, the customer's frame with the new one)."""
    watcher = await customer(carrying.srv, carrying.order_id)
    await carrying.courier.location(PICKUP["lat"] + 0.0021, PICKUP["lng"])
    # (the frame sent on connect has no ETA yet when the feed has not written one since the assignment)
    before = (await frame_where(watcher, lambda f: f.get("type") == "rider_location" and f["eta"] is not None))["eta"]
    kitchen = await merchant(carrying.srv, carrying.merchant_id)
    await kitchen.delay(carrying.order_id, 30)
    await kitchen.event(carrying.order_id, "food_delayed")
    # no new fix from the rider: the delay alone moves the estimate by about 30 minutes
    moved = await frame_where(watcher, lambda f: f.get("type") == "rider_location" and f["eta"] > before + 20 * 60_000)
    return watcher, kitchen, before, moved


async def test_kitchen_delay_moves_the_customers_eta_without_waiting_for_a_fix(carrying: Carrying) -> None:
    watcher, kitchen, before, moved = await _delayed_half_an_hour(carrying)
    await kitchen.close()
    assert moved["eta"] - before < 40 * 60_000
    order = await carrying.ops.get(carrying.order_id)
    assert order["pickup_eta"] >= order["ready_at"] and order["eta"] == moved["eta"]
    await watcher.close()


async def test_kitchen_ready_after_a_delay_brings_the_eta_back(carrying: Carrying) -> None:
    oid = carrying.order_id
    watcher, kitchen, before, _ = await _delayed_half_an_hour(carrying)
    await kitchen.ready(oid)  # the kitchen was quicker than it feared: the food waits for the rider
    await kitchen.event(oid, "food_ready")
    await kitchen.close()
    back = await frame_where(watcher, lambda f: f.get("type") == "rider_location" and f["eta"] < before + 5 * 60_000)
    order = await carrying.ops.get(oid)
    assert order["eta"] == back["eta"] and order["pickup_eta"] < order["ready_at"]  # the delayed time no longer counts
    await watcher.close()


async def test_a_rider_waiting_at_the_restaurant_does_not_push_the_eta_back(own_redis, start_server, uid) -> None:  # type: ignore[no-untyped-def]
    """The pickup's service time runs from when the rider reached the restaurant: a rider who
    waits there does not move the customer's ETA later with every fix. The server's clock runs
    60 times faster (a minute is 1 s), and the pickup takes 10 of its minutes."""
    fast = start_server({"TRACKER_TIME_SCALE": "60", "TRACKER_PICKUP_SERVICE_S": "600"}, redis=own_redis)
    ops = Ops(fast)
    oid, mid, rid = uid("o"), uid("m"), uid("r")
    courier, watcher = await at_the_counter(fast, ops, oid, mid, rid)
    try:
        etas = []
        for lat in (PICKUP["lat"] + 0.00001, PICKUP["lat"] + 0.00002):
            await asyncio.sleep(1.0)  # a server minute waiting at the counter
            await courier.location(lat, PICKUP["lng"])
            frame = await frame_where(watcher, lambda f: f.get("type") == "rider_location" and f["lat"] == lat and f["eta"])
            etas.append(frame["eta"])
        await watcher.close()
        assert abs(etas[1] - etas[0]) < 30_000, etas  # (counted from each fix, it moved a server minute later)
    finally:
        await courier.close()
        await ops.close()


async def test_a_rider_that_carries_nothing_is_told_so_on_connect(server, uid) -> None:  # type: ignore[no-untyped-def]
    courier = await rider(server, uid("r"), keep_route=True)
    try:
        assert await courier.recv(timeout=5) == {"type": "route", "orders": [], "paused": None}
        assert not await _has_frame(courier)  # and no offer: there is none
    finally:
        await courier.close()


async def _has_frame(sock) -> bool:  # type: ignore[no-untyped-def]
    try:
        await sock.recv(timeout=0.3)
        return True
    except asyncio.TimeoutError:
        return False

