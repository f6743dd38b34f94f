"""The order lifecycle over real sockets and Redis, seen the same by everyone; bad input refused."""
from __future__ import annotations

import asyncio
import socket

import httpx
import pytest
import redis.asyncio
from websockets.exceptions import ConnectionClosed

from clients.jsonsocket import JsonSocket
from tests.orders_helpers import Ops, confirmed_order, customer, deliver, events_until, merchant, platform_kitchen, rider
from tests.test_estimates import server_now
from tracker.launcher import ServerProcess
from tracker.redis_client import connect

LIFECYCLE = ["placed", "confirmed", "food_ready", "assigned", "at_pickup", "picked_up", "at_dropoff", "delivered"]


async def test_whole_lifecycle_is_seen_identically_by_customer_merchant_and_http(server: ServerProcess, uid) -> None:  # type: ignore[no-untyped-def]
    ops = Ops(server)
    oid, mid, rid = uid("o"), uid("m"), uid("r")
    kitchen = await merchant(server, mid)
    courier = await rider(server, rid)
    try:
        resp = await ops.create(oid, mid)
        assert resp.status_code == 201 and resp.json()["status"] == "placed"
        watcher = await customer(server, oid)
        await kitchen.event(oid, "placed")
        await kitchen.confirm(oid)
        await kitchen.event(oid, "confirmed")
        await kitchen.ready(oid)
        await kitchen.event(oid, "food_ready")
        assert (await ops.assign(oid, rid)).status_code == 200
        await deliver(courier, kitchen, oid)
        seen_by_customer = await events_until(watcher, "delivered")
        order = await ops.get(oid)
        assert order["status"] == "delivered" and order["rider_id"] == rid
        assert [e["kind"] for e in order["events"]] == LIFECYCLE
        assert [(e["id"], e["kind"], e["ts"]) for e in seen_by_customer] == [
            (e["id"], e["kind"], e["ts"]) for e in order["events"]
        ]
        # the merchant's feed names the same order events (it has its own feed ids)
        kitchen_again = await merchant(server, mid)
        feed = [await kitchen_again.expect("event") for _ in LIFECYCLE]
        assert [f["order_event_id"] for f in feed] == [e["id"] for e in order["events"]]
        await kitchen_again.close()
        # the customer's own HTTP view agrees
        async with httpx.AsyncClient(base_url=server.base_url) as client:
            mine = await client.get(f"/v1/orders/{oid}", headers={"Authorization": "Bearer " + server.token("customer", oid)})
        assert mine.status_code == 200 and mine.json()["events"] == order["events"]
        await watcher.close()
    finally:
        await kitchen.close()
        await courier.close()
        await ops.close()


async def test_create_is_idempotent_by_id_and_refuses_a_different_body(server: ServerProcess, uid) -> None:  # type: ignore[no-untyped-def]
    ops = Ops(server)
    oid, mid = uid("o"), uid("m")
    try:
        ready_at = await server_now(server.base_url) + 3_600_000
        first = await ops.create(oid, mid, ready_at=ready_at)
        again = await ops.create(oid, mid, ready_at=ready_at)
        assert (first.status_code, again.status_code) == (201, 200)
        assert again.json() == first.json() == await ops.get(oid)  # the order as GET shows it, events and all
        assert [e["kind"] for e in first.json()["events"]] == ["placed"]
        other = await ops.create(oid, mid, ready_at=ready_at + 1)
        assert other.status_code == 409 and other.json()["error"]["code"] == "conflict"
        elsewhere = await ops.create(oid, uid("m2"))
        assert elsewhere.status_code == 409 and elsewhere.json()["error"]["code"] == "conflict"
        assert len((await ops.get(oid))["events"]) == 1
    finally:
        await ops.close()


async def test_a_key_sent_twice_takes_its_last_value_as_documented(server: ServerProcess, uid) -> None:  # type: ignore[no-untyped-def]
    ops = Ops(server)
    first, last, mid = uid("o-first"), uid("o-last"), uid("m")
    try:
        raw = ('{"id": "%s", "merchant_id": "%s", "pickup": {"lat": 52.52, "lng": 13.4}, '
               '"dropoff": {"lat": 52.53, "lng": 13.42}, "id": "%s"}' % (first, mid, last))
        resp = await ops.client.post("/v1/orders", content=raw, headers={"Content-Type": "application/json"})
        assert resp.status_code == 201 and resp.json()["id"] == last, resp.text
        assert (await ops.client.get(f"/v1/orders/{first}")).status_code == 404
    finally:
        await ops.close()


