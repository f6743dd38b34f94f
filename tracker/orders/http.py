"""Orders over HTTP: create (idempotent), read with history, cancel, and operator assign / unassign / fail."""
from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tracker.auth import Principal, Role
from tracker.errors import ApiError
from tracker.geo import haversine_m
from tracker.http.body import json_body
from tracker.jsonutil import JSONResponse
from tracker.orders import service
from tracker.orders.food_ready import MAX_READY_AHEAD_MS, expected_ready_ms
from tracker.orders.machine import CARRYING
from tracker.orders.notices import recheck_if_overtaken, tell_rider
from tracker.orders.store import store_of
from tracker.orders.wire import rider_order, wire
from tracker.redis_client import REDIS_DOWN
from tracker.runtime import Runtime, runtime_of
from tracker.validate import (optional_bool, optional_int, optional_number, optional_reason, path_id, require_id,
                              require_point, require_reason)


def _order_id(request: Request) -> str:
    return path_id(request.path_params["order_id"], "order")


def check_scope(principal: Principal, order: dict[str, Any], *, customer_may: bool = True) -> None:
    """``forbidden`` unless the caller is the operator, the order's merchant, or its customer."""
    if principal.is_operator:
        return
    if principal.role is Role.MERCHANT and principal.sub == order["merchant_id"]:
        return
    if customer_may and principal.role is Role.CUSTOMER and principal.sub == order["id"]:
        return
    raise ApiError("forbidden", "this order is outside the token's scope")


def _missing(principal: Principal, order_id: str) -> ApiError:
    """No such order: ``not_found`` for the operator (and a customer, whose token names it);
    a merchant gets the answer an order of another merchant gets, so ids cannot be probed."""
    if principal.role is Role.MERCHANT:
        return ApiError("forbidden", "this order is outside the token's scope")
    return ApiError("not_found", f"no order {order_id!r}")


async def _after_step(rt: Runtime, order_id: str, raw: dict[str, str], **changes: str) -> dict[str, Any]:
    """The order after a step that went through, with its events as GET gives it: read again,
    or, should Redis stop answering right then, as the step left it (``raw`` with ``changes``,
    without the events): the caller is told the step was done, not a 503 that reads as "not
    done" (a kitchen would think its cancel failed)."""
    try:
        order = await service.load_order(rt, order_id, with_events=True)
    except REDIS_DOWN:
        order = None
    return order if order is not None else wire({**raw, **changes})


READY_PAST_MS = 24 * 3600 * 1000  # a ready_at up to a day old (an order entered late) is taken
MAX_DELIVERY_KM = 100  # pickup to drop-off, as the crow flies: a city's delivery, not a mistyped continent


def ready_at_in_window(body: dict[str, Any], now_ms: int) -> int | None:
    """``ready_at`` (a whole ts in ms) within a day before and 7 days after the server's ``now_ms``,
    or ``None``; else ``bad_message`` naming the window, and what the number looks like when it
    is seconds or microseconds (an integrator's slip that left the order never offered)."""
    ready_at = optional_int(body, "ready_at")
    if ready_at is None:
        return None
    lo, hi = now_ms - READY_PAST_MS, now_ms + MAX_READY_AHEAD_MS
    if lo <= ready_at <= hi:
        return ready_at
    hint = ""
    if lo <= ready_at * 1000 <= hi:
        hint = "; it looks like seconds: send milliseconds (x1000)"
    elif lo <= ready_at // 1000 <= hi:
        hint = "; it looks like microseconds: send milliseconds (/1000)"
    raise ApiError("bad_message", f"'ready_at' must be a ts in milliseconds within 1 day before and 7 days after "
                                  f"the server's time: {lo} to {hi}, got {body['ready_at']}{hint}")


