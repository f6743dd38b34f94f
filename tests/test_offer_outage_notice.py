"""A rider holding an offer through a Redis outage is told what became of it once Redis is back,
even when the notice was published before the server's pub/sub had subscribed again (the notice
reached nobody: the rider got only ``route`` frames and had to trust its own ``expires_at``)."""
from __future__ import annotations

import asyncio
from typing import Callable

import httpx

from tests.orders_helpers import Ops, metric
from tests.test_dispatch_live import FAST, offered, rider_near_restaurant
from redis.asyncio.cluster import RedisCluster

from tests.test_pubsub import kill_pubsub_connections
from tracker.launcher import ServerProcess
from tracker.redis_client import AnyRedis, connect, is_cluster


async def may_subscribe(admin: AnyRedis, allowed: bool) -> None:
    """Let the server's Redis user (``default``) subscribe, or not (on every node of a cluster)."""
    extra = {"target_nodes": RedisCluster.ALL_NODES} if is_cluster(admin) else {}
    sign = "+" if allowed else "-"
    await admin.execute_command("ACL", "SETUSER", "default", f"{sign}subscribe", f"{sign}psubscribe", **extra)


async def offers_expired(srv: ServerProcess) -> float:
    """The server's count of offers that expired unanswered (``/metrics``)."""
    async with httpx.AsyncClient(base_url=srv.base_url, timeout=10) as http:
        return metric((await http.get("/metrics")).text, "tracker_dispatch_offers_expired_total")


async def test_an_offer_expired_while_the_servers_pubsub_was_away_is_reported_once_it_is_back(
        own_redis: str, start_server: Callable[..., ServerProcess], uid: Callable[[str], str]) -> None:
    """The race of an outage made certain: the sweep publishes ``offer_expired`` while the server's
    pub/sub connection is cut and cannot subscribe again (ACL), so the notice reaches nobody."""
    srv = start_server(FAST, redis=own_redis)
    ops = Ops(srv)
    admin = connect(own_redis)
    courier = await rider_near_restaurant(srv, uid("r"), 0.002)
    try:
        offer = await offered(ops, courier, uid("o"), uid("m"))
        await may_subscribe(admin, False)
        await kill_pubsub_connections(admin)
        await courier.expect("route", timeout=10)  # (the cut's resync: the offer is still open)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + float(FAST["TRACKER_OFFER_TIMEOUT_S"]) + 20
        while await offers_expired(srv) < 1:  # it expires (the notice published), told to nobody
            assert loop.time() < deadline, "the offer did not expire while the pub/sub was away"
            await asyncio.sleep(0.1)
        assert not [f for f in courier.received if f.get("type") == "offer_expired"], courier.received
        await may_subscribe(admin, True)
        expired = await courier.expect(lambda f: f.get("type") in ("offer_expired", "offer_withdrawn"), timeout=40)
        assert expired == {"type": "offer_expired", "offer_id": offer["offer_id"]}, courier.received
        await courier.accept(offer["offer_id"])  # what the rider is told holds: it is settled
        assert (await courier.expect("error"))["code"] == "conflict"
    finally:
        await may_subscribe(admin, True)
        await admin.aclose()
        await courier.close()
        await ops.close()
