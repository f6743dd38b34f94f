"""An offer that never reached its rider is not the rider's refusal.

Its dispatcher killed between making the offer and publishing it to the rider's inbox, the
offer stayed pending until its ``expires_at`` and then expired like any unanswered one: the
rider got ``offer_expired`` for an offer it never saw, was counted a refusal and kept away from
the order for the decline cooldown (the only rider near, the order waited 5 minutes). An offer
is now marked sent as it is published (or shown to a rider that reconnects); one that expires
unmarked is settled ``withdrawn``: no refusal, no cooldown, ``offer_withdrawn`` (an ``offer_id`` the
rider does not know, which it ignores), and the next round offers the order again.

Server A plans the rounds and reaches Redis through a relay (:mod:`tests.redis_freeze`) that
stops Redis, or holds one of A's commands back, at a chosen step of making an offer. Server B
holds the rider's sockets and the operator's, and sweeps offers, but plans no rounds.
"""
from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from clients.rider import RiderClient
from tests.orders_helpers import Ops, confirmed_order, rider, rounds_done
from tests.test_dispatch_live import FAST, rider_near_restaurant
from tests.test_offer_killed_accept import frames_until
from tests.test_offer_stale_round import NO_ROUNDS, relayed_redis  # noqa: F401 - a fixture
from tracker.launcher import ServerProcess
from tracker.locations.store import record_key
from tracker.redis_client import connect
from tracker.riders.inbox import inbox_channel


def off_duty_check(rider_id: str) -> bytes:
    """What a dispatcher asks Redis right after making an offer, before publishing it: whether
    its rider went off duty meanwhile (``Dispatcher._gone_meanwhile``)."""
    key = record_key(rider_id).encode()
    return b"HMGET\r\n$%d\r\n%s\r\n$2\r\nts\r\n" % (len(key), key)


def offer_published(rider_id: str) -> tuple[bytes, bytes]:
    """The offer frame on its way to the rider's inbox."""
    return inbox_channel(rider_id).encode(), b'"type":"offer"'


async def refusals(ops: Ops) -> list[tuple[str, int]]:
    """Each rider's refusals of the last hour, as the operator sees them."""
    return [(r["id"], r["refused_last_hour"]) for r in (await ops.client.get("/v1/ops/snapshot")).json()["riders"]]


async def test_an_offer_whose_dispatcher_died_before_sending_it_is_withdrawn_not_refused(
        relayed_redis, start_server, uid) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    redis, relay = relayed_redis
    srv_b: ServerProcess = start_server(NO_ROUNDS, redis=redis.url)
    srv_a: ServerProcess = start_server(FAST, redis=relay.url)
    ops = Ops(srv_b)
    direct = connect(redis.url, decode_responses=True)
    oid, mid, rid = uid("o"), uid("m"), uid("r")
    courier = await rider_near_restaurant(srv_b, rid, 0.001)
    try:
        relay.freeze_before(off_duty_check(rid))
        confirming = asyncio.create_task(confirmed_order(srv_b, ops, oid, mid))
        await relay.frozen(timeout=20)
        srv_a.proc.kill()  # type: ignore[union-attr]  # (kill -9: its offer made, not yet published)
        srv_a.proc.wait()  # type: ignore[union-attr]
        killed_at = time.monotonic()
        relay.thaw()
        await confirming
        start_server(FAST, redis=redis.url)  # C: plans the rounds from now on

        seen = await frames_until(courier, lambda f: f["type"] == "offer", timeout=20)
        waited = time.monotonic() - killed_at
        offer, before = seen[-1], seen[:-1]
        # Told (at most) that the offer it never saw was withdrawn; never that it expired.
        assert [f["type"] for f in before] in ([], ["offer_withdrawn"]), seen
        assert [o["order_id"] for o in offer["orders"]] == [oid], offer
        # Offered again within the offer's 3 s, the killed holder's 2 s lease and C's start, not
        # after the decline cooldown (600 s here, 300 s by default).
        assert waited < 15, f"offered again {waited:.1f} s after the kill"
        await courier.accept(offer["offer_id"])
        assert (await courier.expect("assigned"))["offer_id"] == offer["offer_id"]
        assert (await ops.get(oid))["rider_id"] == rid
        assert await refusals(ops) == [(rid, 0)]
        assert await direct.zcard(f"cooldown:{{m:{mid}}}:{oid}") == 0
        if before:  # and the offer it never saw says so, if the rider asks
            await courier.accept(before[0]["offer_id"])
            late = await courier.expect("error")
            assert late["code"] == "conflict" and "withdrawn" in late["message"], late
    finally:
        await courier.close()
        await ops.close()
        await direct.aclose()


