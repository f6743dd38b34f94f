"""Helpers for the orders tests: create orders over HTTP, drive them, read them back."""
from __future__ import annotations

import asyncio
import re
from typing import Any, Callable

import httpx

from clients.customer import CustomerClient
from clients.jsonsocket import JsonSocket
from clients.merchant import MerchantClient
from clients.rider import RiderClient
from tracker.launcher import ServerProcess

PICKUP = {"lat": 52.5200, "lng": 13.4050}
DROPOFF = {"lat": 52.5300, "lng": 13.4200}
ELSEWHERE = {"lat": 64.1400, "lng": -21.9400}  # a town far from every test's riders (Reykjavik)


class Ops:
    """The ordering platform / operator over HTTP."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.client = httpx.AsyncClient(base_url=server.base_url, timeout=10,
                                        headers={"Authorization": "Bearer " + server.token("operator", "ops")})

    async def create(self, order_id: str, merchant_id: str, **extra: Any) -> httpx.Response:
        body = {"id": order_id, "merchant_id": merchant_id, "pickup": PICKUP, "dropoff": DROPOFF, **extra}
        return await self.client.post("/v1/orders", json=body)

    async def get(self, order_id: str) -> dict[str, Any]:
        resp = await self.client.get(f"/v1/orders/{order_id}")
        assert resp.status_code == 200, resp.text
        return resp.json()

    async def assign(self, order_id: str, rider_id: str) -> httpx.Response:
        return await self.client.post(f"/v1/orders/{order_id}/assign", json={"rider_id": rider_id})

    async def cancel(self, order_id: str) -> httpx.Response:
        return await self.client.post(f"/v1/orders/{order_id}/cancel", json={})

    async def rider_seen_at(self, rider_id: str, lat: float, lng: float, timeout: float = 5.0) -> bool:
        """Wait until nearby search lists ``rider_id`` at exactly (lat, lng): its fix is stored."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            resp = await self.client.get("/v1/riders/nearby", params={"lat": lat, "lng": lng, "radius_m": 50})
            assert resp.status_code == 200, resp.text
            if any(r["id"] == rider_id and (r["lat"], r["lng"]) == (lat, lng) for r in resp.json()["riders"]):
                return True
            if asyncio.get_running_loop().time() > deadline:
                return False
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        await self.client.aclose()


async def server_now(base_url: str) -> int:
    """The server's clock (ms), from ``/healthz``."""
    async with httpx.AsyncClient() as http:
        return int((await http.get(base_url + "/healthz")).json()["ts"])