async def test_minus_zero_is_zero_so_a_retry_sending_0_is_the_same_order(server: ServerProcess, uid) -> None:  # type: ignore[no-untyped-def]
    ops = Ops(server)
    oid, mid = uid("o"), uid("m")
    try:
        near = {"lat": 0.01, "lng": 13.41}  # (a drop-off near that pickup)
        first = await ops.create(oid, mid, prep_minutes=-0.0, pickup={"lat": -0.0, "lng": 13.4}, dropoff=near)
        assert first.status_code == 201 and first.json()["prep_minutes"] == 0, first.text
        retry = await ops.create(oid, mid, prep_minutes=0, pickup={"lat": 0, "lng": 13.4}, dropoff=near)
        assert retry.status_code == 200, retry.text
        shown = (await ops.client.get(f"/v1/orders/{oid}")).text
        assert '"lat":0.0' in shown and '"prep_minutes":0.0' in shown and ":-0.0" not in shown, shown
    finally:
        await ops.close()


@pytest.mark.parametrize(
    "body, code",
    [
        ({"merchant_id": "m", "pickup": {"lat": 1, "lng": 1}, "dropoff": {"lat": 1, "lng": 1}}, "bad_message"),
        ({"id": "bad id!", "merchant_id": "m", "pickup": {"lat": 1, "lng": 1}, "dropoff": {"lat": 1, "lng": 1}}, "bad_message"),
        # a final newline is not part of an id (it made a second order beside "x1")
        ({"id": "x1\n", "merchant_id": "m", "pickup": {"lat": 1, "lng": 1}, "dropoff": {"lat": 1, "lng": 1}}, "bad_message"),
        ({"id": "b" * 64 + "\n", "merchant_id": "m", "pickup": {"lat": 1, "lng": 1}, "dropoff": {"lat": 1, "lng": 1}},
         "bad_message"),
        ({"id": "x1", "merchant_id": "m\n", "pickup": {"lat": 1, "lng": 1}, "dropoff": {"lat": 1, "lng": 1}}, "bad_message"),
        ({"id": "x1", "merchant_id": "m", "pickup": {"lat": 100, "lng": 1}, "dropoff": {"lat": 1, "lng": 1}}, "bad_coordinates"),
        ({"id": "x1", "merchant_id": "m", "pickup": [1, 1], "dropoff": {"lat": 1, "lng": 1}}, "bad_message"),
        ({"id": "x1", "merchant_id": "m", "pickup": {"lat": 1, "lng": 1}, "dropoff": {"lat": 1, "lng": 1}, "ready_at": "soon"}, "bad_message"),
        ({"id": "x1", "merchant_id": "m", "pickup": {"lat": 1, "lng": 1}, "dropoff": {"lat": 1, "lng": 1}, "ready_at": 1.5}, "bad_message"),
        # just past 2**53: a float rounds it into range, and it had been kept as 2**53
        ({"id": "x1", "merchant_id": "m", "pickup": {"lat": 1, "lng": 1}, "dropoff": {"lat": 1, "lng": 1},
          "ready_at": 2**53 + 1}, "bad_message"),
    ],
)
async def test_bad_order_bodies_get_typed_errors(server: ServerProcess, body: dict, code: str) -> None:
    ops = Ops(server)
    try:
        resp = await ops.client.post("/v1/orders", json=body)
        assert resp.status_code == 400 and resp.json()["error"]["code"] == code
        raw = await ops.client.post("/v1/orders", content=b"{nope", headers={"Content-Type": "application/json"})
        assert raw.status_code == 400 and raw.json()["error"]["code"] == "bad_json"
    finally:
        await ops.close()


async def test_a_body_that_is_not_utf8_is_said_so(server: ServerProcess) -> None:
    """Before: orjson's "str is not valid UTF-8: surrogates not allowed", about no surrogate at all."""
    ops = Ops(server)
    try:
        resp = await ops.client.post("/v1/orders", content=b'{"id":"\xff"}', headers={"Content-Type": "application/json"})
        assert resp.status_code == 400, resp.text
        assert resp.json()["error"] == {
            "code": "bad_json",
            "message": "not valid JSON: the request body is not valid UTF-8 (byte 0xff at offset 7); JSON must be UTF-8 text",
        }, resp.text
    finally:
        await ops.close()


@pytest.mark.parametrize("unit, scale, hint", [("seconds", 1 / 1000, "looks like seconds"),
                                              ("microseconds", 1000, "looks like microseconds"),
                                              ("years ahead", 1 + 1e-3, ""), ("2**53", None, "")])
