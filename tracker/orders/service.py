"""Order operations shared by HTTP, the sockets and dispatch: create, step, assign, read.

Each operation checks the transition with the sans-I/O machine's rules, runs the one atomic
Lua step, then brings the secondary keys in line (open-order index, the rider's order set),
tells the riders concerned (:mod:`tracker.orders.notices`) and records service metrics. The
wire form is :mod:`tracker.orders.wire`.
"""
from __future__ import annotations

import logging
from typing import Any, Sequence

import orjson

from tracker.dispatch.demand import record_order
from tracker.errors import ApiError
from tracker.locations import CARRYING_RIDERS, rider_orders_key
from tracker.logs import log_failure
from tracker.orders import followups, machine
from tracker.orders.lateness import clock_start_ms
from tracker.orders.live import mark_drop
from tracker.orders.machine import LEAVES_RIDER, former_rider
from tracker.orders.notices import recheck_if_overtaken, tell_rider, tell_riders
from tracker.orders.store import OrderChanged, Step, order_key, store_of
from tracker.orders.wire import STAMP, wire
from tracker.redis_client import REDIS_DOWN
from tracker.runtime import Runtime

log = logging.getLogger("tracker.orders")

FOLLOWUPS_TASK = "order-followup-repair"  # where a step's failed follow-up writes are reported


async def load_order(rt: Runtime, order_id: str, *, with_events: bool = False) -> dict[str, Any] | None:
    """The order in wire form (with its history when asked), or ``None``."""
    store = store_of(rt)
    raw = await store.load(order_id)
    if raw is None:
        return None
    events = await store.history(raw["merchant_id"], order_id) if with_events else None
    return wire(raw, events)


async def load_orders(rt: Runtime, order_ids: Sequence[str]) -> list[dict[str, Any] | None]:
    """Many orders in wire form (``None`` where there is none), in two round trips."""
    return [None if raw is None else wire(raw) for raw in await store_of(rt).load_many(order_ids)]


async def require_order(rt: Runtime, order_id: str) -> dict[str, str]:
    raw = await store_of(rt).load(order_id)
    if raw is None:
        raise ApiError("not_found", f"no order {order_id!r}")
    return raw


async def create_order(rt: Runtime, order_id: str, merchant_id: str, pickup: tuple[float, float],
                       dropoff: tuple[float, float], ready_at: int | None, prep_minutes: float | None,
                       *, scheduled: bool = False) -> tuple[dict[str, Any], bool]:
    """Create the order (idempotent by id and body); returns it, with its events as GET gives
    it, and whether it is new. ``scheduled``: its food is wanted at ``ready_at`` (its clock
    starts then, less the preparation: :func:`clock_start_ms`), not as soon as it can be made."""
    store = store_of(rt)
    fingerprint = orjson.dumps([merchant_id, pickup, dropoff, ready_at, prep_minutes]
                               + ([True] if scheduled else [])).decode()
    await store.reserve_id(order_id, merchant_id)
    now = rt.clock.now_ms()
    fields = {
        "id": order_id, "merchant_id": merchant_id, "status": "placed", "rider_id": "",
        "pickup_lat": repr(pickup[0]), "pickup_lng": repr(pickup[1]),
        "drop_lat": repr(dropoff[0]), "drop_lng": repr(dropoff[1]), "placed_at": now,
        "ready_at": ready_at if ready_at is not None else "",
        "prep_minutes": prep_minutes if prep_minutes is not None else "",
        "clock_start_at": clock_start_ms(now, ready_at if scheduled else None, prep_minutes,
                                         rt.settings.default_prep_min),
        "counted_status": "",  # not counted yet (:mod:`counts`): whichever counts it first counts it from nothing
    }
    journal = await _journal(rt, [order_id], "placed")  # its count is a follow-up too (refused if unwritable)
    try:
        created = await store.create(order_id, merchant_id, fields, fingerprint,
                                     {"order_id": order_id, "kind": "placed", "ts": now}, now)
    except ApiError:
        await _forget(rt, journal)
        raise
    order = await require_order(rt, order_id)
    metrics = rt.services["order_metrics"]
    try:  # (a retry counts and lists the order if the first call could not)
        await _list_placed(rt, order)
        await (metrics.record(rt.redis, order, "placed", "") if created else metrics.count(rt.redis, order))
    except Exception as exc:  # noqa: BLE001 - the order is stored: its creator must hear so; the repair counts it
        rt.supervisor.report(FOLLOWUPS_TASK, exc, orders=[order_id], kind="placed")
        # Journaled again: a repair pass that came before the order was stored (a create slower
        # than the repair's grace) found nothing to repair and took the first entry away. Best
        # effort: the order is stored, and its first entry stands but in that race.
        try:
            await _journal(rt, [order_id], "placed")
        except REDIS_DOWN as again:
            log_failure(log, "order create journaled no second time (its first entry stands unless a repair "
                             "pass took it before the order was stored)", again, order=order_id)
    else:
        await _forget(rt, journal)
    if created:
        try:
            await record_order(rt.redis, merchant_id, pickup[0], pickup[1])
        except Exception as exc:  # noqa: BLE001 - demand is a planning hint; the order itself is stored
            log_failure(log, "demand count failed", exc, order=order_id)  # (one line if Redis is down)
    return wire(order, await store.history(merchant_id, order_id)), created


