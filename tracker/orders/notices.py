"""What riders are told about their orders' steps, through their inbox: the notices after a
step, one frame to one rider, and the re-check when a crossing step made a frame untrue. All
best effort after a step that went through: a rider that misses one finds the step in its next
``route`` frame."""
from __future__ import annotations

import logging
from typing import Any, Sequence

import orjson

from tracker.logs import log_failure
from tracker.orders import machine
from tracker.orders.machine import LEAVES_RIDER, former_rider
from tracker.orders.store import store_of
from tracker.redis_client import REDIS_DOWN
from tracker.riders.inbox import RECHECK, inbox_channel
from tracker.runtime import Runtime

log = logging.getLogger("tracker.orders")


async def tell_riders(rt: Runtime, order: dict[str, str], kind: str, old: str, event: dict[str, Any]) -> None:
    """After a step of ``kind`` (from status ``old``, recorded as ``event``): an ``_orders_changed`` notice to the rider
    whose orders it changed, ``order_cancelled`` to a rider who was carrying a cancelled order
    (``order_failed`` for a failed one), and the order step listeners (dispatch withdraws the
    offers the step made void)."""
    oid, rider = order["id"], order.get("rider_id") or None
    former = former_rider(order, kind, event) if kind in LEAVES_RIDER else None
    changed_rider = rider
    if kind in LEAVES_RIDER:
        changed_rider = former
    elif kind != "assigned" and (kind not in ("food_delayed", "food_ready") or old not in machine.TO_COLLECT):
        changed_rider = None  # (a kitchen's new ready time moves its rider's ETAs: reload them)
    if changed_rider:
        await rt.pubsub.publish(inbox_channel(changed_rider), '{"type":"_orders_changed"}')
    ended = {"cancelled": "order_cancelled", "failed": "order_failed"}.get(kind)
    if ended and old in machine.CARRYING and rider:
        # The rider on its way must hear it now, not at its next progress report.
        await rt.pubsub.publish(inbox_channel(rider), orjson.dumps(_ended_notice(ended, oid, event)).decode())
    if kind in ("food_ready", "food_delayed") and old in machine.TO_COLLECT and rider:
        # The rider on its way (or waiting at the counter) hears what the kitchen said.
        await rt.pubsub.publish(inbox_channel(rider), orjson.dumps(_kitchen_notice(kind, oid, event)).decode())
    for listener in rt.services.get("order_step_listeners", ()):
        try:
            await listener(order, kind, former)
        except Exception as exc:  # noqa: BLE001 - the step is done: its caller must hear so
            log_failure(log, "order step listener failed", exc, order=oid, kind=kind)


def _ended_notice(frame_type: str, order_id: str, event: dict[str, Any]) -> dict[str, Any]:
    """The frame telling a rider that an order it carried ended without it: who ended it, and why if said."""
    notice = {"type": frame_type, "order_id": order_id, "by": event.get("by")}
    if event.get("reason"):
        notice["reason"] = event["reason"]
    return notice


def _kitchen_notice(kind: str, order_id: str, event: dict[str, Any]) -> dict[str, Any]:
    """The frame telling a rider on its way that the food is ready, or delayed to ``ready_at``."""
    notice = {"type": kind, "order_id": order_id, "ts": event.get("ts")}
    if kind == "food_delayed":
        notice["ready_at"] = event.get("ready_at")
    return notice


async def recheck_if_overtaken(rt: Runtime, rider_id: str, order_ids: Sequence[str], *, carries: bool) -> None:
    """After telling ``rider_id`` that it now carries these orders (``carries``) or no longer does:
    read them again, and when a step that crossed this one made that untrue (an order cancelled
    as it was assigned, assigned to the rider again as it was taken back), have the rider's
    connection tell it its ``route`` afresh, so the last word it gets is what holds. Best effort,
    as :func:`tell_rider`."""
    try:
        orders = await store_of(rt).load_many(list(order_ids))
        if any(machine.carried_by(order, rider_id) != carries for order in orders):
            await rt.pubsub.publish(inbox_channel(rider_id), RECHECK)
    except REDIS_DOWN as exc:
        log_failure(log, "rider's frames not checked against its orders (its next route frame says it)", exc,
                    rider=rider_id)


async def tell_rider(rt: Runtime, rider_id: str, frame: dict[str, Any]) -> None:
    """Send ``frame`` to the rider's sockets, after a step that went through: best effort, since
    a rider connected now hears it at once and one that is not (or that Redis cut off just then)
    finds the step in its next ``route`` frame; a Redis fault is logged, not answered, so the
    caller is not told "not done" about a step that was."""
    try:
        await rt.pubsub.publish(inbox_channel(rider_id), orjson.dumps(frame).decode())
    except REDIS_DOWN as exc:
        log_failure(log, "rider not told (its next route frame says it)", exc, rider=rider_id,
                    frame=frame["type"])