async def test_a_ready_at_outside_the_window_is_refused_naming_it(server: ServerProcess, uid, unit: str,
                                                                  scale: float | None, hint: str) -> None:  # type: ignore[no-untyped-def]
    """A ready time in the wrong unit, or years off, would leave the order confirmed and never offered."""
    ops = Ops(server)
    oid, mid = uid("o"), uid("m")
    try:
        now = await server_now(server.base_url)
        sent = 2**53 if scale is None else int(now * scale)
        resp = await ops.create(oid, mid, ready_at=sent)
        assert resp.status_code == 400, resp.text
        error = resp.json()["error"]
        assert error["code"] == "bad_message" and "'ready_at'" in error["message"], error
        assert "1 day before and 7 days after" in error["message"] and hint in error["message"], error
        assert (await ops.client.get(f"/v1/orders/{oid}")).status_code == 404  # nothing created
        for fine in (now - 23 * 3_600_000, now + 6 * 24 * 3_600_000):  # the window's inside is taken
            assert (await ops.create(uid(f"o{fine}"), mid, ready_at=fine)).status_code == 201
    finally:
        await ops.close()


async def test_a_dropoff_on_another_continent_is_refused_naming_the_distance(server: ServerProcess, uid) -> None:  # type: ignore[no-untyped-def]
    """Berlin to Sydney (or lat and lng swapped) is no delivery: refused, nothing created; 99 km is taken."""
    ops = Ops(server)
    oid, mid = uid("o"), uid("m")
    try:
        resp = await ops.create(oid, mid, pickup={"lat": 52.5, "lng": 13.4}, dropoff={"lat": -33.9, "lng": 151.2})
        assert resp.status_code == 400, resp.text
        error = resp.json()["error"]
        assert error["code"] == "bad_message" and error["message"].startswith("'dropoff' is 16,0"), error
        assert "at most 100 km" in error["message"], error
        swapped = await ops.create(oid, mid, pickup={"lat": 52.5, "lng": 13.4}, dropoff={"lat": 13.4, "lng": 52.5})
        assert swapped.status_code == 400 and "swapped" in swapped.json()["error"]["message"], swapped.text
        assert (await ops.client.get(f"/v1/orders/{oid}")).status_code == 404  # nothing created
        near = await ops.create(oid, mid, pickup={"lat": 52.5, "lng": 13.4}, dropoff={"lat": 52.5 + 99 / 111.2, "lng": 13.4})
        assert near.status_code == 201, near.text
    finally:
        await ops.close()


async def test_illegal_steps_are_refused_and_change_nothing(server: ServerProcess, uid) -> None:  # type: ignore[no-untyped-def]
    ops = Ops(server)
    oid, mid, rid, other_rider = uid("o"), uid("m"), uid("r"), uid("r2")
    kitchen = await merchant(server, mid)
    rival = await merchant(server, uid("rival"))
    courier, stranger = await rider(server, rid), await rider(server, other_rider)
    try:
        await ops.create(oid, mid)
        await kitchen.confirm(oid)
        await kitchen.event(oid, "confirmed")
        await kitchen.confirm(oid)  # twice
        assert (await kitchen.expect("error"))["code"] == "invalid_transition"
        await rival.confirm(oid)  # another merchant's order
        assert (await rival.expect("error"))["code"] == "forbidden"
        await rival.confirm(uid("ghost"))  # no order at all: the same answer
        assert (await rival.expect("error"))["code"] == "forbidden"
        await courier.progress(oid, "picked_up")  # not assigned yet
        refused = await courier.expect("error")
        assert (refused["code"], refused["ref"]) == ("forbidden", f"picked_up {oid}")  # the client can tell which
        await ops.assign(oid, rid)
        await courier.progress(oid, "picked_up")  # skipping at_pickup
        assert (await courier.expect("error"))["code"] == "invalid_transition"
        await stranger.progress(oid, "at_pickup")  # someone else's order
        assert (await stranger.expect("error"))["code"] == "forbidden"
        second = await ops.assign(oid, other_rider)  # already assigned
        assert second.status_code == 409
        for step in ("at_pickup", "picked_up"):
            await courier.progress(oid, step)
            await kitchen.event(oid, step)
        late = await ops.cancel(oid)  # cancel after pickup
        assert late.status_code == 409 and late.json()["error"]["code"] == "invalid_transition"
        for step in ("at_dropoff", "delivered"):
            await courier.progress(oid, step)
            await kitchen.event(oid, step)
        await courier.progress(oid, "delivered")  # double delivery
        assert (await courier.expect("error"))["code"] == "invalid_transition"
        order = await ops.get(oid)
        assert order["status"] == "delivered" and order["rider_id"] == rid
        assert [e["kind"] for e in order["events"]] == [
            "placed", "confirmed", "assigned", "at_pickup", "picked_up", "at_dropoff", "delivered"
        ]
    finally:
        for sock in (kitchen, rival, courier, stranger):
            await sock.close()
        await ops.close()


