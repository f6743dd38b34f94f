"""An answer to an offer whose server process is killed half-way does not hold the order for
the keys' safety TTL: another process settles it within about 15 s and the order is served.

The killed (or stalled) process is stood in for by this test process: with the server's own
offer store and order service, against the same Redis, it does what a process taking the
rider's ``accept`` does (claim the offer, then assign its orders) and stops where a process
killed at that point would; or, stalled past the claim's lease, tries to finish afterwards.
"""
from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import AsyncIterator, Callable

import pytest
from prometheus_client import CollectorRegistry

from clients.rider import RiderClient
from tests.orders_helpers import Ops, confirmed_order
from tests.test_dispatch_live import FAST, rider_near_restaurant
from tracker.clock import Clock
from tracker.dispatch.offers import CLAIM_LEASE_S, OfferRecord, OfferStore
from tracker.errors import ApiError
from tracker.launcher import ServerProcess
from tracker.orders import assign_orders
from tracker.pubsub import PubSubHub
from tracker.redis_client import AnyRedis, connect
from tracker.runtime import Runtime
from tracker.settings import Settings
from tracker.supervisor import Supervisor
from tracker.wsconn import WsHub


def other_process(redis: AnyRedis) -> Runtime:
    """What another server process holds (without its sockets), on the same Redis."""
    registry = CollectorRegistry()
    supervisor = Supervisor(registry)
    return Runtime(settings=Settings.from_env({}), secret="unused", redis=redis, clock=Clock(), registry=registry,
                   supervisor=supervisor, hub=WsHub(20, None), pubsub=PubSubHub(redis, supervisor, registry))


@dataclass
class Claimed:
    """A rider's offer for a new order, claimed as the process taking the rider's accept does first."""

    ops: Ops
    redis: AnyRedis
    courier: RiderClient
    oid: str
    offer: dict
    record: OfferRecord


@contextlib.asynccontextmanager
async def claimed_offer(own_redis: str, start_server: Callable[..., ServerProcess],
                        uid: Callable[[str], str], env: dict[str, str] | None = None) -> AsyncIterator[Claimed]:
    """A server of its own (offers' safety TTL: 60 s; ``env`` added to its settings), a rider near
    the restaurant, and its offer for a new order, claimed here; the rest is up to the test."""
    srv = start_server({**FAST, **(env or {})}, redis=own_redis)
    ops = Ops(srv)
    redis = connect(own_redis, decode_responses=True)
    oid, mid = uid("o"), uid("m")
    courier = await rider_near_restaurant(srv, uid("r"), 0.001)
    try:
        await confirmed_order(srv, ops, oid, mid)
        offer = await courier.expect("offer", timeout=10)
        store = OfferStore(redis, Clock(), safety_ttl_ms=60_000)
        record = await store.load(offer["offer_id"])
        assert record is not None and await store.claim(record)
        yield Claimed(ops, redis, courier, oid, offer, record)
    finally:
        await courier.close()
        await ops.close()
        await redis.aclose()


async def test_an_offer_claimed_by_a_killed_process_is_withdrawn_and_the_order_served(
        own_redis, start_server, uid) -> None:  # type: ignore[no-untyped-def]
    async with claimed_offer(own_redis, start_server, uid) as c:  # ...and the claimer is gone
        ops, redis, courier, oid, offer, record = c.ops, c.redis, c.courier, c.oid, c.offer, c.record
        claimed = time.monotonic()
        await courier.accept(offer["offer_id"])  # the same rider tries again: already taken
        assert (await courier.expect("error"))["code"] == "conflict"

        withdrawn = await courier.expect("offer_withdrawn", timeout=CLAIM_LEASE_S + 15)
        assert withdrawn["offer_id"] == offer["offer_id"]
        assert CLAIM_LEASE_S - 1 <= time.monotonic() - claimed < CLAIM_LEASE_S + 15
        assert (await ops.get(oid))["status"] == "confirmed"  # nobody was assigned meanwhile
        try:  # the claimer was only stalled, and now goes on to assign: its offer is settled
            await assign_orders(other_process(redis), [oid], record.rider_id, offer_id=record.offer_id,
                                lock_keys=record.lock_keys)
            raise AssertionError("a claim settled by the sweep still assigned its orders")
        except ApiError as exc:
            assert exc.code == "conflict" and "no longer held" in exc.message, exc
        assert (await ops.get(oid))["status"] == "confirmed"

        again = await courier.expect("offer", timeout=10)  # the next round offers it again
        assert [o["order_id"] for o in again["orders"]] == [oid]
        await courier.accept(again["offer_id"])
        await courier.expect("assigned")
        order = await ops.get(oid)
        assert order["status"] == "assigned" and order["events"][-1]["offer_id"] == again["offer_id"]
        await courier.accept(offer["offer_id"])  # the stalled offer says what became of it
        late = await courier.expect("error")
        assert late["code"] == "conflict" and "withdrawn" in late["message"], late


async def test_an_offer_whose_process_died_after_assigning_is_settled_as_accepted(
        own_redis, start_server, uid) -> None:  # type: ignore[no-untyped-def]
    # (no repair of the step's follow-ups meanwhile, whose route would tell the rider first)
    async with claimed_offer(own_redis, start_server, uid, {"TRACKER_FOLLOWUP_REPAIR_S": "120"}) as c:
        ops, redis, courier, oid, offer, record = c.ops, c.redis, c.courier, c.oid, c.offer, c.record
        await assign_orders(other_process(redis), [oid], record.rider_id, offer_id=record.offer_id,
                            lock_keys=record.lock_keys)  # ...and the process is gone before it settles
        deadline = time.monotonic() + CLAIM_LEASE_S + 15
        while True:  # the rider's app, unanswered, asks again until the offer is settled
            await courier.accept(offer["offer_id"])
            answer = await courier.expect("error")
            if "already accepted" in answer["message"] or time.monotonic() > deadline:
                break
            await asyncio.sleep(1)
        assert answer["code"] == "conflict" and "already accepted" in answer["message"], answer
        # ...and the rider was sent the answer its accept never got, once the offer was settled
        told = await courier.expect(lambda f: f.get("type") == "assigned", timeout=5)
        assert told["offer_id"] == offer["offer_id"] and [o["order_id"] for o in told["orders"]] == [oid], told
        order = await ops.get(oid)
        assert order["status"] == "assigned" and order["rider_id"] == record.rider_id
        with pytest.raises(asyncio.TimeoutError):
            await courier.expect("offer_withdrawn", timeout=1)  # it is the rider's: nothing withdrawn
