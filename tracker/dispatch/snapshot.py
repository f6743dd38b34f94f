"""Build the planner's view of one dispatch region from Redis (the loop's read side)."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass

import h3

from tracker.dispatch.model import OrderView, RiderView
from tracker.dispatch.offers import OfferStore
from tracker.locations import nearby
from tracker.orders import load_order, open_orders_key, rider_orders_key
from tracker.runtime import Runtime

MAX_ORDERS_PER_ROUND = 5000
MAX_RIDERS_PER_ROUND = 5000
PICKUP_GROUP_RES = 7


@dataclass
class RegionLoad:
    """What a round plans over: dispatchable orders (with riders cooling down) and free riders."""

    orders: tuple[OrderView, ...]
    riders: tuple[RiderView, ...]


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
        ready_at_ms=order.get("ready_at") or order["placed_at"],
        rider_id=None,
        picked_up=False,
        committed=False,
        blocked_riders=blocked,
    )


async def riders_near_pickups(rt: Runtime, orders: list[dict], *, now_ms: int, radius_m: float) -> list:
    """Available riders within ``radius_m`` of any order's restaurant, each once.

    Restaurants are grouped by a res-:data:`PICKUP_GROUP_RES` H3 cell and searched from the
    cell's centre with the radius widened by the cell's size, one search per group.
    """
    groups = {h3.latlng_to_cell(o["pickup"]["lat"], o["pickup"]["lng"], PICKUP_GROUP_RES) for o in orders}
    widen = h3.average_hexagon_edge_length(PICKUP_GROUP_RES, unit="m")
    results = await asyncio.gather(
        *(
            nearby(rt.redis, *h3.cell_to_latlng(cell), radius_m + widen, MAX_RIDERS_PER_ROUND,
                   now_ms=now_ms, stale_after_ms=int(rt.settings.stale_after_s * 1000), only_available=True)
            for cell in groups
        )
    )
    seen: dict[str, object] = {}
    for riders in results:
        for rider in riders:
            seen.setdefault(rider.id, rider)
    return list(seen.values())


async def load_region(rt: Runtime, store: OfferStore, region: str, *, now_ms: int, radius_m: float) -> RegionLoad:
    """Confirmed orders of ``region`` not on offer, and available riders with nothing to do.

    The ``open:{region}`` index is a hint; each order's own record decides.
    """
    ids = await rt.redis.zrange(open_orders_key(region), 0, MAX_ORDERS_PER_ROUND - 1)
    loaded = await asyncio.gather(*(load_order(rt, oid) for oid in ids))
    orders = [o for o in loaded if o is not None and o["status"] == "confirmed" and not o.get("rider_id")]
    pairs = [(o["merchant_id"], o["id"]) for o in orders]
    on_offer = await store.locked(pairs)
    orders = [o for o in orders if o["id"] not in on_offer]
    if not orders:
        return RegionLoad((), ())
    found = await riders_near_pickups(rt, orders, now_ms=now_ms, radius_m=radius_m)
    rider_ids = [r.id for r in found]
    busy = await store.riders_with_offers(rider_ids)
    pipe = rt.redis.pipeline(transaction=False)
    for rid in rider_ids:
        pipe.scard(rider_orders_key(rid))
    carrying = {rid for rid, n in zip(rider_ids, await pipe.execute()) if n}
    riders = tuple(
        RiderView(id=r.id, lat=r.lat, lng=r.lng, available=True, shift_end_ms=r.shift_end, route=(), busy_until_ms=now_ms)
        for r in found
        if r.id not in busy and r.id not in carrying
    )
    blocked = await store.blocked_riders([(o["merchant_id"], o["id"]) for o in orders], now_ms)
    views = tuple(order_view(o, frozenset(blocked.get(o["id"], ()))) for o in orders)
    return RegionLoad(views, riders)
