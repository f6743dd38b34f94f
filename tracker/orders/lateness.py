"""Which orders are running late, sans-I/O: the ops page's "Deliveries running late" list.

An order is due ``target`` after it was placed (``TRACKER_ON_TIME_TARGET_MIN``, the on-time
share's target). Until it ends it is

- ``overdue`` once its due time has passed, whatever its status;
- ``predicted`` when its due time is still ahead but its expected drop-off is past it: the
  rider's live ETA while a rider carries it, the dispatcher's planned one while it waits.

Only orders due within ``WARNING_MIN`` are judged ``predicted`` (the read stays bounded
however many orders are on the road): an order whose due time is further away than that is
not listed yet, whatever its ETA says.
"""
from __future__ import annotations

from typing import Any, Iterable

from tracker.orders.food_ready import expected_ready_ms
from tracker.orders.machine import FINAL

WARNING_MIN = 15.0  # how far ahead of its due time an order's ETA is looked at


def expected_dropoff(order: dict[str, Any]) -> int | None:
    """When the order is expected at its customer (server ms), if anyone knows."""
    return order.get("eta") or order.get("planned_eta")


def kitchen_stamps(order: dict[str, Any]) -> dict[str, int | None]:
    """The kitchen's latest ``delay`` and its ``ready`` (ts, ``None`` when it gave none): an order
    delayed and not ready since is held up by its kitchen."""
    return {"food_delayed_at": order.get("food_delayed_at"), "food_ready_at": order.get("food_ready_at")}


def late_row(order: dict[str, Any], now_ms: int, target_ms: int) -> dict[str, Any] | None:
    """The order (wire form) as the late list shows it, or ``None`` when it is not late."""
    if order["status"] in FINAL or order.get("placed_at") is None:
        return None
    due = order["placed_at"] + target_ms
    expected = expected_dropoff(order)
    if now_ms > due:
        late = "overdue"
    elif expected is not None and expected > due:
        late = "predicted"
    else:
        return None
    return {"id": order["id"], "merchant_id": order["merchant_id"], "status": order["status"],
            "rider_id": order.get("rider_id"), "placed_at": order["placed_at"], "due_at": due,
            "expected_at": expected, "ready_at": expected_ready_ms(order), **kitchen_stamps(order), "late": late}


def running_late(orders: Iterable[dict[str, Any]], now_ms: int, target_ms: int) -> list[dict[str, Any]]:
    """The late ones of ``orders``, the longest overdue first (then the soonest due)."""
    rows = [row for row in (late_row(o, now_ms, target_ms) for o in orders) if row is not None]
    return sorted(rows, key=lambda r: (r["due_at"], r["id"]))
