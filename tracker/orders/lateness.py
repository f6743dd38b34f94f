"""Which orders are running late, sans-I/O: the ops page's "Deliveries running late" list.

An order is due ``target`` after its clock started (``TRACKER_ON_TIME_TARGET_MIN``, the on-time
share's target; :func:`clock_start_ms`: its placement, or for an order scheduled ahead with a
``ready_at``, when its kitchen would start on it). Until it ends it is

- ``overdue`` once its due time has passed, whatever its status;
- ``predicted`` when its due time is still ahead but its expected drop-off is past it: the
  rider's live ETA while a rider carries it, the dispatcher's planned one while it waits.

Only orders due within ``WARNING_MIN`` are judged ``predicted`` (the read stays bounded
however many orders are on the road): an order whose due time is further away than that is
not listed yet, whatever its ETA says.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

from tracker.orders.food_ready import expected_ready_ms
from tracker.orders.machine import FINAL

WARNING_MIN = 15.0  # how far ahead of its due time an order's ETA is looked at


def clock_start_ms(placed_at: int, ready_at: int | None, prep_minutes: float | None, default_prep_min: float) -> int:
    """When a new order's click-to-door clock starts (server ms), fixed at its creation. Given
    the ``ready_at`` of an order created ``scheduled`` (its food wanted then, not as soon as it
    can be made; ``None`` for any other order): when its preparation would begin, that ready
    time less its ``prep_minutes`` (``default_prep_min``, ``TRACKER_DEFAULT_PREP_MIN``, when it
    gave none), but never before its placement; else its placement. A slow kitchen's order (a
    ``ready_at`` 45 minutes out, not scheduled) is timed from its placement: its customer waits
    all of it. One scheduled hours ahead is neither late nor counted slow for the hours it waited by design.
    (Fixed at creation: a kitchen's ``delay`` later moves ``ready_at``, and must not move the
    clock the delay makes the order late against.)"""
    if ready_at is None:
        return placed_at
    prep = default_prep_min if prep_minutes is None else prep_minutes
    return max(placed_at, ready_at - int(prep * 60_000))


def clock_start(order: Mapping[str, Any]) -> int | None:
    """An order's clock start (a stored hash or its wire form): ``clock_start_at``, else its
    ``placed_at`` (orders created before the start was stored started when placed). The counts'
    Lua (:mod:`tracker.orders.counts`) reads the record by the same rule."""
    for name in ("clock_start_at", "placed_at"):
        value = order.get(name)
        if value not in (None, ""):
            return int(value)
    return None


def expected_dropoff(order: dict[str, Any]) -> int | None:
    """When the order is expected at its customer (server ms), if anyone knows."""
    return order.get("eta") or order.get("planned_eta")


def kitchen_stamps(order: dict[str, Any]) -> dict[str, int | None]:
    """The kitchen's latest ``delay`` and its ``ready`` (ts, ``None`` when it gave none): an order
    delayed and not ready since is held up by its kitchen."""
    return {"food_delayed_at": order.get("food_delayed_at"), "food_ready_at": order.get("food_ready_at")}


def late_row(order: dict[str, Any], now_ms: int, target_ms: int) -> dict[str, Any] | None:
    """The order (wire form) as the late list shows it, or ``None`` when it is not late."""
    start = clock_start(order)
    if order["status"] in FINAL or start is None:
        return None
    due = start + target_ms
    expected = expected_dropoff(order)
    if now_ms > due:
        late = "overdue"
    elif expected is not None and expected > due:
        late = "predicted"
    else:
        return None
    return {"id": order["id"], "merchant_id": order["merchant_id"], "status": order["status"],
            "rider_id": order.get("rider_id"), "placed_at": order["placed_at"], "clock_start_at": start, "due_at": due,
            "expected_at": expected, "ready_at": expected_ready_ms(order), **kitchen_stamps(order), "late": late}


def running_late(orders: Iterable[dict[str, Any]], now_ms: int, target_ms: int) -> list[dict[str, Any]]:
    """The late ones of ``orders``, the longest overdue first (then the soonest due)."""
    rows = [row for row in (late_row(o, now_ms, target_ms) for o in orders) if row is not None]
    return sorted(rows, key=lambda r: (r["due_at"], r["id"]))