async def test_a_delay_pushes_back_the_kitchens_own_estimate(server: ServerProcess, uid) -> None:  # type: ignore[no-untyped-def]
    """An order with a 10-minute preparation estimate and no ready time: "delay 5 min" makes the
    food ready about 15 minutes after confirmation, not 5 minutes from now."""
    ops = Ops(server)
    oid, mid = uid("o"), uid("m")
    kitchen = await merchant(server, mid)
    try:
        await ops.create(oid, mid, prep_minutes=10)
        await kitchen.confirm(oid)
        await kitchen.event(oid, "confirmed")
        await kitchen.delay(oid, 5)
        delayed = await kitchen.event(oid, "food_delayed")
        order = await ops.get(oid)
        assert order["ready_at"] == delayed["ready_at"] == order["confirmed_at"] + 15 * 60_000, order
    finally:
        await kitchen.close()
        await ops.close()


async def test_a_delay_before_confirming_adds_to_the_preparation_counted_from_the_confirm(server: ServerProcess, uid) -> None:  # type: ignore[no-untyped-def]
    """A kitchen presses "delay 5 min" on an order it has not confirmed (30 minutes' preparation)
    and confirms it a while later: the food is due 35 minutes after the confirm, never earlier
    (a ready time fixed at the delay made a late confirm not count), and the order says so."""
    ops = Ops(server)
    oid, mid = uid("o"), uid("m")
    kitchen = await merchant(server, mid)
    try:
        await ops.create(oid, mid, prep_minutes=30)
        await kitchen.event(oid, "placed")
        await kitchen.delay(oid, 5)
        delayed = await kitchen.event(oid, "food_delayed")
        assert (delayed["minutes"], delayed["ready_at"], delayed["prep_minutes"]) == (5, None, 35), delayed
        waiting = await ops.get(oid)
        assert (waiting["prep_minutes"], waiting["ready_at"], waiting["expected_ready_at"]) == (35, None, None), waiting
        await asyncio.sleep(0.5)  # the kitchen confirms later than it delayed
        await kitchen.confirm(oid)
        await kitchen.event(oid, "confirmed")
        order = await ops.get(oid)
        assert order["expected_ready_at"] == order["confirmed_at"] + 35 * 60_000, order
    finally:
        await kitchen.close()
        await ops.close()


async def test_two_tablets_delaying_at_once_both_count(server: ServerProcess, uid) -> None:  # type: ignore[no-untyped-def]
    """Two tablets of one kitchen send "delay 7" and "delay 5" at the same moment: the food is
    ready 12 minutes later than the estimate, as one after the other (one delay was lost, and
    the ready time could even move earlier)."""
    ops = Ops(server)
    mid = uid("m")
    first, second = await merchant(server, mid), await merchant(server, mid)
    try:
        for i in range(5):  # (each try, the two delays reach the server within a millisecond or so)
            oid = uid(f"o{i}")
            await ops.create(oid, mid, prep_minutes=10)
            await first.confirm(oid)
            await first.event(oid, "confirmed")
            await asyncio.sleep(0.3)  # (the kitchen's board settles, as a person's would)
            await first.delay(oid, 7)
            await second.delay(oid, 5)
            await first.event(oid, "food_delayed")
            await first.expect(lambda f, oid=oid: f.get("kind") == "food_delayed" and f.get("order_id") == oid)
            order = await ops.get(oid)
            delays = [e["ready_at"] for e in order["events"] if e["kind"] == "food_delayed"]
            assert len(delays) == 2 and delays[0] < delays[1], order["events"]
            assert order["ready_at"] == delays[1] == order["confirmed_at"] + 22 * 60_000, order
    finally:
        await first.close()
        await second.close()
        await ops.close()


