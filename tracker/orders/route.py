"""The order a rider will serve its orders in (sans-I/O), for its ETAs, prompts and route frame."""
from __future__ import annotations

from tracker.orders.machine import TO_COLLECT

Order = dict[str, str]  # an order's raw hash


def rider_trips(orders: list[Order]) -> list[list[Order]]:
    """A rider's orders as the trips it will make, in order: the restaurant it says it is at
    (``at_pickup``) first, then the drop-offs of what it has picked up, then one trip per
    restaurant still to visit, by assignment time; each its pickup then its drop-offs. (An
    order picked up from a bundle whose other orders are still to collect stays in their trip.)

    Within a trip, orders go by bundle (the bundle assigned first first) and then by their
    delivery sequence (``route_seq``), so an add-on takes the place its bundle gave it; an order
    whose door the rider says it is at (``at_dropoff``) comes first in its trip. Dispatch
    gives a rider one restaurant at a time; an operator may hand it another's order on top, and
    that trip then starts where the first one ends.
    """
    first_assigned: dict[str, int] = {}
    for h in orders:
        bundle = h.get("bundle") or h["id"]
        first_assigned[bundle] = min(first_assigned.get(bundle, 1 << 62), int(h.get("assigned_at") or 0))
    # A bundle partly collected (one bag in hand, the rest still at the counter) leaves the
    # restaurant whole: its collected orders stay in that trip, in their place in the sequence.
    uncollected_bundles = {h.get("bundle") or h["id"] for h in orders if h["status"] in TO_COLLECT}
    trips: dict[tuple[bool, str], list[Order]] = {}
    for h in orders:
        collected = h["status"] not in TO_COLLECT and (h.get("bundle") or h["id"]) not in uncollected_bundles
        trips.setdefault((collected, "" if collected else h["merchant_id"]), []).append(h)

    def sequence(h: Order) -> tuple[int, str, int, str]:
        bundle = h.get("bundle") or h["id"]
        return first_assigned[bundle], bundle, int(h.get("route_seq") or 0), h["id"]

    def when(key: tuple[bool, str]) -> tuple[bool, bool, int]:
        trip = trips[key]
        at_pickup = any(h["status"] == "at_pickup" for h in trip)
        return not at_pickup, not key[0], min(sequence(h)[0] for h in trip)

    def delivery_order(h: Order) -> tuple[bool, tuple[int, str, int, str]]:
        # The door the rider says it is at comes first, whatever the sequence said.
        return h["status"] != "at_dropoff", sequence(h)

    return [sorted(trips[key], key=delivery_order) for key in sorted(trips, key=when)]
