"""The order lifecycle as a sans-I/O state machine (PROTOCOL.md, "Order lifecycle").

``status`` moves placed -> confirmed -> assigned -> at_pickup -> picked_up -> at_dropoff ->
delivered; ``cancelled`` from any state before ``picked_up``; ``failed`` (the operator's word
that the delivery will not happen: the rider vanished with the food) from ``picked_up`` or
``at_dropoff``; ``assigned`` (or ``at_pickup``) back to ``confirmed`` by ``rider_unassigned``.
``food_ready`` / ``food_delayed`` run beside it until the food is picked up, and stop once the
food is ready. Every accepted step is one
durable event whose ``kind`` names it.
"""
from __future__ import annotations

from typing import Any, Mapping

from tracker.errors import ApiError

STATUSES = ("placed", "confirmed", "assigned", "at_pickup", "picked_up", "at_dropoff", "delivered", "cancelled",
            "failed")
BEFORE_PICKUP = ("placed", "confirmed", "assigned", "at_pickup")
FINAL = ("delivered", "cancelled", "failed")
ON_THE_ROAD = ("picked_up", "at_dropoff")  # the food is with the rider: it ends delivered or failed
RIDER_STEPS = ("at_pickup", "picked_up", "at_dropoff", "delivered")
CARRYING = ("assigned", "at_pickup", "picked_up", "at_dropoff")
TO_COLLECT = ("assigned", "at_pickup")  # the rider's, food not yet picked up


def carried_by(order: Mapping[str, Any] | None, rider_id: str) -> bool:
    """Whether the order (a stored hash; ``None`` for none) is ``rider_id``'s to carry now."""
    return order is not None and order.get("rider_id") == rider_id and order.get("status") in CARRYING


# event kind -> (statuses it may happen in, status after it; None keeps the status)
RULES: dict[str, tuple[tuple[str, ...], str | None]] = {
    "placed": ((), "placed"),
    "confirmed": (("placed",), "confirmed"),
    "assigned": (("confirmed",), "assigned"),
    "at_pickup": (("assigned",), "at_pickup"),
    "picked_up": (("at_pickup",), "picked_up"),
    "at_dropoff": (("picked_up",), "at_dropoff"),
    "delivered": (("at_dropoff",), "delivered"),
    "cancelled": (BEFORE_PICKUP, "cancelled"),
    "failed": (ON_THE_ROAD, "failed"),
    "rider_unassigned": (TO_COLLECT, "confirmed"),
    "food_ready": (BEFORE_PICKUP, None),
    "food_delayed": (BEFORE_PICKUP, None),
}
# Refused once the food is ready (a second ``ready``, a ``delay`` after it): the order's
# ``food_ready_at`` stamp, set by ``food_ready``, is checked in the same atomic step.
NOT_AFTER_FOOD_READY = ("food_ready", "food_delayed")
FOOD_READY = ("food_ready_at", "the food is already ready")  # (the stamp, why the event is refused)
# Steps an order takes at most once (its stamp stays): a refused one the order already took is
# answered as such (``already``), so a press repeated after an uncertain answer reads "done".
TAKEN_ONCE = ("confirmed", "at_pickup", "picked_up", "at_dropoff", "delivered", "cancelled", "failed", "food_ready")


def allowed_from(kind: str) -> tuple[str, ...]:
    """The statuses in which an event of ``kind`` may happen."""
    if kind not in RULES:
        raise ApiError("bad_message", f"unknown order event kind {kind!r}")
    return RULES[kind][0]


# Steps after which the order is no longer its rider's (the rider is taken from ``last_rider_id``).
LEAVES_RIDER = ("delivered", "cancelled", "failed", "rider_unassigned")


def former_rider(order: dict[str, str], kind: str, event: dict[str, Any]) -> str | None:
    """The rider a step of ``kind`` (in ``LEAVES_RIDER``) took the order from: the one a take-back
    names (read again after it, the order may already be another rider's), else its last rider."""
    if kind == "rider_unassigned" and event.get("rider_id"):
        return str(event["rider_id"])
    return order.get("last_rider_id") or order.get("rider_id") or None