def require_delivery_distance(pickup: tuple[float, float], dropoff: tuple[float, float]) -> None:
    """``bad_message`` when the drop-off is more than :data:`MAX_DELIVERY_KM` from the pickup (a
    coordinate typed wrong, or swapped): no rider could take it, and the planner's city-sized
    projection would cost it as nonsense."""
    km = haversine_m(*pickup, *dropoff) / 1000
    if km > MAX_DELIVERY_KM:
        raise ApiError("bad_message", f"'dropoff' is {km:,.0f} km from 'pickup' as the crow flies: a delivery is at most "
                                      f"{MAX_DELIVERY_KM} km (a coordinate mistyped, or lat and lng swapped?)")


async def create(request: Request) -> Response:
    """Create an order (operator only); 201 when new, 200 when the same id and body came before."""
    rt = runtime_of(request)
    rt.authenticate(request).require(Role.OPERATOR)
    body = await json_body(request)
    ready_at = ready_at_in_window(body, rt.clock.now_ms())
    prep = optional_number(body, "prep_minutes", lo=0, hi=24 * 60)
    scheduled = optional_bool(body, "scheduled")
    if scheduled and ready_at is None:
        raise ApiError("bad_message", "a 'scheduled' order needs its 'ready_at': when its food is wanted")
    order_id, merchant_id = require_id(body, "id"), require_id(body, "merchant_id")
    pickup, dropoff = require_point(body, "pickup"), require_point(body, "dropoff")
    require_delivery_distance(pickup, dropoff)
    order, created = await service.create_order(rt, order_id, merchant_id, pickup, dropoff, ready_at, prep,
                                                scheduled=scheduled)
    return JSONResponse(order, status_code=201 if created else 200)


async def read(request: Request) -> Response:
    """The order with its event history, for the operator, its merchant or its customer."""
    rt = runtime_of(request)
    principal = rt.authenticate(request)
    order_id = _order_id(request)
    if principal.role is Role.CUSTOMER and principal.sub != order_id:
        raise ApiError("forbidden", "a customer token may read only its own order")
    if principal.role is Role.RIDER:
        raise ApiError("forbidden", "riders read their orders from their offers")
    if principal.role is Role.MERCHANT:  # (its scope first: another merchant's order is not read at all)
        raw = await store_of(rt).load(order_id)
        if raw is None:
            raise _missing(principal, order_id)
        check_scope(principal, {"id": order_id, "merchant_id": raw["merchant_id"]})
    order = await service.load_order(rt, order_id, with_events=True)
    if order is None:
        raise _missing(principal, order_id)
    check_scope(principal, order)
    return JSONResponse(order)


async def cancel(request: Request) -> Response:
    """Cancel the order (its merchant or the operator), with an optional reason; returns the order."""
    rt = runtime_of(request)
    principal = rt.authenticate(request)
    principal.require(Role.MERCHANT)
    order_id = _order_id(request)
    raw = await store_of(rt).load(order_id)
    if raw is None:
        raise _missing(principal, order_id)
    check_scope(principal, {"id": order_id, "merchant_id": raw["merchant_id"]}, customer_may=False)
    reason = optional_reason(await json_body(request))
    await service.step(rt, [order_id], "cancelled", merchant_id=raw["merchant_id"],
                       event_extra={"by": principal.role.value, **({"reason": reason} if reason else {})})
    return JSONResponse(await _after_step(rt, order_id, raw, status="cancelled"))


async def assign(request: Request) -> Response:
    """Give the order to ``rider_id`` (operator only) and tell the rider; ``conflict`` when a rider
    already carries it."""
    rt = runtime_of(request)
    rt.authenticate(request).require(Role.OPERATOR)
    order_id = _order_id(request)
    rider_id = require_id(await json_body(request), "rider_id")
    raw = await service.require_order(rt, order_id)
    try:
        await service.assign_orders(rt, [order_id], rider_id)
    except ApiError as exc:  # refused because a rider has it (maybe one accepting at this very moment)
        current = await service.require_order(rt, order_id)
        if exc.code != "invalid_transition" or not (current.get("rider_id") and current.get("status") in CARRYING):
            raise  # (a finished order stays invalid_transition)
        raise ApiError("conflict", f"order {order_id!r} already has rider {current['rider_id']!r}; "
                                   "unassign it first") from None
    order = await _after_step(rt, order_id, raw, status="assigned", rider_id=rider_id)
    # The order as an offer's ``assigned`` shows it: the kitchen's ready time while still ahead; no
    # plan yet (``pickup_eta`` and ``eta`` come with the rider's next fix, in ``route`` and on GET).
    ready, now = expected_ready_ms(order), rt.clock.now_ms()  # (as dispatch reads it: tracker/dispatch/snapshot.py)
    entry = {**rider_order(order), "ready_at": ready if ready is not None and ready > now else None,
             "pickup_eta": None, "eta": None}
    frame = {"type": "assigned", "offer_id": None, "by": "operator", "orders": [entry]}
    # Connected, the rider hears it now; connecting later, it finds the order in its ``route`` frame.
    await tell_rider(rt, rider_id, frame)
    await recheck_if_overtaken(rt, rider_id, [order_id], carries=True)  # (cancelled meanwhile, say)
    return JSONResponse(order)