async def _list_placed(rt: Runtime, order: dict[str, str]) -> None:
    """Put a new order in the ops page's list of orders waiting for their kitchen, then read it
    again: a kitchen may have confirmed it on another process meanwhile, whose follow-up took it
    out of the list before this put it back from the earlier read."""
    store = store_of(rt)
    await store.update_indexes(order)
    now = await store.load(order["id"])
    if now is not None and now.get("status") != order.get("status"):
        await store.update_indexes(now)


async def step(rt: Runtime, order_ids: list[str], kind: str, *, merchant_id: str, rider: str | None = None,
               fields: dict[str, Any] | None = None, event_extra: dict[str, Any] | None = None,
               require_unassigned: bool = False, per_order_fields: tuple[dict[str, Any], ...] = (),
               fence: tuple[str, list[str]] | None = None, unchanged: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Apply one event ``kind`` to orders of one merchant, all or none; returns the events.

    ``fence``: (offer id, the orders' offer lock keys); the step is refused (``conflict``)
    unless every lock still holds that offer. ``unchanged``: hash fields every order must still
    hold as the caller read them, else :class:`OrderChanged` (nothing applied: read again).

    The step is journaled first (:mod:`followups`); a journal that cannot be written (on a
    cluster, the node of ``{orders}`` down or failing over) refuses the step before anything is
    applied, with the Redis error (``redis_unavailable``: the same step again later works). A
    step taken without its journal would lose its follow-ups and its count for good when they
    fail too, and they share the journal's node. If its follow-up writes in other slots fail, the step
    still stands and is answered as done (the caller would otherwise retry and be refused);
    the failure is reported (:data:`FOLLOWUPS_TASK` in ``/readyz``) and :mod:`repair`
    re-derives those writes from the order's record.
    """
    now = rt.clock.now_ms()
    allowed = machine.allowed_from(kind)
    target = machine.RULES[kind][1]
    all_fields = dict(fields or {})
    if kind in STAMP:
        all_fields[STAMP[kind]] = now
    journal = await _journal(rt, order_ids, kind)
    try:
        events = await store_of(rt).apply(
            merchant_id, order_ids,
            Step(kind=kind, allowed=allowed, new_status=target, fields=all_fields, event_extra=event_extra or {},
                 rider=rider, require_unassigned=require_unassigned, per_order_fields=per_order_fields,
                 require_unset=machine.FOOD_READY if kind in machine.NOT_AFTER_FOOD_READY else None, fence=fence,
                 unchanged=unchanged, done=STAMP[kind] if kind in machine.TAKEN_ONCE else None),
            now,
        )
    except (ApiError, OrderChanged):
        await _forget(rt, journal)  # refused: nothing changed
        raise
    olds = [e.pop("_from") for e in events]
    try:
        await _after(rt, merchant_id, order_ids, olds, kind, events)
    except Exception as exc:  # noqa: BLE001 - the step stands: say so, and let the repair finish it
        # Logged (a traceback unless Redis is down), counted and shown in /readyz ``degraded``.
        rt.supervisor.report(FOLLOWUPS_TASK, exc, orders=order_ids, kind=kind)
        return events
    await _forget(rt, journal)
    return events


async def _journal(rt: Runtime, order_ids: list[str], kind: str) -> list[str]:
    """Journal a step before it is applied; Redis not taking the entry refuses the step (raised
    as it came, so every caller treats it as Redis being down: a 503 ``redis_unavailable``, an
    error frame). On a cluster the journal's node may be down while the order's is not, and the
    fleet-wide counts live beside the journal (``{orders}``): a step taken then would have its
    count, and any follow-up that failed with it, lost for good."""
    try:
        return await followups.begin(rt.redis, order_ids, kind, rt.settings.followup_repair_s)
    except REDIS_DOWN as exc:
        log_failure(log, "order step refused: its repair journal could not be written", exc,
                    orders=order_ids, kind=kind)
        raise


async def _forget(rt: Runtime, journal: list[str]) -> None:
    try:
        await followups.end(rt.redis, journal)
    except Exception as exc:  # noqa: BLE001 - the step is done; the repair re-derives it once more
        log_failure(log, "order step journal entry not removed", exc)


async def sync_indexes(rt: Runtime, order: dict[str, str]) -> None:
    """Bring the keys derived from an order's record in line with it (idempotent; for repair):
    the open-order index, the order set of the rider carrying it (and ``carrying:riders``), and
    the set of the rider who last had it when it no longer does."""
    await store_of(rt).update_indexes(order)
    oid = order["id"]
    holder = order.get("rider_id") if order.get("status") in machine.CARRYING else None
    if holder:
        await _add_to_rider(rt, holder, oid)
    for former in {order.get("last_rider_id"), order.get("rider_id")} - {holder, None, ""}:
        await _drop_from_rider(rt, former, oid)


async def _add_to_rider(rt: Runtime, rider_id: str, order_id: str) -> None:
    pipe = rt.redis.pipeline(transaction=False)
    pipe.sadd(rider_orders_key(rider_id), order_id)
    pipe.sadd(CARRYING_RIDERS, rider_id)
    await pipe.execute()


async def _drop_from_rider(rt: Runtime, rider_id: str, order_id: str) -> None:
    await rt.redis.srem(rider_orders_key(rider_id), order_id)
    if not await rt.redis.scard(rider_orders_key(rider_id)):
        await rt.redis.srem(CARRYING_RIDERS, rider_id)
        # An order added meanwhile (a rider delivering its last order as it accepts the next) put
        # the rider in the set before this removal: count again, so it is not left out of the
        # riders carrying orders (the silent-rider take-back and the ops page read that set).
        if await rt.redis.scard(rider_orders_key(rider_id)):
            await rt.redis.sadd(CARRYING_RIDERS, rider_id)


async def _after(rt: Runtime, merchant_id: str, order_ids: list[str], old_statuses: list[str], kind: str,
                 events: list[dict[str, Any]]) -> None:
    store = store_of(rt)
    failed: list[Exception] = []
    for oid, old, event in zip(order_ids, old_statuses, events):
        order = await store.load_of(merchant_id, oid)  # (the step's merchant: no look-up of it)
        if order is None:
            continue
        # Each part goes ahead even if one before it failed (the riders are told, and void
        # offers withdrawn, even while an index write fails); the first failure is raised after.
        parts = (lambda: _mark_drop(rt, order, kind, event),
                 lambda: _step_indexes(rt, order, kind, event),
                 lambda: rt.services["order_metrics"].record(rt.redis, order, kind, old),
                 lambda: tell_riders(rt, order, kind, old, event))
        for part in parts:
            try:
                await part()
            except Exception as exc:  # noqa: BLE001 - raised once the other parts had their turn
                failed.append(exc)
    if failed:
        raise failed[0]


async def _mark_drop(rt: Runtime, order: dict[str, str], kind: str, event: dict[str, Any]) -> None:
    """A drop-off just made: the orders still in the rider's bag learn where and when
    (their live ETAs leave that door as the model says), before the rider reloads its orders."""
    if kind == "delivered" and (rider := former_rider(order, kind, event)):
        await mark_drop(rt, order, rider)


INDEX_REREADS = 3  # reads of an order that keeps changing before its indexes are left to the next step


def _index_view(order: dict[str, str]) -> tuple[str | None, bool]:
    """What of an order its indexes depend on: its status and whether a rider has it."""
    return order.get("status"), bool(order.get("rider_id"))


async def _step_indexes(rt: Runtime, order: dict[str, str], kind: str, event: dict[str, Any]) -> None:
    """The open-order index, and the riders' sets when the step changes who carries the order
    (a routine step writing them from its own read could undo a concurrent assignment's write)."""
    store = store_of(rt)
    await store.update_indexes(order)
    oid, rider, merchant = order["id"], order.get("rider_id"), order["merchant_id"]
    # A step that committed after this one's read may have written the indexes before these writes
    # landed (an unassign's "open again" undone by this assignment's "not open"): read again and,
    # while what the indexes show has changed since, write them from the newer read.
    written = order
    for _ in range(INDEX_REREADS):
        fresh = await store.load_of(merchant, oid)
        if fresh is None or _index_view(fresh) == _index_view(written):
            break
        await store.update_indexes(fresh)
        written = fresh
    if kind == "assigned" and rider:
        await _add_to_rider(rt, rider, oid)
        # A cancel that committed since this step's order was read may have dropped the order
        # from the rider's set before this add: read it again, and take the entry back out when
        # the rider no longer carries it (in the other order the cancel's own drop comes later).
        if not machine.carried_by(await store.load_of(merchant, oid), rider):
            await _drop_from_rider(rt, rider, oid)
    elif kind in LEAVES_RIDER and (former := former_rider(order, kind, event)):
        await _drop_from_rider(rt, former, oid)
        if kind == "rider_unassigned":  # (an ended order is nobody's again)
            # An assignment to the same rider that committed since the take-back (two operators
            # at once) may have added its entry before this drop: read again, and put it back
            # when the rider carries the order now (an add after this drop needs nothing).
            if machine.carried_by(await store.load_of(merchant, oid), former):
                await _add_to_rider(rt, former, oid)


async def assign_orders(rt: Runtime, order_ids: list[str], rider_id: str, *, offer_id: str | None = None,
                        sequence: list[str] | None = None, lock_keys: list[str] | None = None) -> list[dict[str, Any]]:
    """Assign confirmed, unassigned orders of one merchant to ``rider_id`` (all or none).

    The orders' position in ``sequence`` (default: ``order_ids`` itself) is their delivery
    sequence (``route_seq``). An add-on passes the whole new sequence, the rider's held orders
    of the same restaurant included; those still uncollected are re-sequenced to match.
    With ``lock_keys`` (the orders' offer locks) the orders are assigned only while those locks
    still hold ``offer_id``.
    """
    sequence = list(sequence or order_ids)
    if not set(order_ids) <= set(sequence):
        raise ApiError("bad_message", "the delivery sequence must hold every assigned order")
    if not order_ids:
        raise ApiError("bad_message", "no orders to assign")
    merchants = {await store_of(rt).merchant_of(oid) for oid in order_ids}
    if None in merchants:
        raise ApiError("not_found", "unknown order in the assignment")
    if len(merchants) != 1:
        raise ApiError("bad_message", "orders assigned together must share one restaurant")
    extra = {"rider_id": rider_id}
    if offer_id:
        extra["offer_id"] = offer_id
    merchant = merchants.pop()
    bundle = ",".join(sequence)
    events = await step(
        rt, order_ids, "assigned", merchant_id=merchant, fields={"rider_id": rider_id, "last_rider_id": rider_id,
                                                                   "offer_id": offer_id or "", "stops_before": ""},
        event_extra=extra, require_unassigned=True,
        per_order_fields=tuple({"route_seq": sequence.index(oid), "bundle": bundle} for oid in order_ids),
        fence=(offer_id, lock_keys) if offer_id and lock_keys else None,
    )
    try:  # the step stands from here on: what follows must not make it look refused
        held = await still_to_collect(rt, rider_id, [oid for oid in sequence if oid not in order_ids])
        if held:  # the rider's uncollected orders take their place in the grown bundle
            pipe = rt.redis.pipeline(transaction=False)
            for oid in held:
                pipe.hset(order_key(merchant, oid), mapping={"route_seq": sequence.index(oid), "bundle": bundle})
            await pipe.execute()
    except REDIS_DOWN as exc:  # (the rider's route then lists the held orders by assignment time)
        log_failure(log, "held orders not re-sequenced into the grown bundle", exc, rider=rider_id)
    return events


async def still_to_collect(rt: Runtime, rider_id: str, order_ids: list[str]) -> list[str]:
    """Those of ``order_ids`` that are ``rider_id``'s and not yet picked up."""
    if not order_ids:
        return []
    found = await store_of(rt).load_many(order_ids)
    return [oid for oid, order in zip(order_ids, found)
            if order and order.get("rider_id") == rider_id and order.get("status") in machine.TO_COLLECT]


async def unassign_order(rt: Runtime, order_id: str, *, merchant_id: str, rider_id: str, by: str,
                         reason: str | None = None) -> None:
    """Take the order back from ``rider_id`` before pickup (``rider_unassigned``); it is open again.

    The order must still be ``rider_id``'s (``forbidden`` otherwise, checked in the same atomic
    step) and not picked up (``invalid_transition``). The rider is told with an ``unassigned``
    frame on its inbox. Dispatch calls this through ``Dispatcher.take_back``, which keeps the
    rider away from the order first.
    """
    extra: dict[str, Any] = {"rider_id": rider_id, "by": by}
    if reason:
        extra["reason"] = reason
    await step(
        rt, [order_id], "rider_unassigned", merchant_id=merchant_id, rider=rider_id,
        fields={"rider_id": "", "eta": "", "pickup_eta": "", "planned_eta": "", "rider_eta": "", "route_seq": "",
                "bundle": "", "offer_id": "", "stops_before": ""},
        event_extra=extra,
    )
    frame = {"type": "unassigned", "order_id": order_id, "by": by, **({"reason": reason} if reason else {})}
    await tell_rider(rt, rider_id, frame)
    await recheck_if_overtaken(rt, rider_id, [order_id], carries=False)
