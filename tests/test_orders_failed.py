"""An order whose rider vanished after pickup: the operator ends it as ``failed``, and everyone sees it end."""
from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.orders_helpers import Ops, customer, events_until, merchant, platform_kitchen, rider
from tracker.launcher import ServerProcess
from tracker.redis_client import connect

REASON = "rider unreachable since pickup"


async def _fail(ops: Ops, order_id: str, body: Any = None, token: str | None = None) -> Any:
    headers = {"Authorization": "Bearer " + token} if token else {}
    return await ops.client.post(f"/v1/orders/{order_id}/fail", json={"reason": REASON} if body is None else body,
                                 headers=headers)


async def _on_the_road(server: ServerProcess, ops: Ops, oid: str, mid: str, rid: str, *, steps: tuple[str, ...] = (
        "at_pickup", "picked_up")) -> None:
    """Create, confirm and assign ``oid`` to ``rid``, then report ``steps`` as the rider (seen done)."""
    kitchen = await platform_kitchen(server, mid)
    courier = await rider(server, rid)
    try:
        assert (await ops.create(oid, mid)).status_code == 201
        await kitchen.confirm(oid)
        await kitchen.event(oid, "confirmed")
        assert (await ops.assign(oid, rid)).status_code == 200
        for step in steps:
            await courier.progress(oid, step)
            await kitchen.event(oid, step)
    finally:
        await courier.close()
        await kitchen.close()


async def _service(ops: Ops) -> dict[str, Any]:
    return (await ops.client.get("/v1/ops/snapshot")).json()["service"]


async def test_the_operator_ends_an_order_on_the_road_as_failed_and_everyone_hears(server: ServerProcess, uid) -> None:  # type: ignore[no-untyped-def]
    ops = Ops(server)
    oid, mid, rid = uid("o"), uid("m"), uid("r")
    before = await _service(ops)
    await _on_the_road(server, ops, oid, mid, rid)
    kitchen, watcher, courier = await merchant(server, mid), await customer(server, oid), await rider(server, rid, keep_route=True)
    try:
        route = await courier.expect("route")
        assert [o["order_id"] for o in route["orders"]] == [oid]
        done = await _fail(ops, oid)
        assert done.status_code == 200, done.text
        order = done.json()
        assert (order["status"], order["rider_id"], order["eta"]) == ("failed", rid, None)
        assert isinstance(order["failed_at"], int) and order["events"][-1]["kind"] == "failed"
        # the rider, if connected, is told at once; the order is no longer its to report on
        told = await courier.expect("order_failed")
        assert (told["order_id"], told["by"], told["reason"]) == (oid, "operator", REASON)
        await courier.send({"type": "progress", "order_id": oid, "step": "at_dropoff", "id": 1})
        refused = await courier.expect("error")
        assert (refused["code"], refused["ref"]) == ("invalid_transition", 1)
        # the customer's channel and the merchant feed get the durable event like any other
        seen = (await events_until(watcher, "failed"))[-1]
        fed = await kitchen.event(oid, "failed")
        history = (await ops.get(oid))["events"]
        assert [e["kind"] for e in history][-3:] == ["at_pickup", "picked_up", "failed"]
        last = history[-1]
        assert (last["by"], last["reason"], last["rider_id"]) == ("operator", REASON, rid)
        assert seen["id"] == last["id"] and fed["order_event_id"] == last["id"] and fed["reason"] == REASON
        # repeated, it answers as a repeated cancel does
        again = await _fail(ops, oid)
        assert again.status_code == 409 and again.json()["error"]["code"] == "invalid_transition"
        assert "'failed'" in again.json()["error"]["message"]
        assert len((await ops.get(oid))["events"]) == len(history)
        # a reconnecting rider no longer carries it
        back = await rider(server, rid, keep_route=True)
        assert (await back.expect("route"))["orders"] == []
        await back.close()
        # counted as failed, not as on the road and not as a delivery
        after = await _service(ops)
        assert after["by_status"]["failed"] == before["by_status"].get("failed", 0) + 1
        assert after["by_status"]["picked_up"] == before["by_status"]["picked_up"]
        assert after["delivered"] == before["delivered"]
        assert after["on_time_share"] == before["on_time_share"]
        metrics = (await ops.client.get("/metrics")).text
        assert 'tracker_orders_by_status{status="failed"}' in metrics
    finally:
        await kitchen.close()
        await watcher.close()
        await courier.close()
        await ops.close()


async def test_a_rider_silent_with_a_failed_order_no_longer_counts_as_carrying_it(own_redis, start_server, uid) -> None:  # type: ignore[no-untyped-def]
    srv = start_server({"TRACKER_STALE_AFTER_S": "1"}, redis=own_redis)
    ops = Ops(srv)
    oid, mid, rid = uid("o"), uid("m"), uid("r")
    try:
        courier = await rider(srv, rid)
        await courier.location(52.5190, 13.4040)
        await asyncio.sleep(0.5)
        await courier.close()
        await _on_the_road(srv, ops, oid, mid, rid, steps=("at_pickup", "picked_up", "at_dropoff"))
        await asyncio.sleep(1.5)  # the phone is dead: its last fix is old
        riders = (await ops.client.get("/v1/ops/snapshot")).json()["riders"]
        assert [(r["id"], r["stale"], r["orders"]) for r in riders] == [(rid, True, 1)]  # silent with food
        assert (await _fail(ops, oid)).status_code == 200
        riders = (await ops.client.get("/v1/ops/snapshot")).json()["riders"]
        assert riders == []  # nothing left to watch for
    finally:
        await ops.close()