async def test_food_ready_happens_once_and_ends_delays(server: ServerProcess, uid) -> None:  # type: ignore[no-untyped-def]
    ops = Ops(server)
    oid, mid = uid("o"), uid("m")
    kitchen = await merchant(server, mid)
    try:
        await ops.create(oid, mid)
        await kitchen.confirm(oid)
        await kitchen.event(oid, "confirmed")
        await kitchen.delay(oid, 5)  # before ready: fine
        await kitchen.event(oid, "food_delayed")
        await kitchen.ready(oid)
        await kitchen.event(oid, "food_ready")
        before = await ops.get(oid)
        await kitchen.send({"type": "ready", "order_id": oid, "id": "again"})  # twice
        again = await kitchen.expect("error")
        assert (again["code"], again["ref"]) == ("invalid_transition", "again") and "already ready" in again["message"]
        await kitchen.send({"type": "delay", "order_id": oid, "minutes": 10, "id": "late"})  # a delay after ready
        late = await kitchen.expect("error")
        assert (late["code"], late["ref"]) == ("invalid_transition", "late") and "already ready" in late["message"]
        after = await ops.get(oid)
        assert after == before  # nothing recorded, food_ready_at and ready_at unchanged
        assert [e["kind"] for e in after["events"]] == ["placed", "confirmed", "food_delayed", "food_ready"]
    finally:
        await kitchen.close()
        await ops.close()


async def test_cancel_before_pickup_and_unknown_orders(server: ServerProcess, uid) -> None:  # type: ignore[no-untyped-def]
    ops = Ops(server)
    oid, mid = uid("o"), uid("m")
    try:
        await ops.create(oid, mid)
        done = await ops.cancel(oid)
        assert done.status_code == 200 and done.json()["status"] == "cancelled"
        assert (await ops.cancel(oid)).json()["error"]["code"] == "invalid_transition"
        missing = await ops.client.get(f"/v1/orders/{uid('nope')}")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    finally:
        await ops.close()


async def test_cancel_reason_must_be_a_short_string(server: ServerProcess, uid) -> None:  # type: ignore[no-untyped-def]
    ops = Ops(server)
    oid, mid = uid("o"), uid("m")
    try:
        await ops.create(oid, mid)
        for reason in (5, ["x"], "x" * 201):
            resp = await ops.client.post(f"/v1/orders/{oid}/cancel", json={"reason": reason})
            assert resp.status_code == 400 and resp.json()["error"]["code"] == "bad_message", (reason, resp.text)
        assert (await ops.get(oid))["status"] == "placed"  # refused: nothing happened
        done = await ops.client.post(f"/v1/orders/{oid}/cancel", json={"reason": "x" * 200})
        assert done.status_code == 200 and done.json()["status"] == "cancelled"
        assert (await ops.get(oid))["events"][-1]["reason"] == "x" * 200
    finally:
        await ops.close()


async def test_operator_takes_an_order_back_from_its_rider_before_pickup(server: ServerProcess, uid) -> None:  # type: ignore[no-untyped-def]
    ops = Ops(server)
    oid, mid, rid = uid("o"), uid("m"), uid("r")
    kitchen = await merchant(server, mid)
    try:
        await ops.create(oid, mid)
        await kitchen.confirm(oid)
        await kitchen.event(oid, "confirmed")
        unassign = f"/v1/orders/{oid}/unassign"
        early = await ops.client.post(unassign, json={})
        assert early.status_code == 409 and early.json()["error"]["code"] == "invalid_transition"
        assert (await ops.assign(oid, rid)).status_code == 200
        as_merchant = await ops.client.post(unassign, json={}, headers={"Authorization": "Bearer " + server.token("merchant", mid)})
        assert as_merchant.status_code == 403 and as_merchant.json()["error"]["code"] == "forbidden"
        bad = await ops.client.post(unassign, json={"reason": 7})
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "bad_message"
        assert (await ops.get(oid))["rider_id"] == rid  # refused: nothing happened
        done = await ops.client.post(unassign, json={"reason": "rider's bike broke"})
        assert done.status_code == 200, done.text
        assert (done.json()["status"], done.json()["rider_id"]) == ("confirmed", None)
        event = (await kitchen.event(oid, "rider_unassigned"))
        assert (event["rider_id"], event["by"], event["reason"]) == (rid, "operator", "rider's bike broke")
        assert (await ops.client.post(unassign, json={})).json()["error"]["code"] == "invalid_transition"
        assert (await ops.assign(oid, uid("r2"))).status_code == 200  # open again: it can be assigned anew
    finally:
        await kitchen.close()
        await ops.close()


