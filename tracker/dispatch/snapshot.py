"""Build the planner's view of one dispatch region from Redis (the loop's read side)."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from typing import Any

import h3

from tracker.dispatch.model import OrderView, RiderView
from tracker.dispatch.offers import OfferStore
from tracker.geo import haversine_m
from tracker.locations.nearby import nearby
from tracker.orders import load_orders, open_orders_key, rider_orders_key
from tracker.orders.estimate import Waiting
from tracker.orders.food_ready import expected_ready_ms
from tracker.orders.machine import CARRYING, TO_COLLECT
from tracker.runtime import Runtime

MAX_ORDERS_PER_ROUND = 5000
MAX_RIDERS_PER_ROUND = 5000
SEARCHES_AT_ONCE = 16  # concurrent rider searches of one round (each holds a Redis connection)
PICKUP_GROUP_RES = 7


@dataclass
class RegionLoad:
    """What a round plans over: dispatchable orders (with riders cooling down), the riders'
    uncollected orders that may still be joined by more, and the riders; and the same orders
    with the estimate their customers were last told."""

    orders: tuple[OrderView, ...]
    riders: tuple[RiderView, ...]
    held: tuple[OrderView, ...] = ()
    waiting: tuple[Waiting, ...] = ()


def order_view(order: dict, blocked: frozenset[str] = frozenset()) -> OrderView:
    """The planner's view of an order as :func:`tracker.orders.load_order` returns it."""
    return OrderView(
        id=order["id"],
        merchant_id=order["merchant_id"],
        pickup_lat=order["pickup"]["lat"],
        pickup_lng=order["pickup"]["lng"],
        drop_lat=order["dropoff"]["lat"],
        drop_lng=order["dropoff"]["lng"],
        placed_at_ms=order["placed_at"],
        # what the kitchen said (ready, a ready time, its preparation time from confirmation);
        # with nothing said, the food counts as ready when placed
        ready_at_ms=expected_ready_ms(order) or order["placed_at"],
        rider_id=None,
        picked_up=False,
        blocked_riders=blocked,
    )


async def riders_near_pickups(rt: Runtime, orders: list[dict], *, now_ms: int, radius_m: float) -> list:
    """Available riders within ``radius_m`` of any order's restaurant, each once.

    Restaurants are grouped by a res-:data:`PICKUP_GROUP_RES` H3 cell and searched from the
    cell's centre, one search per group, with the radius widened by the group's farthest
    restaurant from that centre: a rider within ``radius_m`` of a restaurant is then within the
    widened radius of the centre (great-circle distance obeys the triangle inequality), however
    far the cell's corners reach (up to about 1.55 km at res 7, above its average edge).
    """
    groups: dict[str, float] = {}  # cell -> its farthest restaurant from the cell's centre, metres
    for o in orders:
        lat, lng = o["pickup"]["lat"], o["pickup"]["lng"]
        cell = h3.latlng_to_cell(lat, lng, PICKUP_GROUP_RES)
        reach = haversine_m(*h3.cell_to_latlng(cell), lat, lng)
        groups[cell] = max(groups.get(cell, 0.0), reach)
    cells = sorted(groups)
    results = []
    for at in range(0, len(cells), SEARCHES_AT_ONCE):  # a few at a time: each holds a connection
        results += await asyncio.gather(
            *(
                nearby(rt.redis, *h3.cell_to_latlng(cell), radius_m + groups[cell] + 1.0, MAX_RIDERS_PER_ROUND,
                       now_ms=now_ms, stale_after_ms=int(rt.settings.stale_after_s * 1000), only_available=True)
                for cell in cells[at:at + SEARCHES_AT_ONCE]
            )
        )
    seen: dict[str, object] = {}
    for riders in results:
        for rider in riders:
            seen.setdefault(rider.id, rider)
    return list(seen.values())


@dataclass(frozen=True)
class RouteEnd:
    """Where and when a rider will be free, and its route's pickup while that can still grow."""

    lat: float
    lng: float
    free_at: int
    route: tuple[str, ...]  # order ids, by drop-off estimate
    pickup_at: int | None  # set while every order is uncollected, all of one restaurant
    held: tuple[OrderView, ...]  # the route's orders when ``pickup_at`` is set


