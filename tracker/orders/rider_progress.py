"""The rider's ``progress`` message: at_pickup, picked_up, at_dropoff, delivered."""
from __future__ import annotations

from typing import Any

from tracker.errors import ApiError
from tracker.orders import service
from tracker.orders.machine import RIDER_STEPS
from tracker.orders.store import store_of
from tracker.riders.endpoint import RiderConnection, handles
from tracker.validate import require_id


@handles("progress")
async def progress(conn: RiderConnection, msg: dict[str, Any]) -> None:
    """Move an order assigned to this rider one step on; any other order id (another rider's, or
    none at all) is ``forbidden``, so ids cannot be probed."""
    order_id = require_id(msg, "order_id")
    step = msg.get("step")
    if step not in RIDER_STEPS:
        raise ApiError("bad_message", f"'step' must be one of {', '.join(RIDER_STEPS)}")
    raw = await store_of(conn.runtime).load(order_id)
    if raw is None or raw.get("rider_id") != conn.rider_id:  # unknown or not its own: the same answer
        raise ApiError("forbidden", f"order {order_id!r} is not assigned to this rider")
    await service.step(conn.runtime, [order_id], step, merchant_id=raw["merchant_id"], rider=conn.rider_id,
                       event_extra={"rider_id": conn.rider_id})