@pytest.mark.parametrize("steps", [(), ("at_pickup",)])
async def test_before_pickup_the_operator_cancels_instead(server: ServerProcess, uid, steps: tuple[str, ...]) -> None:  # type: ignore[no-untyped-def]
    ops = Ops(server)
    oid, mid, rid = uid("o"), uid("m"), uid("r")
    try:
        await _on_the_road(server, ops, oid, mid, rid, steps=steps)
        refused = await _fail(ops, oid)
        assert refused.status_code == 409 and refused.json()["error"]["code"] == "invalid_transition", refused.text
        assert (await ops.get(oid))["status"] == (steps[-1] if steps else "assigned")
        placed = uid("p")
        assert (await ops.create(placed, mid)).status_code == 201
        assert (await _fail(ops, placed)).json()["error"]["code"] == "invalid_transition"
        assert (await ops.cancel(placed)).status_code == 200
        assert (await _fail(ops, placed)).json()["error"]["code"] == "invalid_transition"  # cancelled: ended
    finally:
        await ops.close()


async def test_a_delivered_order_cannot_fail(server: ServerProcess, uid) -> None:  # type: ignore[no-untyped-def]
    ops = Ops(server)
    oid, mid, rid = uid("o"), uid("m"), uid("r")
    try:
        await _on_the_road(server, ops, oid, mid, rid, steps=("at_pickup", "picked_up", "at_dropoff", "delivered"))
        refused = await _fail(ops, oid)
        assert refused.status_code == 409 and refused.json()["error"]["code"] == "invalid_transition"
        assert (await ops.get(oid))["status"] == "delivered"
    finally:
        await ops.close()


async def test_fail_is_for_the_operator_with_a_short_reason(server: ServerProcess, uid) -> None:  # type: ignore[no-untyped-def]
    ops = Ops(server)
    oid, mid, rid = uid("o"), uid("m"), uid("r")
    try:
        await _on_the_road(server, ops, oid, mid, rid)
        for role, sub in (("merchant", mid), ("customer", oid), ("rider", rid)):
            resp = await _fail(ops, oid, token=server.token(role, sub))
            assert resp.status_code == 403 and resp.json()["error"]["code"] == "forbidden", (role, resp.text)
        for body in ({}, {"reason": ""}, {"reason": "   "}, {"reason": " \u200b\ufeff "}, {"reason": 5}, {"reason": ["x"]},
                     {"reason": "x" * 201}, {"reason": "\u0000"}, {"reason": "lost\nphone"},
                     {"reason": "\u00ad\u034f"}, {"reason": "\u0301\u0301"}):  # (marks on nothing read as blank)
            resp = await _fail(ops, oid, body=body)
            assert resp.status_code == 400 and resp.json()["error"]["code"] == "bad_message", (body, resp.text)
        assert (await ops.get(oid))["status"] == "picked_up"  # refused: nothing happened
        missing = await _fail(ops, uid("nope"))
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
        missing_and_blank = await _fail(ops, uid("nope"), body={"reason": " "})  # the body first, as for cancel
        assert missing_and_blank.status_code == 400 and missing_and_blank.json()["error"]["code"] == "bad_message"
        cancel = await ops.client.post(f"/v1/orders/{oid}/cancel", json={"reason": "x\u0007"})  # an optional reason too
        assert cancel.status_code == 400 and "control characters" in cancel.json()["error"]["message"], cancel.text
        done = await _fail(ops, oid, body={"reason": "x" * 200})
        assert done.status_code == 200 and (await ops.get(oid))["events"][-1]["reason"] == "x" * 200
    finally:
        await ops.close()


async def test_failed_orders_leave_redis_after_the_retention(start_server, redis_url: str, uid) -> None:  # type: ignore[no-untyped-def]
    srv = start_server({"TRACKER_ORDER_RETENTION_S": "3"})
    ops = Ops(srv)
    oid, mid, rid = uid("o"), uid("m"), uid("r")
    client = connect(redis_url)
    try:
        await _on_the_road(srv, ops, oid, mid, rid)
        assert (await _fail(ops, oid)).status_code == 200
        assert (await ops.get(oid))["status"] == "failed"  # kept for now
        await asyncio.sleep(4)
        assert (await ops.client.get(f"/v1/orders/{oid}")).status_code == 404
        assert [k async for k in client.scan_iter(match=f"*{oid}*")] == []  # record, history, id
        assert (await ops.create(oid, mid)).status_code == 201  # the id is free again
    finally:
        await ops.close()
        await client.aclose()
