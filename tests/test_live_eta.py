"""The customer's live ETA while the rider is at a stop: it follows the ETA model's own rule
(a pickup's departure half a pickup service after it, a drop-off half a drop-off service after
the rider reached the door) when the rider reports the step, instead of jumping or sliding.

The servers' clocks run 60 times faster (a server minute is a real second) and each service
takes 10 server minutes, so its half (5 real seconds) outlasts the frames each test reads;
every comparison is between the server's own stamps."""
from __future__ import annotations

import asyncio
from typing import Any

from clients.customer import CustomerClient
from clients.rider import RiderClient
from tests.orders_helpers import (DROPOFF, PICKUP, Ops, at_the_counter, confirm_all, customer, events_until, frame_where,
                                  merchant, rider)
from tracker.launcher import ServerProcess
from tracker.orders.eta import EtaModel, route_times

SLOW_STOPS = {"TRACKER_TIME_SCALE": "60", "TRACKER_PICKUP_SERVICE_S": "600", "TRACKER_DROPOFF_SERVICE_S": "600"}
HALF_SERVICE_MS = 300_000


async def server_now(ops: Ops) -> int:
    """The server's clock (ms), asked on the operator's connection (which it keeps in use)."""
    return int((await ops.client.get("/healthz")).json()["ts"])


async def fix_told(courier: RiderClient, watcher: CustomerClient, lat: float, lng: float) -> dict[str, Any]:
    """The ``rider_location`` frame the customer is told for the rider's fix at (lat, lng) (each
    test's fixes differ): its ``eta``, and its ``ts``, the server's time the fix was taken."""
    await courier.location(lat, lng)
    return await frame_where(watcher, lambda f: f.get("type") == "rider_location" and f["lat"] == lat and f["eta"])


async def eta_at(courier: RiderClient, watcher: CustomerClient, lat: float, lng: float) -> int:
    """The ETA the customer is told for the rider's fix at (lat, lng) (each test's fixes differ)."""
    return int((await fix_told(courier, watcher, lat, lng))["eta"])


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


async def test_the_eta_holds_while_the_rider_rides_away_from_the_counter(
        own_redis, start_server, uid) -> None:  # type: ignore[no-untyped-def]
    """A rider that waits out the pickup's second half at the counter, then rides to the door
    at the model's speed: every fix on the way tells the ETA of the pickup, inside the
    restaurant's 250 m (where it used to creep later by the second, then snap back) and past
    it. Riders go at 1 m/s here, so the first 250 m take 250 server seconds (4 real ones):
    each fix is placed where the rider is at the server's time, a second after the last."""
    srv = start_server({**SLOW_STOPS, "TRACKER_RIDER_SPEED_MPS": "1"}, redis=own_redis)
    ops = Ops(srv)
    oid, mid, rid = uid("o"), uid("m"), uid("r")
    courier, watcher = await at_the_counter(srv, ops, oid, mid, rid)
    model = EtaModel(1.0, 600.0, 600.0)
    home, door = (PICKUP["lat"], PICKUP["lng"]), (DROPOFF["lat"], DROPOFF["lng"])
    try:
        await courier.progress(oid, "picked_up")
        await events_until(watcher, "picked_up")
        leave = (await ops.get(oid))["picked_up_at"] + HALF_SERVICE_MS
        planned = leave + model.leg_ms(home, door) + HALF_SERVICE_MS
        while await server_now(ops) < leave:
            await courier.location(*home)
            await asyncio.sleep(0.5)
        seen = []
        while not seen or seen[-1][0] < 400:
            await asyncio.sleep(1.1)  # (the feed sends a rider's fixes once a second: this one at once)
            at = await server_now(ops)
            out = (at - leave) / 1000 * model.speed_mps  # metres ridden
            share = out / (model.leg_ms(home, door) / 1000 * model.speed_mps)
            fix = home[0] + (door[0] - home[0]) * share, home[1] + (door[1] - home[1]) * share
            told = await fix_told(courier, watcher, *fix)
            # The fix is where the rider is at `at`; the server takes it a moment later (its `ts`),
            # by then the rider is that much further on: the ETA holds if it is `planned` plus that
            # moment (on a loaded machine, seconds of the fast clock go by between the two).
            seen.append((out, int(told["eta"]) - planned - (int(told["ts"]) - at)))
        assert sum(1 for out, _ in seen if out < 250) >= 2, seen
        assert all(abs(off) <= 30_000 for _, off in seen), seen  # (a fix takes a moment: 0.5 real s is 30 s)
    finally:
        await watcher.close()
        await courier.close()
        await ops.close()