async def test_eta_is_null_once_the_order_is_delivered(server: ServerProcess, uid) -> None:  # type: ignore[no-untyped-def]
    ops = Ops(server)
    oid, mid, rid = uid("o"), uid("m"), uid("r")
    kitchen, courier = await merchant(server, mid), await rider(server, rid)
    try:
        await ops.create(oid, mid)
        await kitchen.confirm(oid)
        await kitchen.event(oid, "confirmed")
        assert (await ops.assign(oid, rid)).status_code == 200
        for _ in range(40):  # the rider's fixes give the order a drop-off ETA
            await courier.location(52.5190, 13.4040)
            if (await ops.get(oid))["eta"] is not None:
                break
            await asyncio.sleep(0.3)
        assert (await ops.get(oid))["eta"] is not None
        await deliver(courier, kitchen, oid)
        await courier.location(52.5190, 13.4040)
        await asyncio.sleep(1.2)  # a fix right after delivery must not bring the ETA back either
        delivered = await ops.get(oid)
        assert delivered["status"] == "delivered" and delivered["eta"] is None, delivered
    finally:
        await kitchen.close()
        await courier.close()
        await ops.close()


async def test_orders_that_ended_leave_redis_after_the_retention(start_server, redis_url: str, uid) -> None:  # type: ignore[no-untyped-def]
    """Delivered and cancelled orders are kept for TRACKER_ORDER_RETENTION_S, then nothing of
    them is left in Redis (a server that runs for months does not grow with every order); an
    order still under way is kept however long it takes."""
    srv = start_server({"TRACKER_ORDER_RETENTION_S": "3"})
    ops = Ops(srv)
    mid, rid = uid("m"), uid("r")
    done, cancelled, open_ = uid("o-done"), uid("o-cancelled"), uid("o-open")
    kitchen, courier = await platform_kitchen(srv, mid), await rider(srv, rid)
    client = connect(redis_url)
    try:
        for oid in (done, cancelled, open_):
            assert (await ops.create(oid, mid)).status_code == 201
        await kitchen.confirm(done)
        await kitchen.event(done, "confirmed")
        assert (await ops.assign(done, rid)).status_code == 200
        await deliver(courier, kitchen, done)
        assert (await ops.cancel(cancelled)).status_code == 200
        assert (await ops.get(done))["status"] == "delivered"  # kept for now
        assert (await ops.get(cancelled))["status"] == "cancelled"
        await asyncio.sleep(4)
        for oid in (done, cancelled):
            assert (await ops.client.get(f"/v1/orders/{oid}")).status_code == 404
            assert [k async for k in client.scan_iter(match=f"*{oid}*")] == [], oid  # record, history, id
        assert (await ops.get(open_))["status"] == "placed"
        again = await ops.create(cancelled, mid, dropoff={"lat": 52.51, "lng": 13.41})
        assert again.status_code == 201, again.text  # the id is free again
    finally:
        await kitchen.close()
        await courier.close()
        await ops.close()
        await client.aclose()


async def test_a_channel_left_open_on_an_order_that_expired_closes_when_its_id_is_used_again(
        start_server, uid) -> None:  # type: ignore[no-untyped-def]
    """The channel of an order that ended and expired, its id then used for a new order (of
    another kitchen here), does not read the new order's events as its own (it had kept
    reading the old order's history, and sent only resyncs): it is closed, saying why."""
    srv = start_server({"TRACKER_ORDER_RETENTION_S": "2"})
    ops = Ops(srv)
    oid, mid, other = uid("o"), uid("m"), uid("m2")
    try:
        assert (await ops.create(oid, mid)).status_code == 201
        watcher = await JsonSocket.open(f"{srv.ws_url}/v1/ws/customer?order_id={oid}", srv.token("operator", "ops"))
        assert (await watcher.expect(lambda f: f.get("kind") == "placed"))["order_id"] == oid
        assert (await ops.cancel(oid)).status_code == 200
        await watcher.expect(lambda f: f.get("kind") == "cancelled")
        await asyncio.sleep(3)
        assert (await ops.client.get(f"/v1/orders/{oid}")).status_code == 404
        assert (await ops.create(oid, other)).status_code == 201  # another order, under the same id
        await confirmed_order(srv, ops, uid("o-next"), other)  # (its kitchen at work meanwhile)
        kitchen = await platform_kitchen(srv, other)
        await kitchen.confirm(oid)
        await kitchen.event(oid, "confirmed")
        await kitchen.close()
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                frame = await watcher.recv(timeout=10)
                assert frame.get("type") != "event", frame  # (nothing of the new order as the old one's)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008, closed.value
        assert "no longer kept" in closed.value.rcvd.reason and "used again" in closed.value.rcvd.reason, closed.value
    finally:
        await ops.close()


