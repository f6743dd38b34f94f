"""Replay an MDRP day offline: a simulated clock, the production planner, the MDRP timing rules.

Orders appear at their placement time (with their ready time, the kitchen's estimate, known
then); couriers come on and go off shift at their times; every ``interval`` minutes the
planner (:func:`tracker.dispatch.planner.plan`, the one the live server runs) sees the open
orders and the couriers, as WGS84 positions around a fixed origin; its offers are accepted
and executed by the rules of the instance README: travel ``ceil(distance / speed)``, pickup at
the later of arrival plus half the pickup service and the latest ready time, drop-offs in
sequence each half a service after arrival, couriers waiting at their last drop-off.

An add-on offer (more orders of the restaurant a courier is heading to, ready by its pickup)
rewrites that courier's pending assignment: same pickup, the new drop-off sequence, the
assignment time now (the evaluator reads it as the time the bundle was last changed; the move
towards the restaurant keeps its start). Couriers are announced to the planner
``shift_notice_min`` before their shift and the planner sees every restaurant's order count
so far: what a live platform knows too.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from tracker.dispatch.model import DemandSite, Offer, OrderView, Plan, RiderView, Snapshot
from tracker.dispatch.planner import Policy, plan
from tracker.geo import LocalProjection
from tracker.mdrp.instance import Instance

EPOCH_MS = 1_700_000_000_000  # instance minute 0 in server time
ORIGIN = (40.7128, -74.0060)  # instances' planar metres are placed around this point
MS_PER_MIN = 60_000


def to_ms(minute: float) -> int:
    """Server time (ms) of instance minute ``minute``; minute 0 is ``EPOCH_MS``."""
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
    pending: Assignment | None = None  # its last assignment, while not yet picked up
    pending_moves: int = 0  # where that assignment's moves after the restaurant begin
    view: tuple | None = None  # (state key, RiderView, held OrderViews) from the last round  # type: ignore[type-arg]


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
    depart = max(now, courier.free_at)
    arrive = depart + instance.travel((courier.x, courier.y), instance.restaurants[rest])
    pickup = max(arrive + p.pickup_service / 2, max(instance.orders[o].ready for o in order_ids))
    if pickup > instance.couriers[courier.id].off:
        return None
    courier.moves.append((depart, courier.label, rest))
    return _leave_restaurant(instance, courier, order_ids, now, pickup)


def can_grow(instance: Instance, courier: CourierState, order_ids: tuple[str, ...], now: float) -> bool:
    """True if the courier's uncollected bundle can become ``order_ids`` without moving its pickup."""
    held = courier.pending
    return (held is not None and held.pickup > now and set(held.orders) <= set(order_ids)
            and max(instance.orders[o].ready for o in order_ids) <= held.pickup)


def grow(instance: Instance, courier: CourierState, order_ids: tuple[str, ...], now: float) -> Assignment | None:
    """Replace the courier's uncollected bundle by ``order_ids`` (a superset, same pickup)."""
    if not can_grow(instance, courier, order_ids, now):
        return None
    del courier.moves[courier.pending_moves:]
    return _leave_restaurant(instance, courier, order_ids, now, courier.pending.pickup)  # type: ignore[union-attr]


def _leave_restaurant(instance: Instance, courier: CourierState, order_ids: tuple[str, ...], now: float,
                      pickup: float) -> Assignment:
    """The drop-off legs after ``pickup``; the courier ends at the last drop-off."""
    p = instance.params
    rest = instance.orders[order_ids[0]].restaurant
    courier.pending_moves = len(courier.moves)
    moves = []
    leave, here, label = pickup + p.pickup_service / 2, instance.restaurants[rest], rest
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
    courier.pending = Assignment(courier.id, now, pickup, order_ids, tuple(drops))
    return courier.pending