async def test_a_bundles_later_eta_holds_when_the_rider_delivers_the_first(own_redis, start_server, uid) -> None:  # type: ignore[no-untyped-def]
    """Two orders of one restaurant, one rider, the first delivered on time: the second's ETA
    does not jump half a drop-off service earlier at the ``delivered`` (the rider still at that
    door leaves it half a service after the drop-off, as planned before it)."""
    srv = start_server(SLOW_STOPS, redis=own_redis)
    ops = Ops(srv)
    first, second, mid, rid = uid("o1"), uid("o2"), uid("m"), uid("r")
    courier = await rider(srv, rid)
    watchers = []
    try:
        further = {"lat": DROPOFF["lat"] + 0.005, "lng": DROPOFF["lng"]}
        for oid, drop in ((first, DROPOFF), (second, further)):
            assert (await ops.create(oid, mid, dropoff=drop)).status_code == 201
        kitchen = await merchant(srv, mid)
        await confirm_all(kitchen, first, second)
        for oid in (first, second):
            await kitchen.ready(oid)
            await kitchen.event(oid, "food_ready")
        await kitchen.close()
        await courier.location(PICKUP["lat"], PICKUP["lng"])
        for oid in (first, second):
            assert (await ops.assign(oid, rid)).status_code == 200
        watchers = [await customer(srv, first), await customer(srv, second)]
        for oid, watcher in zip((first, second), watchers):
            for step in ("at_pickup", "picked_up"):
                await courier.progress(oid, step)
                await events_until(watcher, step)
        await asyncio.sleep(0.5)  # 30 server seconds: 1.5 km is no teleport at 50 m/s
        await courier.location(DROPOFF["lat"], DROPOFF["lng"])
        assert await ops.rider_seen_at(rid, DROPOFF["lat"], DROPOFF["lng"])
        await courier.progress(first, "at_dropoff")
        await events_until(watchers[0], "at_dropoff")
        before = await eta_at(courier, watchers[1], DROPOFF["lat"] + 0.00001, DROPOFF["lng"])
        reached = (await ops.get(first))["at_dropoff_at"]
        while await server_now(ops) < reached + HALF_SERVICE_MS:  # the model's drop-off time
            await courier.location(DROPOFF["lat"], DROPOFF["lng"])
            await asyncio.sleep(0.5)
        await courier.progress(first, "delivered")
        await events_until(watchers[0], "delivered")
        after = await eta_at(courier, watchers[1], DROPOFF["lat"] + 0.00002, DROPOFF["lng"])
        # Planned: the drop-off at the door report + half, departure half later. Now: departure
        # at the drop-off + half. So the ETA moved by exactly how late the drop-off was.
        late = (await ops.get(first))["delivered_at"] - (reached + HALF_SERVICE_MS)
        assert abs((after - before) - late) <= 1, (before, after, late)
        assert (await ops.get(second))["eta"] == after
    finally:
        for watcher in watchers:
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


# A straight road east from the restaurant; the model's 5 m/s and 4-minute services.
MODEL = EtaModel(5.0, 240.0, 240.0)
KITCHEN = (52.52, 13.405)
HALF_PICKUP_MS = HALF_DROPOFF_MS = 120_000


def east(metres: float) -> tuple[float, float]:
    """The point ``metres`` east of the restaurant (about: the times come from the model's legs)."""
    return KITCHEN[0], KITCHEN[1] + metres / 67_730.0


def ride(start_ms: float, frm: tuple[float, float], to: tuple[float, float]) -> list[tuple[int, tuple[float, float]]]:
    """A rider leaving ``frm`` at ``start_ms`` for ``to`` at the model's speed: (time, fix) every 5 m."""
    steps = max(1, round(MODEL.leg_ms(frm, to) / 1000.0))
    fixes = [(frm[0] + (to[0] - frm[0]) * i / steps, frm[1] + (to[1] - frm[1]) * i / steps) for i in range(steps + 1)]
    return [(int(start_ms + MODEL.leg_ms(frm, fix)), fix) for fix in fixes]


def test_a_rider_riding_away_from_the_counter_keeps_its_eta() -> None:
    """Once picked up, a rider waiting out the service at the counter and then riding away at
    the model's speed reaches each door when the model said at the pickup: every fix on the
    way, the first 250 m included (where the ETA used to creep a second later every second,
    then snap back), tells the same drop-off times, for both orders of a bundle."""
    picked = 1_000_000
    doors = [east(1500), east(1700)]
    leave = picked + HALF_PICKUP_MS
    first = leave + MODEL.leg_ms(KITCHEN, doors[0]) + HALF_DROPOFF_MS
    planned = (first, first + HALF_DROPOFF_MS + MODEL.leg_ms(*doors) + HALF_DROPOFF_MS)
    waiting = [(picked + s * 1000, (KITCHEN[0] + 0.00001, KITCHEN[1])) for s in range(0, 120, 10)]
    for now, fix in waiting + ride(leave, KITCHEN, east(400)):
        got = route_times(MODEL, now, fix, None, None, doors, collected=(KITCHEN, picked)).dropoffs
        assert all(abs(t - p) <= 1000 for t, p in zip(got, planned)), (now - picked, fix, got, planned)


