"""Replay an MDRP day offline: a simulated clock, the production planner, the MDRP timing rules.

Orders appear at their placement time (with their ready time, the kitchen's estimate, known
then); couriers come on and go off shift at their times; every ``interval`` minutes the
planner (:func:`tracker.dispatch.planner.plan`, the one the live server runs) sees the open
orders and the couriers, as WGS84 positions around a fixed origin; its offers are accepted
and executed by the rules of the instance README: travel ``ceil(distance / speed)``, pickup at
the later of arrival plus half the pickup service and the latest ready time, drop-offs in
sequence each half a service after arrival, couriers waiting at their last drop-off.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from tracker.dispatch.model import OrderView, RiderView, Snapshot
from tracker.dispatch.planner import Policy, plan
from tracker.geo import LocalProjection
from tracker.mdrp.instance import Instance

EPOCH_MS = 1_700_000_000_000  # instance minute 0 in server time
ORIGIN = (40.7128, -74.0060)  # instances' planar metres are placed around this point
MS_PER_MIN = 60_000


def to_ms(minute: float) -> int:
    return int(round(EPOCH_MS + minute * MS_PER_MIN))


@dataclass
class Assignment:
    """One executed assignment (a bundle picked up together)."""

    courier: str
    time: float
    pickup: float
    orders: tuple[str, ...]
    dropoffs: tuple[float, ...]


@dataclass
class CourierState:
    id: str
    x: float
    y: float
    free_at: float
    label: str = "0"  # where it waits: '0' (on-location) or the last order delivered
    moves: list[tuple[float, str, str]] = field(default_factory=list)


@dataclass
class DayResult:
    """What happened: assignments in time order, each courier's moves."""

    instance: Instance
    assignments: list[Assignment]
    moves: dict[str, list[tuple[float, str, str]]]
    rounds: int


def policy_for(instance: Instance, interval_min: float) -> Policy:
    """The planner policy for an instance: its speed and service times."""
    p = instance.params
    return Policy(
        meters_per_minute=p.meters_per_minute, pickup_service_min=p.pickup_service,
        dropoff_service_min=p.dropoff_service, interval_min=interval_min,
    )


def execute(instance: Instance, courier: CourierState, order_ids: tuple[str, ...], now: float) -> Assignment | None:
    """Carry out an accepted offer by the MDRP rules; ``None`` if it breaks the courier's shift."""
    p = instance.params
    rest = instance.orders[order_ids[0]].restaurant
    rxy = instance.restaurants[rest]
    depart = max(now, courier.free_at)
    arrive = depart + instance.travel((courier.x, courier.y), rxy)
    pickup = max(arrive + p.pickup_service / 2, max(instance.orders[o].ready for o in order_ids))
    if pickup > instance.couriers[courier.id].off:
        return None
    moves = [(depart, courier.label, rest)]
    leave, here, label = pickup + p.pickup_service / 2, rxy, rest
    drops = []
    for oid in order_ids:
        o = instance.orders[oid]
        moves.append((leave, label, oid))
        reach = leave + instance.travel(here, (o.x, o.y))
        drop = reach + p.dropoff_service / 2
        drops.append(drop)
        leave, here, label = drop + p.dropoff_service / 2, (o.x, o.y), oid
    courier.moves.extend(moves)
    courier.x, courier.y, courier.free_at, courier.label = here[0], here[1], leave, label
    return Assignment(courier.id, now, pickup, order_ids, tuple(drops))


def simulate(instance: Instance, interval_min: float = 0.5, policy: Policy | None = None) -> DayResult:
    """Play the instance's day through the planner; returns what happened."""
    policy = policy or policy_for(instance, interval_min)
    proj = LocalProjection(*ORIGIN)
    latlng = {oid: (proj.to_latlng(*instance.restaurants[o.restaurant]), proj.to_latlng(o.x, o.y))
              for oid, o in instance.orders.items()}
    couriers = {c.id: CourierState(c.id, c.x, c.y, c.on) for c in instance.couriers.values()}
    pending = sorted(instance.orders.values(), key=lambda o: o.placement)
    open_orders: dict[str, OrderView] = {}
    assignments: list[Assignment] = []
    next_placed = 0
    t = math.floor(pending[0].placement) if pending else 0.0
    last_off = max((c.off for c in instance.couriers.values()), default=0.0)
    rounds = 0
    while (next_placed < len(pending) or open_orders) and t <= last_off:
        while next_placed < len(pending) and pending[next_placed].placement <= t:
            o = pending[next_placed]
            (plat, plng), (dlat, dlng) = latlng[o.id]
            open_orders[o.id] = OrderView(o.id, o.restaurant, plat, plng, dlat, dlng, to_ms(o.placement), to_ms(o.ready))
            next_placed += 1
        if open_orders:
            riders = []
            for c in instance.couriers.values():
                state = couriers[c.id]
                if c.on <= t < c.off:
                    lat, lng = proj.to_latlng(state.x, state.y)
                    riders.append(RiderView(c.id, lat, lng, True, to_ms(c.off), busy_until_ms=to_ms(state.free_at)))
            if riders:
                rounds += 1
                snapshot = Snapshot(to_ms(t), ORIGIN[0], ORIGIN[1], tuple(open_orders.values()), tuple(riders))
                for offer in plan(snapshot, policy).offers:
                    done = execute(instance, couriers[offer.rider_id], offer.order_ids, t)
                    if done is not None:
                        assignments.append(done)
                        for oid in offer.order_ids:
                            open_orders.pop(oid, None)
        t += interval_min
    return DayResult(instance, assignments, {cid: c.moves for cid, c in couriers.items()}, rounds)