@pytest.mark.parametrize("query, reason", [
    ("", "bad_request: order_id query parameter missing (?order_id=ID: the order to follow)"),
    ("?order_id=", "bad_request: order_id query parameter missing (?order_id=ID: the order to follow)"),
    ("?order_id=no%20spaces", "bad_request: order_id query parameter malformed: an id is 1-64 characters from "
                              "[A-Za-z0-9_.:-], not only dots"),
], ids=["missing", "empty", "malformed"])
async def test_a_customer_socket_without_a_usable_order_id_is_told_which(server: ServerProcess, query: str,
                                                                        reason: str) -> None:
    """Before: "missing or malformed" for both; the code prefix stays bad_request."""
    sock = await JsonSocket.open(f"{server.ws_url}/v1/ws/customer{query}", server.token("operator", "ops"))
    with pytest.raises(ConnectionClosed):
        await sock.recv(5)
    assert (sock.ws.close_code, sock.ws.close_reason) == (1008, reason)


async def test_scope_violations(server: ServerProcess, uid) -> None:  # type: ignore[no-untyped-def]
    ops = Ops(server)
    oid, other, mid = uid("o"), uid("other"), uid("m")
    try:
        await ops.create(oid, mid)
        await ops.create(other, mid)
        # a customer socket for someone else's order, an unknown order, a rider token
        for url, token in [
            (f"/v1/ws/customer?order_id={other}", server.token("customer", oid)),
            (f"/v1/ws/customer?order_id={uid('ghost')}", server.token("customer", uid("ghost"))),
            (f"/v1/ws/customer?order_id={oid}", server.token("rider", "r1")),
            ("/v1/ws/merchant", server.token("customer", oid)),
        ]:
            sock = await JsonSocket.open(server.ws_url + url, token)
            with pytest.raises(ConnectionClosed):
                await sock.recv(5)
            assert sock.ws.close_code == 1008
        async with httpx.AsyncClient(base_url=server.base_url) as client:
            for token, status in [
                (server.token("customer", other), 403),
                (server.token("merchant", uid("someone-else")), 403),
                (server.token("rider", "r1"), 403),
            ]:
                resp = await client.get(f"/v1/orders/{oid}", headers={"Authorization": "Bearer " + token})
                assert resp.status_code == status and resp.json()["error"]["code"] == "forbidden"
            create = await client.post("/v1/orders", json={}, headers={"Authorization": "Bearer " + server.token("merchant", mid)})
            assert create.status_code == 403
            # to a merchant, an id that does not exist looks like another merchant's: ids cannot be probed
            as_merchant = {"Authorization": "Bearer " + server.token("merchant", mid)}
            ghost = f"/v1/orders/{uid('ghost')}"
            for resp in (await client.get(ghost, headers=as_merchant),
                         await client.post(ghost + "/cancel", json={}, headers=as_merchant)):
                assert resp.status_code == 403 and resp.json()["error"]["code"] == "forbidden", resp.text
            operator = {"Authorization": "Bearer " + server.token("operator", "ops")}
            assert (await client.get(ghost, headers=operator)).status_code == 404
    finally:
        await ops.close()


async def test_orders_survive_a_redis_restart(tmp_path, uid) -> None:  # type: ignore[no-untyped-def]
    oid, mid = uid("durable"), uid("m")
    first = ServerProcess(data_dir=tmp_path / "data", secret="s" * 32)
    first.start()
    ops = Ops(first)
    try:
        await confirmed_order(first, ops, oid, mid)
        before = await ops.get(oid)
    finally:
        await ops.close()
        first.stop()  # stops its embedded Redis too
    second = ServerProcess(data_dir=tmp_path / "data", secret="s" * 32)
    second.start()
    ops = Ops(second)
    try:
        after = await ops.get(oid)
        assert after == before and after["status"] == "confirmed"
    finally:
        await ops.close()
        second.cleanup()


