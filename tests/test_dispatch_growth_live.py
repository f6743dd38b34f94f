"""Add-on offers and announced shifts through the live server: real sockets, real Redis."""
from __future__ import annotations

import asyncio

import httpx
import pytest

from clients.rider import RiderClient
from tests.orders_helpers import Ops, confirmed_order, round_since
from tests.test_dispatch_live import FAST, rider_near_restaurant
from tracker.launcher import ServerProcess


async def server_now(base_url: str) -> int:
    async with httpx.AsyncClient(timeout=10) as http:
        return int((await http.get(base_url + "/healthz")).json()["ts"])


async def on_its_way(srv: ServerProcess, ops: Ops, courier: RiderClient, first: str, mid: str) -> int:
    """The courier (about 2.2 km off) takes ``first`` and heads there; returns its pickup ETA."""
    await confirmed_order(srv, ops, first, mid)
    await courier.accept((await courier.expect("offer", timeout=10))["offer_id"])
    await courier.expect("assigned")
    await courier.location(52.5200 + 0.0199, 13.4050)  # on its way: the server now has its pickup ETA
    for _ in range(50):
        if (await ops.get(first))["pickup_eta"]:
            break
        await asyncio.sleep(0.1)
    return int((await ops.get(first))["pickup_eta"])


async def add_on_offered(srv: ServerProcess, ops: Ops, courier: RiderClient, first: str, second: str,
                         mid: str) -> dict:
    """The courier heads for ``first``; ``second`` of the same kitchen is offered to it as an add-on."""
    await on_its_way(srv, ops, courier, first, mid)
    await confirmed_order(srv, ops, second, mid)
    add_on = await courier.expect("offer", timeout=10)
    assert add_on["joins"] == [first], add_on
    return add_on


async def test_a_rider_on_the_way_is_offered_another_order_of_that_restaurant(own_redis, start_server, uid) -> None:  # type: ignore[no-untyped-def]
    srv = start_server(FAST, redis=own_redis)
    ops = Ops(srv)
    mid, first, second, rid = uid("m"), uid("o1"), uid("o2"), uid("r")
    courier = await rider_near_restaurant(srv, rid, 0.02)  # about 2.2 km, 7 minutes away
    try:
        pickup_eta = await on_its_way(srv, ops, courier, first, mid)
        assert pickup_eta > await server_now(srv.base_url) + 5 * 60_000
        await confirmed_order(srv, ops, second, mid)
        add_on = await courier.expect("offer", timeout=10)
        assert [o["order_id"] for o in add_on["orders"]] == [second]
        assert add_on["joins"] == [first] and sorted(add_on["sequence"]) == sorted([first, second])
        await courier.accept(add_on["offer_id"])
        assigned = await courier.expect("assigned")
        assert assigned["joins"] == [first] and assigned["sequence"] == add_on["sequence"]
        order = await ops.get(second)
        assert order["status"] == "assigned" and order["rider_id"] == rid
        await asyncio.sleep(1.1)  # the ETA publisher runs at most once a second per rider
        await courier.location(52.5200 + 0.0198, 13.4050)
        for _ in range(50):
            etas = {(await ops.get(oid))["pickup_eta"] for oid in (first, second)}
            if len(etas) == 1 and None not in etas:
                break
            await asyncio.sleep(0.1)
        assert len(etas) == 1 and None not in etas  # collected together
    finally:
        await courier.close()
        await ops.close()


async def test_an_add_on_accepted_after_the_pickup_is_refused_and_the_order_offered_again(own_redis, start_server, uid) -> None:  # type: ignore[no-untyped-def]
    srv = start_server(FAST, redis=own_redis)
    ops = Ops(srv)
    mid, first, second, rid = uid("m"), uid("o1"), uid("o2"), uid("r")
    courier = await rider_near_restaurant(srv, rid, 0.02)
    try:
        add_on = await add_on_offered(srv, ops, courier, first, second, mid)
        await courier.progress(first, "at_pickup")
        await courier.progress(first, "picked_up")
        await courier.accept(add_on["offer_id"])
        refused = await courier.expect("error")
        assert refused["code"] == "conflict" and "picked up" in refused["message"]
        order = await ops.get(second)
        assert order["status"] == "confirmed" and order["rider_id"] is None
        helper = await rider_near_restaurant(srv, uid("r2"), 0.001)  # the order is back in the pool
        try:
            again = await helper.expect("offer", timeout=10)
            assert [o["order_id"] for o in again["orders"]] == [second] and "joins" not in again
        finally:
            await helper.close()
    finally:
        await courier.close()
        await ops.close()


