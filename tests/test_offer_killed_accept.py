"""A rider whose ``accept`` died with its server process (killed between assigning the orders
and settling the offer) is never shown that offer again as if open: reconnecting to another
process it finds the orders in its ``route`` and gets ``assigned`` for the offer, and a socket
it kept open elsewhere is told ``assigned`` when the offer is settled.

The kill lands at a chosen moment: server A reaches Redis through a relay that freezes Redis
just as A's atomic ``assigned`` step is on its way (:mod:`tests.redis_freeze`); A is killed
while Redis is stopped, so when Redis wakes it runs the step and nothing A would have done next
(the rider's order set, the offer's settlement). Server B shares that Redis directly.
"""
from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from clients.rider import RiderClient
from tests.orders_helpers import Ops, confirmed_order, rider
from tests.redis_freeze import FreezingRelay
from tests.test_dispatch_live import FAST, rider_near_restaurant
from tests.test_orders_frozen_redis import step_of
from tracker.dispatch.offers import CLAIM_LEASE_S
from tracker.embedded_redis import EmbeddedRedis, free_port
from tracker.launcher import ServerProcess


@pytest.fixture
def relayed_redis(tmp_path: Path) -> Iterator[tuple[EmbeddedRedis, FreezingRelay]]:
    """A Redis of this test's own on a port, and a relay to it that freezes it on cue."""
    with EmbeddedRedis(tmp_path / "redis", port=free_port()) as redis, FreezingRelay(redis) as relay:
        yield redis, relay


async def frames_until(sock: RiderClient, match: Callable[[dict[str, Any]], bool], timeout: float) -> list[dict]:
    """Every frame ``sock`` gets until (and including) one that ``match``es."""
    out: list[dict] = []
    deadline = time.monotonic() + timeout
    while not out or not match(out[-1]):
        out.append(await sock.recv(timeout=max(0.01, deadline - time.monotonic())))
    return out


async def test_an_accept_killed_with_its_process_is_never_offered_again_and_the_rider_is_told(
        relayed_redis, start_server, uid) -> None:  # type: ignore[no-untyped-def]
    redis, relay = relayed_redis
    srv_a: ServerProcess = start_server(FAST, redis=relay.url)
    srv_b: ServerProcess = start_server(FAST, redis=redis.url)
    ops = Ops(srv_b)
    oid, mid, rid = uid("o"), uid("m"), uid("r")
    courier = await rider_near_restaurant(srv_a, rid, 0.001)
    elsewhere = await rider(srv_b, rid)  # the rider's other socket (a second device), on B
    try:
        await confirmed_order(srv_b, ops, oid, mid)
        offer = await courier.expect("offer", timeout=10)
        assert (await elsewhere.expect("offer", timeout=10))["offer_id"] == offer["offer_id"]
        relay.freeze_before(*step_of(oid, "assigned"))
        await courier.accept(offer["offer_id"])
        await relay.frozen()
        srv_a.proc.kill()  # type: ignore[union-attr]
        srv_a.proc.wait()  # type: ignore[union-attr]
        accepted_at = time.monotonic()
        relay.thaw()  # Redis runs the step; A never writes again
        while (await ops.get(oid))["status"] != "assigned":
            await asyncio.sleep(0.05)

        back = await rider(srv_b, rid, keep_route=True)  # the app reconnects, to B
        try:
            route = await back.expect("route")
            assert [(o["order_id"], o["status"]) for o in route["orders"]] == [(oid, "assigned")], route
            told = await back.expect(lambda f: f.get("offer_id") == offer["offer_id"])
            assert told["type"] == "assigned" and [o["order_id"] for o in told["orders"]] == [oid], told
            # and the offer does not come again as if open: not among the frames before the answer to a
            # message sent now, answered after the frames a connection starts with
            await back.accept("of-0000000000000000")
            assert (await back.expect("error"))["code"] == "not_found"
            assert [f for f in back.received if f["type"] == "offer"] == [], back.received
        finally:
            await back.close()

        # The socket that stayed open on B: whatever comes (the repair's route), never the offer
        # again as if open, until it is told the offer was settled as accepted.
        seen = await frames_until(elsewhere, lambda f: f.get("type") == "assigned", timeout=CLAIM_LEASE_S + 15)
        assert time.monotonic() - accepted_at < CLAIM_LEASE_S + 15
        assert [f for f in seen if f.get("type") == "offer"] == [], seen
        assert seen[-1]["offer_id"] == offer["offer_id"], seen
        order = await ops.get(oid)
        assert (order["status"], order["rider_id"]) == ("assigned", rid)
    finally:
        await courier.close()
        await elsewhere.close()
        await ops.close()