@contextlib.asynccontextmanager
async def offer_shown_on_reconnecting(relayed_redis, start_server, uid  # type: ignore[no-untyped-def]
                                      ) -> AsyncIterator[tuple[Ops, RiderClient, RiderClient, str, str, dict[str, Any], Any]]:
    """Server A (offers, 3 s to answer) makes an offer its publication of which is held back; the
    rider's app, on server B, reconnects meanwhile and is shown it: (ops, the
    rider's first socket, the new one, the order, the rider, the offer, the relay that holds
    the publication)."""
    redis, relay = relayed_redis
    srv_b: ServerProcess = start_server(NO_ROUNDS, redis=redis.url)
    start_server(FAST, redis=relay.url)  # A
    ops = Ops(srv_b)
    oid, mid, rid = uid("o"), uid("m"), uid("r")
    courier = await rider_near_restaurant(srv_b, rid, 0.001)
    back = None
    try:
        relay.hold_before(*offer_published(rid))
        await confirmed_order(srv_b, ops, oid, mid)
        await relay.held()
        back = await rider(srv_b, rid)  # the app reconnects: the open offer comes with its route
        offer = await back.expect("offer", timeout=5)
        yield ops, courier, back, oid, rid, offer, relay
    finally:
        await courier.close()
        if back is not None:
            await back.close()
        await ops.close()


async def test_an_offer_shown_on_reconnecting_before_it_was_published_is_the_riders(
        relayed_redis, start_server, uid) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """Its dispatcher slow to publish it (held back here), the rider's app reconnects meanwhile and
    is shown the offer (as every reconnect shows the open offer): it can accept it, and no stale
    ``offer`` frame follows once the dispatcher publishes."""
    async with offer_shown_on_reconnecting(relayed_redis, start_server, uid) as (ops, courier, back, oid, rid, offer,
                                                                                   relay):
        assert [o["order_id"] for o in offer["orders"]] == [oid], offer
        await back.accept(offer["offer_id"])
        assert (await back.expect("assigned"))["offer_id"] == offer["offer_id"]
        relay.let_go()  # the dispatcher goes on: the offer is accepted already, nothing more to send
        await rounds_done(ops, uid)  # the round that made it has finished, whatever it sent
        for sock in (courier, back):
            with pytest.raises(asyncio.TimeoutError):
                await sock.expect("offer", timeout=1.5)
        assert (await ops.get(oid))["rider_id"] == rid


async def test_an_offer_shown_on_reconnecting_and_left_unanswered_is_the_riders_refusal(
        relayed_redis, start_server, uid) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """Shown to the rider on reconnecting (its dispatcher slow to publish it), the offer is as good
    as sent: left unanswered it expires (``offer_expired``) and counts as the rider's refusal."""
    async with offer_shown_on_reconnecting(relayed_redis, start_server, uid) as (ops, _, back, oid, rid, offer, relay):
        expired = await back.expect(lambda f: f["type"] in ("offer_expired", "offer_withdrawn"), timeout=10)
        assert expired == {"type": "offer_expired", "offer_id": offer["offer_id"]}, expired
        relay.let_go()
        assert await refusals(ops) == [(rid, 1)]