def _rider_to_take_from(order_id: str, raw: dict[str, str], named: str | None) -> str:
    """The rider an ``unassign`` takes the order from: ``invalid_transition`` when it has none,
    ``conflict`` when it is with another rider than ``named``."""
    rider = raw.get("rider_id")
    if not rider:
        raise ApiError("invalid_transition", f"order {order_id!r} has no rider to take it from")
    if named is not None and named != rider:  # the operator meant another rider than has it now
        raise ApiError("conflict", f"order {order_id!r} is now with rider {rider!r}, not {named!r}; nothing was changed")
    return rider


async def unassign(request: Request) -> Response:
    """Take the order back from its rider before pickup; dispatch offers it again."""
    rt = runtime_of(request)
    rt.authenticate(request).require(Role.OPERATOR)
    order_id = _order_id(request)
    body = await json_body(request)
    reason = optional_reason(body)
    named = require_id(body, "rider_id") if body.get("rider_id") is not None else None
    raw = await service.require_order(rt, order_id)
    rider = _rider_to_take_from(order_id, raw, named)
    try:
        await rt.services["dispatcher"].take_back(raw["merchant_id"], order_id, rider, by="operator", reason=reason)
    except ApiError as exc:
        if exc.code != "forbidden":
            raise
        # Lost a race (another take-back, the rider's release): answer as this call made now would.
        _rider_to_take_from(order_id, await service.require_order(rt, order_id), named or rider)
        raise ApiError("conflict", f"order {order_id!r} changed riders meanwhile; read it and try again") from None
    return JSONResponse(await _after_step(rt, order_id, raw, status="confirmed", rider_id=""))


async def fail(request: Request) -> Response:
    """End an order whose food is on the road as ``failed`` (operator only, with a reason): the
    rider vanished with it, so it will never be delivered; returns the order."""
    rt = runtime_of(request)
    rt.authenticate(request).require(Role.OPERATOR)
    order_id = _order_id(request)
    reason = require_reason(await json_body(request))  # (a bad body is a 400 whatever the order, as for cancel)
    raw = await service.require_order(rt, order_id)
    rider = raw.get("rider_id") or None  # (an order on the road always has one; checked in the step)
    extra = {"by": "operator", "reason": reason, **({"rider_id": rider} if rider else {})}
    try:
        await service.step(rt, [order_id], "failed", merchant_id=raw["merchant_id"], rider=rider, event_extra=extra)
    except ApiError as exc:
        if exc.code != "forbidden":
            raise
        raise ApiError("conflict", f"order {order_id!r} changed riders meanwhile; read it and try again") from None
    return JSONResponse(await _after_step(rt, order_id, raw, status="failed"))


routes = [
    Route("/v1/orders", create, methods=["POST"]),
    Route("/v1/orders/{order_id}", read, methods=["GET"]),
    Route("/v1/orders/{order_id}/cancel", cancel, methods=["POST"]),
    Route("/v1/orders/{order_id}/assign", assign, methods=["POST"]),
    Route("/v1/orders/{order_id}/unassign", unassign, methods=["POST"]),
    Route("/v1/orders/{order_id}/fail", fail, methods=["POST"]),
]