async def test_an_add_on_to_an_order_given_back_is_withdrawn_at_once(own_redis, start_server, uid) -> None:  # type: ignore[no-untyped-def]
    srv = start_server(FAST, redis=own_redis)
    ops = Ops(srv)
    mid, first, second, rid = uid("m"), uid("o1"), uid("o2"), uid("r")
    courier = await rider_near_restaurant(srv, rid, 0.02)
    try:
        add_on = await add_on_offered(srv, ops, courier, first, second, mid)
        await courier.release(first, reason="bike broke")
        await courier.expect("unassigned")
        withdrawn = await courier.expect("offer_withdrawn", timeout=5)
        assert withdrawn == {"type": "offer_withdrawn", "offer_id": add_on["offer_id"]}
        await courier.accept(add_on["offer_id"])
        late = await courier.expect("error")
        assert late["code"] == "conflict" and "withdrawn" in late["message"], late
        assert (await ops.get(second))["status"] == "confirmed"
    finally:
        await courier.close()
        await ops.close()


async def test_a_rider_on_the_way_who_declined_an_add_on_is_offered_the_kitchens_next(own_redis, start_server, uid) -> None:  # type: ignore[no-untyped-def]
    # The declined order and the kitchen's next one make one bundle: its add-on was forbidden
    # whole for the rider cooling down from the first, and the next order waited beside it.
    srv = start_server(FAST, redis=own_redis)
    ops = Ops(srv)
    mid, first, second, third, rid = uid("m"), uid("o1"), uid("o2"), uid("o3"), uid("r")
    courier = await rider_near_restaurant(srv, rid, 0.02)
    try:
        declined = await add_on_offered(srv, ops, courier, first, second, mid)
        await courier.decline(declined["offer_id"])
        await confirmed_order(srv, ops, third, mid)
        add_on = await courier.expect("offer", timeout=10)
        assert [o["order_id"] for o in add_on["orders"]] == [third] and add_on["joins"] == [first], add_on
        assert sorted(add_on["sequence"]) == sorted([first, third])
        await courier.accept(add_on["offer_id"])
        await courier.expect("assigned")
        assert [(await ops.get(o))["rider_id"] for o in (second, third)] == [None, rid]
    finally:
        await courier.close()
        await ops.close()


async def test_a_rider_who_announced_a_later_shift_gets_no_offer_until_it_starts(own_redis, start_server, uid) -> None:  # type: ignore[no-untyped-def]
    srv = start_server(FAST, redis=own_redis)
    ops = Ops(srv)
    mid, oid, rid = uid("m"), uid("o"), uid("r")
    courier = await rider_near_restaurant(srv, rid, 0.001)
    try:
        now = await server_now(srv.base_url)
        await courier.availability(True, shift_start=now + 3_600_000, shift_end=now + 2 * 3_600_000)
        await courier.availability(True, shift_start=now + 3_600_000, shift_end=now)
        bad = await courier.expect("error")
        assert bad["code"] == "bad_message" and "shift_start" in bad["message"]
        await confirmed_order(srv, ops, oid, mid)
        # a round has planned the order since, and offered it to nobody: the shift has not begun
        assert (await round_since(ops, await server_now(srv.base_url)))["offers"] == 0
        with pytest.raises(asyncio.TimeoutError):
            await courier.expect("offer", timeout=2)
        await courier.availability(True, shift_start=await server_now(srv.base_url), shift_end=now + 2 * 3_600_000)
        offer = await courier.expect("offer", timeout=10)
        assert [o["order_id"] for o in offer["orders"]] == [oid]
    finally:
        await courier.close()
        await ops.close()