def test_a_door_near_the_restaurant_counts_down() -> None:
    """A door within 250 m of the restaurant: the ETA holds from the pickup to the door, and
    the report at the door keeps it."""
    picked, door = 1_000_000, east(200)
    leave = picked + HALF_PICKUP_MS
    planned = leave + MODEL.leg_ms(KITCHEN, door) + HALF_DROPOFF_MS
    trip = [(picked, KITCHEN), (picked + 60_000, KITCHEN)] + ride(leave, KITCHEN, door)
    for now, fix in trip:
        got = route_times(MODEL, now, fix, None, None, [door], collected=(KITCHEN, picked)).dropoffs
        assert abs(got[0] - planned) <= 1000, (now - picked, fix, got[0] - planned)
    reached = trip[-1][0]
    at_door = route_times(MODEL, reached + 30_000, door, None, None, [door], collected=(KITCHEN, picked),
                          at_dropoff_ms=reached)
    assert abs(at_door.dropoffs[0] - planned) <= 1000


def test_a_rider_still_at_the_counter_after_its_departure_is_late() -> None:
    """The counter rule is a floor: a rider still there after the model's departure is late,
    and its ETA moves with it (from its fix)."""
    picked, door = 1_000_000, east(1500)
    planned = picked + HALF_PICKUP_MS + MODEL.leg_ms(KITCHEN, door) + HALF_DROPOFF_MS
    for late_s in (0, 30, 90):
        now = picked + HALF_PICKUP_MS + late_s * 1000
        got = route_times(MODEL, now, KITCHEN, None, None, [door], collected=(KITCHEN, picked)).dropoffs[0]
        assert abs(got - (planned + late_s * 1000)) <= 1, (late_s, got - planned)


def test_a_bundles_later_drop_after_an_earlier_one_near_the_restaurant() -> None:
    """Two doors 200 m and 400 m east: once the first is delivered the rider rides on from
    that door, not from the restaurant 200 m behind it (the second ETA was up to 40 s late
    while the rider was within 250 m of the restaurant)."""
    picked, doors = 1_000_000, [east(200), east(400)]
    leave = picked + HALF_PICKUP_MS
    reached = leave + MODEL.leg_ms(KITCHEN, doors[0])
    delivered = reached + HALF_DROPOFF_MS
    planned = delivered + HALF_DROPOFF_MS + MODEL.leg_ms(*doors) + HALF_DROPOFF_MS  # as planned at the pickup
    before = route_times(MODEL, picked, KITCHEN, None, None, doors, collected=(KITCHEN, picked)).dropoffs
    assert abs(before[1] - planned) <= 1000
    at_door = route_times(MODEL, reached + 10_000, doors[0], None, None, doors, collected=(KITCHEN, picked),
                          at_dropoff_ms=reached).dropoffs
    assert abs(at_door[1] - planned) <= 1000
    for now, fix in ride(delivered + HALF_DROPOFF_MS, doors[0], doors[1]):  # the second order alone now
        got = route_times(MODEL, now, fix, None, None, [doors[1]], collected=(KITCHEN, picked)).dropoffs[0]
        assert abs(got - planned) <= 1000, (now - picked, fix, got - planned)


def test_a_bundles_later_drop_holds_while_the_rider_is_at_the_door_it_delivered_at() -> None:
    """Two doors 1500 m and 1700 m east: at the first order's ``delivered`` the second's ETA is
    the one planned before it (it jumped half a drop-off service earlier, then slid back a
    second per second while the rider stood at that door), stays put while the rider waits
    out the service's second half there, and holds as the rider rides on."""
    picked, doors = 1_000_000, [east(1500), east(1700)]
    reached = picked + HALF_PICKUP_MS + MODEL.leg_ms(KITCHEN, doors[0])
    at_door = route_times(MODEL, reached + 10_000, doors[0], None, None, doors, collected=(KITCHEN, picked),
                          at_dropoff_ms=reached).dropoffs
    delivered = reached + HALF_DROPOFF_MS
    planned = delivered + HALF_DROPOFF_MS + MODEL.leg_ms(*doors) + HALF_DROPOFF_MS
    assert abs(at_door[1] - planned) <= 1000
    standing = [(delivered + s * 1000, (doors[0][0] + 0.00001, doors[0][1])) for s in range(0, 121, 10)]
    for now, fix in standing + ride(delivered + HALF_DROPOFF_MS, doors[0], doors[1]):  # the second order alone
        got = route_times(MODEL, now, fix, None, None, [doors[1]], collected=(KITCHEN, picked),
                          delivered=(doors[0], delivered)).dropoffs[0]
        assert abs(got - at_door[1]) <= 1000, (now - delivered, fix, got - at_door[1])


def test_a_rider_still_at_the_door_after_its_departure_is_late() -> None:
    """The door rule is a floor too: a rider still at the door it delivered at after the
    model's departure is late, and its next ETA moves with it (from its fix)."""
    delivered, doors = 1_000_000, [east(1500), east(1700)]
    planned = delivered + HALF_DROPOFF_MS + MODEL.leg_ms(*doors) + HALF_DROPOFF_MS
    for late_s in (0, 30, 90):
        now = delivered + HALF_DROPOFF_MS + late_s * 1000
        got = route_times(MODEL, now, doors[0], None, None, [doors[1]], delivered=(doors[0], delivered)).dropoffs[0]
        assert abs(got - (planned + late_s * 1000)) <= 1, (late_s, got - planned)
