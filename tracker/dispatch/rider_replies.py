"""The rider's answers to offers: ``accept`` and ``decline`` on ``/v1/ws/rider``.

Accepting claims the offer (so the expiry sweep cannot race it), assigns all its orders in
one atomic step while they are still locked to the offer, then frees the locks and confirms
with an ``assigned`` frame (an add-on also re-sequences the rider's held orders). Declining
frees the orders for the next round and keeps this rider away from them for
``TRACKER_DECLINE_COOLDOWN_S``.
"""
from __future__ import annotations

from typing import Any

from tracker.dispatch.offers import OfferRecord
from tracker.errors import ApiError
from tracker.orders import assign_orders, still_to_collect
from tracker.riders.endpoint import RiderConnection, handles
from tracker.validate import require_id


async def _own_offer(conn: RiderConnection, msg: dict[str, Any]) -> OfferRecord:
    offer_id = require_id(msg, "offer_id")
    dispatcher = conn.runtime.services["dispatcher"]
    record = await dispatcher.store.load(offer_id)
    if record is None or record.rider_id != conn.rider_id:
        raise ApiError("not_found", f"no open offer {offer_id!r} for this rider (expired, withdrawn or never made)")
    return record


@handles("accept")
async def accept(conn: RiderConnection, msg: dict[str, Any]) -> None:
    """Turn the rider's open offer into an assignment of all its orders."""
    record = await _own_offer(conn, msg)
    dispatcher = conn.runtime.services["dispatcher"]
    if conn.runtime.clock.now_ms() > record.expires_at or not await dispatcher.store.claim(record):
        raise ApiError("conflict", f"offer {record.offer_id!r} has expired")
    if record.joins and len(await still_to_collect(conn.runtime, conn.rider_id, list(record.joins))) < len(record.joins):
        await dispatcher.store.release(record)  # back to the next round, as a job of its own
        raise ApiError("conflict", f"offer {record.offer_id!r} adds to orders already picked up; it is withdrawn")
    try:
        await assign_orders(conn.runtime, list(record.order_ids), conn.rider_id, offer_id=record.offer_id,
                            sequence=list(record.sequence) or None)
    finally:
        await dispatcher.store.release(record)
    dispatcher.metrics.offers.labels("accepted").inc()
    await conn.send(record.frame("assigned"))


@handles("decline")
async def decline(conn: RiderConnection, msg: dict[str, Any]) -> None:
    """Give the offer's orders back to the pool; this rider will not see them again soon."""
    record = await _own_offer(conn, msg)
    dispatcher = conn.runtime.services["dispatcher"]
    if not await dispatcher.store.claim(record):
        raise ApiError("conflict", f"offer {record.offer_id!r} has already expired")
    await dispatcher.store.release(record)
    await dispatcher.cool_down(record)
    dispatcher.metrics.offers.labels("declined").inc()