def simulate(instance: Instance, interval_min: float = 0.5, policy: Policy | None = None,
             shift_notice_min: float = 30.0, observe: Callable[[Snapshot, Plan], None] | None = None) -> DayResult:
    """Play the instance's day through the planner; returns what happened.

    ``observe``, if given, sees every round's snapshot and plan before the plan is carried
    out (diagnostics).
    """
    policy = policy or policy_for(instance, interval_min)
    proj = LocalProjection(*ORIGIN)
    restaurants = {r: proj.to_latlng(*xy) for r, xy in instance.restaurants.items()}
    views = {oid: OrderView(oid, o.restaurant, *restaurants[o.restaurant], *proj.to_latlng(o.x, o.y),
                            to_ms(o.placement), to_ms(o.ready))
             for oid, o in instance.orders.items()}
    where = functools.lru_cache(maxsize=4096)(proj.to_latlng)
    couriers = {c.id: CourierState(c.id, c.x, c.y, c.on) for c in instance.couriers.values()}
    pending = sorted(instance.orders.values(), key=lambda o: o.placement)
    open_orders: dict[str, OrderView] = {}
    demand: dict[str, DemandSite] = {}  # the restaurants seen so far, weighted by their orders
    assignments: list[Assignment] = []
    next_placed = 0
    t = math.floor(pending[0].placement) if pending else 0.0
    last_off = max((c.off for c in instance.couriers.values()), default=0.0)
    rounds = 0
    while (next_placed < len(pending) or open_orders) and t <= last_off:
        while next_placed < len(pending) and pending[next_placed].placement <= t:
            o = pending[next_placed]
            open_orders[o.id] = views[o.id]
            seen = demand[o.restaurant].weight if o.restaurant in demand else 0.0
            demand[o.restaurant] = DemandSite(*restaurants[o.restaurant], seen + 1.0)
            next_placed += 1
        if open_orders:
            riders, held = _riders(instance, couriers, views, where, t, shift_notice_min)
            if riders:
                rounds += 1
                snapshot = Snapshot(to_ms(t), ORIGIN[0], ORIGIN[1], tuple(open_orders.values()) + held,
                                    tuple(riders), tuple(demand.values()))
                decision = plan(snapshot, policy)
                if observe is not None:
                    observe(snapshot, decision)
                for offer in decision.offers:
                    done = _accept(instance, couriers[offer.rider_id], offer, t, assignments)
                    if done is not None:
                        for oid in offer.order_ids:
                            open_orders.pop(oid, None)
        t += interval_min
    return DayResult(instance, assignments, {cid: c.moves for cid, c in couriers.items()}, rounds)


def _riders(instance: Instance, couriers: dict[str, CourierState], views: dict[str, OrderView],
            where: Callable[[float, float], tuple[float, float]], t: float, notice_min: float) -> tuple[list[RiderView], tuple[OrderView, ...]]:
    """The couriers the planner sees at ``t`` and the uncollected orders they hold."""
    riders, held = [], []
    for c in instance.couriers.values():
        if not c.on - notice_min <= t < c.off:
            continue
        state = couriers[c.id]
        grows = state.pending if state.pending is not None and state.pending.pickup > t else None
        key = (state.x, state.y, state.free_at, grows)
        if state.view is None or state.view[0] != key:  # the courier changed since last round
            lat, lng = where(state.x, state.y)
            view = RiderView(
                c.id, lat, lng, True, to_ms(c.off), busy_until_ms=to_ms(state.free_at),
                route=grows.orders if grows else (), pickup_at_ms=to_ms(grows.pickup) if grows else None,
                shift_start_ms=to_ms(c.on),
            )
            state.view = (key, view, tuple(replace(views[oid], rider_id=c.id) for oid in grows.orders) if grows else ())
        riders.append(state.view[1])
        held.extend(state.view[2])
    return riders, tuple(held)


def _accept(instance: Instance, courier: CourierState, offer: Offer, t: float,
            assignments: list[Assignment]) -> Assignment | None:
    """Carry out an offer: a fresh assignment, or an add-on replacing the courier's pending one."""
    if offer.joins:
        held = courier.pending
        done = grow(instance, courier, offer.order_ids, t)
        if done is not None:
            assignments[assignments.index(held)] = done
        return done
    done = execute(instance, courier, offer.order_ids, t)
    if done is not None:
        assignments.append(done)
    return done