async def round_since(ops: Ops, since_ms: int, timeout: float = 10.0) -> dict[str, Any]:
    """The newest dispatch round on the ops snapshot, once it is one that started after ``since_ms``
    (server time) with an order to plan: that round has written its estimates (a round's figures are
    written after them). For a server with a Redis of its own, whose rounds are the only ones."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        resp = await ops.client.get("/v1/ops/snapshot")
        assert resp.status_code == 200, resp.text
        last = resp.json()["dispatch"]
        if last.get("started", 0) > since_ms and last.get("orders", 0) >= 1:
            return last
        assert loop.time() < deadline, ("no dispatch round since", since_ms, last)
        await asyncio.sleep(0.05)


def metric(text: str, name: str) -> float:
    """The value of ``name`` (its labels may follow) in a ``/metrics`` answer's ``text``; 0 when absent."""
    found = re.search(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


async def rounds_done(ops: Ops, uid: Callable[[str], str]) -> None:
    """Wait until a dispatch round that started after now has run: the rounds before it have sent
    every offer they made (a process plans one round at a time). An order far from every rider,
    which dispatch plans each round and never offers, keeps rounds coming when the test's own
    orders are all taken. For a server with a Redis of its own, whose rounds are the only ones."""
    since = await server_now(ops.server.base_url)
    await confirmed_order(ops.server, ops, uid("o-elsewhere"), uid("m-elsewhere"), pickup=ELSEWHERE,
                          dropoff={"lat": ELSEWHERE["lat"] + 0.01, "lng": ELSEWHERE["lng"]})
    await round_since(ops, since)


async def merchant(server: ServerProcess, merchant_id: str, last_event_id: str | None = None) -> MerchantClient:
    return await MerchantClient.connect(server.ws_url, server.token("merchant", merchant_id), last_event_id)


async def confirmed_order(server: ServerProcess, ops: Ops, order_id: str, merchant_id: str, **where: Any) -> None:
    """Create an order (``pickup``, ``dropoff`` as given, else the defaults) and have its kitchen
    confirm it (the kitchen's socket closed again)."""
    created = await ops.create(order_id, merchant_id, **where)
    assert created.status_code in (200, 201), created.text  # (201 created; 200 the same body again)
    kitchen = await merchant(server, merchant_id)
    await kitchen.confirm(order_id)
    await kitchen.event(order_id, "confirmed")
    await kitchen.close()


async def platform_kitchen(server: ServerProcess, merchant_id: str) -> MerchantClient:
    """The operator acting on a merchant's feed: not rate-limited like a kitchen's own socket (floods in tests)."""
    url = f"{server.ws_url}/v1/ws/merchant?merchant_id={merchant_id}"
    return MerchantClient((await JsonSocket.open(url, server.token("operator", "ops"))).ws)


async def customer(server: ServerProcess, order_id: str) -> CustomerClient:
    return await CustomerClient(server.ws_url, server.token("customer", order_id), order_id).connect()


async def rider(server: ServerProcess, rider_id: str, *, keep_route: bool = False) -> RiderClient:
    r = await RiderClient.connect(server.ws_url, server.token("rider", rider_id))
    if not keep_route:
        await r.expect("route")  # every connection starts with one; tests of it pass keep_route
    return r


async def events_until(watcher: CustomerClient, kind: str, timeout: float = 10.0) -> list[dict[str, Any]]:
    """Event frames received until (and including) one of ``kind``."""
    out = []
    while True:
        frame = await watcher.next_event(timeout)
        assert frame["type"] == "event", frame
        out.append(frame)
        if frame["kind"] == kind:
            return out


async def confirm_all(kitchen: MerchantClient, *order_ids: str) -> None:
    """The kitchen confirms each order and sees it confirmed."""
    for oid in order_ids:
        await kitchen.confirm(oid)
        await kitchen.event(oid, "confirmed")


async def deliver(courier: RiderClient, kitchen: MerchantClient, order_id: str) -> None:
    """The rider takes ``order_id`` from the restaurant to the door, each step seen on the kitchen's feed."""
    for step in ("at_pickup", "picked_up", "at_dropoff", "delivered"):
        await courier.progress(order_id, step)
        await kitchen.event(order_id, step)


async def carried_after_frames(courier: RiderClient, quiet_s: float = 0.5) -> set[str]:
    """What the rider believes it carries once no frame came for ``quiet_s``: each ``route``
    resets it, then ``assigned``, ``unassigned``, ``order_cancelled`` and ``order_failed`` frames
    are applied in the order they came."""
    carries: set[str] = set()
    while True:
        try:
            frame = await courier.recv(timeout=quiet_s)
        except asyncio.TimeoutError:
            return carries
        if frame["type"] == "route":
            carries = {o["order_id"] for o in frame["orders"]}
        elif frame["type"] == "assigned":
            carries |= {o["order_id"] for o in frame["orders"]}
        elif frame["type"] in ("unassigned", "order_cancelled", "order_failed"):
            carries.discard(frame["order_id"])


async def frame_where(watcher: CustomerClient, match: Callable[[dict[str, Any]], bool],
                      timeout: float = 5.0) -> dict[str, Any]:
    """The customer's first frame matching ``match`` within ``timeout`` seconds."""
    async def scan() -> dict[str, Any]:
        while True:
            frame = await watcher.next(timeout)
            if match(frame):
                return frame
    return await asyncio.wait_for(scan(), timeout)


async def at_the_counter(srv: ServerProcess, ops: Ops, oid: str, mid: str, rid: str) -> tuple[RiderClient, CustomerClient]:
    """An order whose food is ready, its rider at the restaurant saying so, its customer watching."""
    courier = await rider(srv, rid)
    assert (await ops.create(oid, mid)).status_code == 201
    kitchen = await merchant(srv, mid)
    await kitchen.confirm(oid)
    await kitchen.event(oid, "confirmed")
    await kitchen.ready(oid)
    await kitchen.event(oid, "food_ready")
    await kitchen.close()
    await courier.location(PICKUP["lat"], PICKUP["lng"])
    assert (await ops.assign(oid, rid)).status_code == 200
    watcher = await customer(srv, oid)
    await courier.progress(oid, "at_pickup")
    await events_until(watcher, "at_pickup")
    return courier, watcher