async def carried_orders(rt: Runtime, order_sets: dict[str, set[str]]) -> dict[str, list[dict[str, Any]]]:
    """For each rider, those of its order set (a hint) that it really carries now; all riders'
    orders loaded at once."""
    ids = sorted(set().union(*order_sets.values()))
    by_id = {o["id"]: o for o in await load_orders(rt, ids) if o is not None and o["status"] in CARRYING}
    return {rid: [by_id[oid] for oid in sorted(oids) if oid in by_id and by_id[oid]["rider_id"] == rid]
            for rid, oids in order_sets.items()}


def route_end(rider_id: str, orders: list[dict[str, Any]], now_ms: int, dropoff_service_s: float) -> RouteEnd | None:
    """Where and when ``rider_id`` carrying ``orders`` (wire form, at least one) will be free: its
    last drop-off, after it.

    Uses the orders' live ``eta`` and ``pickup_eta`` (estimates kept by the orders feature);
    ``None`` when an estimate is missing (the rider is then left out of this round).
    """
    if any(o["eta"] is None for o in orders):
        return None
    last = max(orders, key=lambda o: o["eta"])
    free_at = max(now_ms, last["eta"] + int(dropoff_service_s * 500))
    ordered = sorted(orders, key=lambda o: o["eta"])
    pickups = [o["pickup_eta"] for o in orders]
    pickup_at = None
    if all(o["status"] in TO_COLLECT for o in orders) and len({o["merchant_id"] for o in orders}) == 1 \
            and None not in pickups and max(pickups) > now_ms:
        pickup_at = max(pickups)
    held = () if pickup_at is None else tuple(replace(order_view(o), rider_id=rider_id) for o in ordered)
    return RouteEnd(last["dropoff"]["lat"], last["dropoff"]["lng"], free_at, tuple(o["id"] for o in ordered),
                    pickup_at, held)


async def load_region(rt: Runtime, store: OfferStore, region: str, *, now_ms: int, radius_m: float) -> RegionLoad:
    """Confirmed orders of ``region`` not on offer, and available riders near them.

    Riders considering an offer are left out; riders carrying orders are planned from the end
    of their current route (the planner commits to them only if they are free by next round),
    and those still on the way to collect one restaurant's orders may get add-ons.

    The ``open:{region}`` index is a hint; each order's own record decides.
    """
    ids = await rt.redis.zrange(open_orders_key(region), 0, MAX_ORDERS_PER_ROUND - 1)
    loaded = await load_orders(rt, ids)  # (one request per order would take a connection each)
    orders = [o for o in loaded if o is not None and o["status"] == "confirmed" and not o.get("rider_id")]
    pairs = [(o["merchant_id"], o["id"]) for o in orders]
    on_offer = await store.locked(pairs)
    orders = [o for o in orders if o["id"] not in on_offer]
    if not orders:
        return RegionLoad((), ())
    found = await riders_near_pickups(rt, orders, now_ms=now_ms, radius_m=radius_m)
    rider_ids = [r.id for r in found]
    considering = await store.riders_with_offers(rider_ids)
    pipe = rt.redis.pipeline(transaction=False)
    for rid in rider_ids:
        pipe.smembers(rider_orders_key(rid))
    routes = await carried_orders(rt, dict(zip(rider_ids, await pipe.execute())))
    riders = []
    held: list[OrderView] = []
    for r in found:
        if r.id in considering:
            continue
        carried = routes[r.id]
        if not carried:  # (an order left in its set by a lost write does not make it busy)
            riders.append(RiderView(r.id, r.lat, r.lng, True, r.shift_end, busy_until_ms=now_ms,
                                    shift_start_ms=r.shift_start))
            continue
        end = route_end(r.id, carried, now_ms, rt.settings.dropoff_service_s)
        if end is not None:  # planned from where and when its current route ends
            riders.append(RiderView(r.id, end.lat, end.lng, True, r.shift_end, route=end.route,
                                    busy_until_ms=end.free_at, pickup_at_ms=end.pickup_at, shift_start_ms=r.shift_start))
            held.extend(end.held)
    blocked = await store.blocked_riders([(o["merchant_id"], o["id"]) for o in orders], now_ms)
    views = tuple(order_view(o, frozenset(blocked.get(o["id"], ()))) for o in orders)
    waiting = tuple(Waiting(o["merchant_id"], o["id"], o["planned_eta"]) for o in orders)
    return RegionLoad(views, tuple(riders), tuple(held), waiting)
