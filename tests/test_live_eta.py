"""The customer's live ETA while the rider is at a stop: it follows the ETA model's own rule
(a pickup's departure half a pickup service after it, a drop-off half a drop-off service after
the rider reached the door) when the rider reports the step, instead of jumping or sliding.

The servers' clocks run 60 times faster (a server minute is a real second) and each service
takes 10 server minutes, so its half (5 real seconds) outlasts the frames each test reads;
every comparison is between the server's own stamps."""
from __future__ import annotations

import asyncio

from clients.customer import CustomerClient
from clients.rider import RiderClient
from tests.orders_helpers import DROPOFF, PICKUP, Ops, at_the_counter, events_until, frame_where, rider
from tracker.launcher import ServerProcess
from tracker.orders.eta import EtaModel, route_times

SLOW_STOPS = {"TRACKER_TIME_SCALE": "60", "TRACKER_PICKUP_SERVICE_S": "600", "TRACKER_DROPOFF_SERVICE_S": "600"}
HALF_SERVICE_MS = 300_000


async def server_now(ops: Ops) -> int:
    """The server's clock (ms), asked on the operator's connection (which it keeps in use)."""
    return int((await ops.client.get("/healthz")).json()["ts"])


async def eta_at(courier: RiderClient, watcher: CustomerClient, lat: float, lng: float) -> int:
    """The ETA the customer is told for the rider's fix at (lat, lng) (each test's fixes differ)."""
    await courier.location(lat, lng)
    frame = await frame_where(watcher, lambda f: f.get("type") == "rider_location" and f["lat"] == lat and f["eta"])
    return int(frame["eta"])


async def test_the_eta_holds_when_the_rider_picks_up_on_time_and_waits_out_the_service(
        own_redis, start_server, uid) -> None:  # type: ignore[no-untyped-def]
    """Before the pickup the model counts its second half; after it, a rider still at the
    counter leaves that half after the pickup too, so the customer's ETA does not jump ahead."""
    srv = start_server(SLOW_STOPS, redis=own_redis)
    ops = Ops(srv)
    oid, mid, rid = uid("o"), uid("m"), uid("r")
    courier, watcher = await at_the_counter(srv, ops, oid, mid, rid)
    try:
        waiting = PICKUP["lat"] + 0.00001, PICKUP["lng"]
        before = await eta_at(courier, watcher, *waiting)
        arrived = (await ops.get(oid))["at_pickup_at"]
        while await server_now(ops) < arrived + HALF_SERVICE_MS:  # the model's pickup time
            await courier.location(*waiting)  # (a rider silent for 5 server minutes loses the order)
            await asyncio.sleep(0.5)
        await courier.progress(oid, "picked_up")
        await events_until(watcher, "picked_up")
        after = await eta_at(courier, watcher, PICKUP["lat"] + 0.00002, PICKUP["lng"])
        picked = (await ops.get(oid))["picked_up_at"]
        # Planned: pickup at arrival + half, departure half later. Now: departure at the pickup
        # + half. So the ETA moved by exactly how late the rider was on the planned pickup.
        late = picked - (arrived + HALF_SERVICE_MS)
        assert abs((after - before) - late) <= 1, (before, after, late)
        assert (await ops.get(oid))["eta"] == after
    finally:
        await watcher.close()
        await courier.close()
        await ops.close()


async def test_the_eta_stays_put_while_the_rider_is_at_the_door(own_redis, start_server, uid) -> None:  # type: ignore[no-untyped-def]
    """At the door the drop-off happens half a service after the rider got there: each fix
    there tells the same ETA (it did not slide a server minute later with every fix), and the
    order's body says the same."""
    srv = start_server(SLOW_STOPS, redis=own_redis)
    ops = Ops(srv)
    oid, mid, rid = uid("o"), uid("m"), uid("r")
    courier, watcher = await at_the_counter(srv, ops, oid, mid, rid)
    try:
        await courier.progress(oid, "picked_up")
        await events_until(watcher, "picked_up")
        await asyncio.sleep(0.5)  # 30 server seconds: 1.5 km is no teleport at 50 m/s
        await courier.location(DROPOFF["lat"], DROPOFF["lng"])
        assert await ops.rider_seen_at(rid, DROPOFF["lat"], DROPOFF["lng"])
        await courier.progress(oid, "at_dropoff")
        await events_until(watcher, "at_dropoff")
        etas = [await eta_at(courier, watcher, DROPOFF["lat"] + 0.00001, DROPOFF["lng"])]
        await asyncio.sleep(1.0)  # a server minute at the door
        etas.append(await eta_at(courier, watcher, DROPOFF["lat"] + 0.00002, DROPOFF["lng"]))
        reached = (await ops.get(oid))["at_dropoff_at"]
        assert etas == [reached + HALF_SERVICE_MS] * 2, (etas, reached)
        assert (await ops.get(oid))["eta"] == reached + HALF_SERVICE_MS
    finally:
        await watcher.close()
        await courier.close()
        await ops.close()


def test_a_stop_reported_from_afar_keeps_the_leg_there() -> None:
    """A rider that says it is at the door (or is taken to be at the counter it collected from)
    while its fix is far from it is not there: the ETA still counts the leg, from the fix."""
    model, now = EtaModel(5.0, 240.0, 240.0), 1_000_000
    rest, door, away = (52.52, 13.405), (52.53, 13.42), (52.50, 13.405)
    plain = route_times(model, now, away, None, None, [door])
    assert route_times(model, now, away, None, None, [door], at_dropoff_ms=now - 60_000) == plain
    assert route_times(model, now, away, None, None, [door], collected=(rest, now)) == plain
    at_door = route_times(model, now, door, None, None, [door], at_dropoff_ms=now - 60_000)
    assert at_door.dropoffs == (now + 60_000,)  # half the service from the report, not from now
