"""A dispatch round that stood still between reading its region and making its offers (its
process stopped, SIGSTOP or a hung host; a Redis reply that came late) sends none of them: each
offer used to be stamped ``expires_at`` from the moment the round began, so a rider got an offer
with seconds left, or already past its time, then ``offer_expired``, and was counted a refusal
and kept away from the order for the decline cooldown. The next round, planned afresh, makes
the offer, with its full time to answer.

Server A plans the region; it reaches Redis through a relay that keeps its round's first read
of the region (``ZRANGE open:{<region>}``, just after the round read the clock) back for a while
(:meth:`tests.redis_freeze.FreezingRelay.hold_before`), as a process stopped right there would.
Server B holds the rider's socket and the operator's, and sweeps offers, but plans no rounds.
"""
from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Awaitable, Callable, Iterator

import pytest

from tests.orders_helpers import PICKUP, Ops, confirmed_order
from tests.redis_freeze import FreezingRelay
from tests.test_dispatch_live import FAST, rider_near_restaurant
from tracker.embedded_redis import EmbeddedRedis, free_port
from tracker.geo import dispatch_region
from tracker.launcher import ServerProcess
from tracker.orders.store import open_orders_key
from tracker.redis_client import AnyRedis, connect

NO_ROUNDS = {**FAST, "TRACKER_DISPATCH_INTERVAL_S": "3600"}  # (its first pass finds no open order)
REGION = dispatch_region(PICKUP["lat"], PICKUP["lng"])


@pytest.fixture
def relayed_redis(tmp_path: Path) -> Iterator[tuple[EmbeddedRedis, FreezingRelay]]:
    """A Redis of this test's own on a port, and a relay to it that holds a command back on cue."""
    with EmbeddedRedis(tmp_path / "redis", port=free_port()) as redis, FreezingRelay(redis) as relay:
        yield redis, relay


def round_read() -> bytes:
    """What a dispatch round sends Redis first, once it has read the clock: the region's open orders."""
    key = open_orders_key(REGION).encode()
    return b"ZRANGE\r\n$%d\r\n%s\r\n" % (len(key), key)


async def offered_after_a_stall(relayed_redis: tuple[EmbeddedRedis, FreezingRelay],
                                start_server: Callable[..., ServerProcess], uid: Callable[[str], str],
                                env: dict[str, str], stall_s: float, timeout_s: float = 5.0,
                                meanwhile: Callable[[AnyRedis], Awaitable[None]] | None = None,
                                held: Callable[[str], bytes] = lambda rid: round_read()) -> None:
    """A's round for a new order stands still ``stall_s`` seconds (less than the server's 5 s wait
    for a Redis answer) at the command ``held(rider id)`` (else its first read; ``meanwhile`` acts
    on Redis then); the rider, the only one near, gets its
    first offer with its whole time to answer (``timeout_s``), accepts it, and is never counted a
    refusal nor kept from the order."""
    redis, relay = relayed_redis
    srv_b: ServerProcess = start_server(NO_ROUNDS, redis=redis.url)
    start_server({**FAST, "TRACKER_OFFER_TIMEOUT_S": str(timeout_s), **env}, redis=relay.url)  # A
    ops = Ops(srv_b)
    direct = connect(redis.url, decode_responses=True)
    oid, mid, rid = uid("o"), uid("m"), uid("r")
    courier = await rider_near_restaurant(srv_b, rid, 0.001)
    try:
        relay.hold_before(held(rid))
        await confirmed_order(srv_b, ops, oid, mid)
        await relay.held()
        await asyncio.sleep(stall_s)
        if meanwhile is not None:
            await meanwhile(direct)
        relay.let_go()

        frame = await courier.expect(lambda f: f["type"] in ("offer", "offer_expired"), timeout=15)
        assert frame["type"] == "offer", frame
        left_s = frame["expires_at"] / 1000 - time.time()  # (the server's clock is this host's)
        assert left_s > timeout_s - 0.5, f"offered with {left_s:.2f} s of {timeout_s} s to answer"
        assert [o["order_id"] for o in frame["orders"]] == [oid]
        await courier.accept(frame["offer_id"])
        assert (await courier.expect("assigned"))["offer_id"] == frame["offer_id"]
        assert (await ops.get(oid))["rider_id"] == rid
        riders = (await ops.client.get("/v1/ops/snapshot")).json()["riders"]
        assert [(r["id"], r["refused_last_hour"]) for r in riders] == [(rid, 0)], riders
        assert await direct.zcard(f"cooldown:{{m:{mid}}}:{oid}") == 0
    finally:
        await courier.close()
        await ops.close()
        await direct.aclose()


async def test_a_round_that_stood_still_past_its_lease_sends_nothing_stale(
        relayed_redis, start_server, uid) -> None:  # type: ignore[no-untyped-def]
    """Stopped longer than the offer's whole time (3 s) and its lease (2 s): the rider got an offer
    already expired, then ``offer_expired``, a refusal and the cooldown (as after a 35 s SIGSTOP)."""
    await offered_after_a_stall(relayed_redis, start_server, uid, {}, stall_s=4.0, timeout_s=3.0)


async def test_a_round_that_stood_still_longer_than_an_interval_sends_nothing_stale(
        relayed_redis, start_server, uid) -> None:  # type: ignore[no-untyped-def]
    """Its lease (three 2 s intervals: 6 s) still held, but the round took longer than an interval:
    its offers went out with the stall taken off their time (after a 24 s SIGSTOP, 5.8 s of 30 left)."""
    await offered_after_a_stall(relayed_redis, start_server, uid, {"TRACKER_DISPATCH_INTERVAL_S": "2"}, stall_s=3.5)


async def test_a_round_whose_lease_was_taken_meanwhile_sends_nothing(
        relayed_redis, start_server, uid) -> None:  # type: ignore[no-untyped-def]
    """A brief stall (1.2 s, within its 2 s lease and the round limit), but the region's lease is
    no longer this process's (another process took it over, a failover lost it): the region is
    another's to plan, and this round's offers, a stall late, are not sent."""
    async def taken_over(redis: AnyRedis) -> None:
        await redis.set(f"lease:dispatch:{{{REGION}}}", "another:1:process", px=1500)

    await offered_after_a_stall(relayed_redis, start_server, uid, {}, stall_s=1.2, meanwhile=taken_over)


async def test_an_offer_whose_making_stood_still_is_not_sent(
        relayed_redis, start_server, uid) -> None:  # type: ignore[no-untyped-def]
    """The round stands still (3 s, more than the 2 s it may) while it writes the offer itself:
    that offer is withdrawn unsent, and the next round makes it afresh."""
    def record_written(rid: str) -> bytes:  # (the offer's record, the first step of making it)
        return b'"rider_id":"%s"' % rid.encode()

    await offered_after_a_stall(relayed_redis, start_server, uid, {}, stall_s=3.0, held=record_written)
