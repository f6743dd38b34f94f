"""The wire form of an order, sans-I/O: what ``GET /v1/orders/{id}`` shows, and the part of it
a rider's frames carry, from the stored hash."""
from __future__ import annotations

from typing import Any

from tracker.orders import machine
from tracker.orders.food_ready import expected_ready_ms
from tracker.orders.lateness import clock_start

# Timestamp field set on the order when an event of this kind happens.
STAMP = {
    "confirmed": "confirmed_at", "assigned": "assigned_at", "at_pickup": "at_pickup_at",
    "picked_up": "picked_up_at", "at_dropoff": "at_dropoff_at", "delivered": "delivered_at",
    "cancelled": "cancelled_at", "failed": "failed_at", "food_ready": "food_ready_at",
    "food_delayed": "food_delayed_at",  # (the latest delay's)
}


def wire(order: dict[str, str], events: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The order as ``GET /v1/orders/{id}`` shows it."""
    def num(name: str) -> int | None:
        return int(order[name]) if order.get(name) else None

    out: dict[str, Any] = {
        "id": order["id"], "status": order["status"], "merchant_id": order["merchant_id"],
        "rider_id": order.get("rider_id") or None,
        "pickup": {"lat": float(order["pickup_lat"]), "lng": float(order["pickup_lng"])},
        "dropoff": {"lat": float(order["drop_lat"]), "lng": float(order["drop_lng"])},
        "eta": num("eta") if order["status"] in machine.CARRYING else None,  # only while a rider has it
        "pickup_eta": num("pickup_eta") if order["status"] in machine.TO_COLLECT else None,
        # the dispatcher's plan while the order waits for a rider (orders/estimate.py)
        "planned_eta": num("planned_eta") if order["status"] == "confirmed" and not order.get("rider_id") else None,
        "placed_at": num("placed_at"), "ready_at": num("ready_at"),
        # when its click-to-door clock started: the due time and the service figures count from it
        "clock_start_at": clock_start(order),
        "prep_minutes": float(order["prep_minutes"]) if order.get("prep_minutes") else None,
        # when the food is expected, by the rule dispatch plans with (orders/food_ready.py)
        "expected_ready_at": expected_ready_ms(order),
    }
    for stamp in STAMP.values():
        if order.get(stamp):
            out[stamp] = int(order[stamp])
    if events is not None:
        out["events"] = events
    return out


def rider_order(order: dict[str, Any]) -> dict[str, Any]:
    """An order (wire form) as a rider's frames show it: ``order_id``, ``merchant_id``, ``pickup``, ``dropoff``."""
    return {"order_id": order["id"], "merchant_id": order["merchant_id"], "pickup": order["pickup"],
            "dropoff": order["dropoff"]}