def _stalled_socket(server: ServerProcess, path: str, token: str) -> socket.socket:
    """A WebSocket that completes the handshake and then never reads (tiny buffer)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.port))
    sock.sendall(
        (f"GET {path} HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\n"
         "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
         f"Authorization: Bearer {token}\r\n\r\n").encode()
    )
    return sock


def _stalled_customer_socket(server: ServerProcess, order_id: str) -> socket.socket:
    return _stalled_socket(server, f"/v1/ws/customer?order_id={order_id}", server.token("customer", order_id))


def _read_until_closed(sock: socket.socket) -> bytes:
    sock.settimeout(5)
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            return data
        if not chunk:
            return data
        data += chunk


async def test_slow_subscriber_is_cut_off_while_others_keep_up(server: ServerProcess, uid) -> None:  # type: ignore[no-untyped-def]
    ops = Ops(server)
    oid, mid = uid("o"), uid("m")
    # The platform's operator acts for the kitchen here: a merchant's own socket is rate-limited.
    kitchen = await platform_kitchen(server, mid)
    try:
        await ops.create(oid, mid)
        stalled = _stalled_customer_socket(server, oid)
        fast = await customer(server, oid)
        await fast.next_event()  # placed
        n = 4000  # far more than the socket buffers plus the subscriber queue hold

        async def produce() -> None:
            for _ in range(n):
                await kitchen.delay(oid, 1)

        async def consume() -> int:
            got = 0
            while got < n:
                frame = await fast.next_event(20)
                assert frame["type"] == "event" and frame["kind"] == "food_delayed", frame
                got += 1
            return got

        async def drain_kitchen() -> None:  # the kitchen reads its feed as a tablet would
            while True:
                await kitchen.ws.recv()

        drain = asyncio.ensure_future(drain_kitchen())
        _, got = await asyncio.gather(produce(), consume())
        drain.cancel()
        assert got == n  # the healthy subscriber kept up with everything
        data = await asyncio.to_thread(_read_until_closed, stalled)
        stalled.close()
        assert len(data) < 1_000_000  # what the stalled one got is bounded, not the whole stream
        assert b"\x03\xf0too_slow" in data  # close frame: code 1008, reason too_slow
        await fast.close()
        # Both sockets gone, the server no longer listens to the order's channel: a cut-off
        # subscriber left behind would hold its full queue (and the channel's traffic) for good.
        db = redis.asyncio.Redis.from_url(server.effective_redis_url)
        try:
            for _ in range(100):
                listening = (await db.pubsub_numsub(f"order:{oid}:live"))[0][1]
                if not listening:
                    break
                await asyncio.sleep(0.05)
            assert listening == 0, "the server still subscribes the channel of a socket cut off as too slow"
        finally:
            await db.aclose()
    finally:
        await kitchen.close()
        await ops.close()


async def test_a_rider_socket_that_stops_reading_is_cut_off_when_its_inbox_overflows(server: ServerProcess, uid) -> None:  # type: ignore[no-untyped-def]
    """Frames for a rider whose app stopped reading pile up (here: an operator pausing it again
    and again): once its inbox overflows the server lets go of the socket at once (it no longer
    counts among the open ones), not at the keepalive timeout 20-40 s later, and the app, reading
    again, finds a close that asks it to reconnect."""
    rid = uid("r")

    async def open_sockets() -> int:
        return int((await ops.client.get("/readyz")).json()["websockets"]["open"])

    ops = Ops(server)
    try:
        before = await open_sockets()
        stalled = _stalled_socket(server, "/v1/ws/rider", server.token("rider", rid))
        for _ in range(100):
            if await open_sockets() == before + 1:
                break
            await asyncio.sleep(0.05)
        for i in range(3000):  # each pause is a frame to the rider: its buffers and inbox hold 600-900 of them
            assert (await ops.client.post(f"/v1/riders/{rid}/pause", json={"reason": f"check {i} " + "x" * 180})).status_code == 200
            if i % 100 == 99 and await open_sockets() == before:
                break
        for _ in range(100):
            if await open_sockets() == before:
                break
            await asyncio.sleep(0.05)
        assert await open_sockets() == before, "a rider socket that stopped reading is still held"
        data = await asyncio.to_thread(_read_until_closed, stalled)
        stalled.close()
        assert b"\x03\xf0too_slow: the rider's inbox fell too far behind; reconnect" in data  # 1008, too_slow
    finally:
        await ops.close()


async def test_a_merchant_token_opens_only_its_own_feed(server: ServerProcess, uid) -> None:  # type: ignore[no-untyped-def]
    mid, other = uid("m"), uid("rival")
    token = server.token("merchant", mid)
    prying = await JsonSocket.open(f"{server.ws_url}/v1/ws/merchant?merchant_id={other}", token)
    with pytest.raises(ConnectionClosed) as closed:
        await prying.recv(timeout=5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    assert closed.value.rcvd.reason.startswith("forbidden"), closed.value.rcvd.reason
    ops = Ops(server)
    own = await JsonSocket.open(f"{server.ws_url}/v1/ws/merchant?merchant_id={mid}", token)  # its own: served
    try:
        oid = uid("o")
        await ops.create(oid, mid)
        assert (await own.recv(timeout=5))["kind"] == "placed"
    finally:
        await own.close()
        await ops.close()
