"""The rider's answers to offers on ``/v1/ws/rider``: ``accept``, ``decline``, and ``release``.

Accepting claims the offer (so the expiry sweep cannot race it), assigns all its orders in
one atomic step that checks they are still locked to the offer (a claim overdue by
``CLAIM_LEASE_S`` is settled by the sweep, which frees them), then frees the locks and confirms
with an ``assigned`` frame (an add-on also re-sequences the rider's held orders). Declining
frees the orders for the next round and keeps this rider away from them for
``TRACKER_DECLINE_COOLDOWN_S``. An answer to an offer that was made to this rider but is
settled (expired, withdrawn, answered) is a ``conflict``; to one never made to it, ``not_found``.
Releasing hands an accepted order back before its pickup (``rider_unassigned``): it is open
for the next round, and this rider is kept away from it like after a decline.

A (re)connecting rider is told where it stands (:func:`where_rider_stands`): the orders it
carries (a ``route`` frame, empty when it carries none) and the offer it is still considering, so an app that restarted
or lost its socket loses neither; an offer already being answered is not sent again as if open.
"""
from __future__ import annotations

import logging
from typing import Any

from tracker.dispatch.offers import ACCEPTED, DECLINED, EXPIRED, WITHDRAWN, OfferRecord, OfferStore
from tracker.dispatch.refusals import note_refusal
from tracker.errors import ApiError
from tracker.locations import rider_orders_key
from tracker.locations.store import pause_key
from tracker.logs import log_failure
from tracker.orders import assign_orders, load_order, still_to_collect
from tracker.orders.machine import CARRYING, carried_by
from tracker.orders.route import rider_trips
from tracker.orders.notices import recheck_if_overtaken
from tracker.orders.store import store_of
from tracker.orders.wire import rider_order, wire
from tracker.redis_client import REDIS_DOWN
from tracker.riders.endpoint import ON_CONNECT, ON_INBOX_GAP, RiderConnection, handles
from tracker.riders.pause import pause_of
from tracker.runtime import Runtime
from tracker.validate import optional_reason, require_id

log = logging.getLogger("tracker.dispatch")


_SETTLED = {ACCEPTED: "was already accepted", DECLINED: "was declined", EXPIRED: "has expired",
            WITHDRAWN: "was withdrawn"}


async def _own_offer(conn: RiderConnection, msg: dict[str, Any]) -> OfferRecord:
    offer_id = require_id(msg, "offer_id")
    store = conn.runtime.services["dispatcher"].store
    record = await store.load(offer_id)
    if record is not None and record.rider_id == conn.rider_id:
        return record
    settled = None if record is not None else await store.settled(offer_id)
    if settled is not None and settled[0] == conn.rider_id:
        raise ApiError("conflict", f"offer {offer_id!r} {_SETTLED.get(settled[1], 'is settled')}")
    raise ApiError("not_found", f"no offer {offer_id!r} was made to this rider")


async def _answered_first(store: OfferStore, record: OfferRecord) -> ApiError:
    """The ``conflict`` for an answer that lost the offer to another (the expiry sweep, an answer
    on the rider's other socket, a withdrawal), saying which when the offer is settled already."""
    settled = await store.settled(record.offer_id)
    if settled is None:
        return ApiError("conflict", f"offer {record.offer_id!r} is being answered or settled meanwhile (another "
                                    "of this rider's connections, or its expiry)")
    return ApiError("conflict", f"offer {record.offer_id!r} {_SETTLED.get(settled[1], 'is settled')}")


@handles("accept")
async def accept(conn: RiderConnection, msg: dict[str, Any]) -> None:
    """Turn the rider's open offer into an assignment of all its orders."""
    record = await _own_offer(conn, msg)
    dispatcher = conn.runtime.services["dispatcher"]
    if conn.runtime.clock.now_ms() > record.expires_at:
        raise ApiError("conflict", f"offer {record.offer_id!r} has expired")
    if not await dispatcher.store.claim(record):  # the expiry sweep or another answer came first
        raise await _answered_first(dispatcher.store, record)
    # Read after the claim: a pause writes itself before it claims the offer to withdraw it, so
    # either this sees the pause or the pause came after this claim (the offer was accepted first).
    if await conn.runtime.redis.exists(pause_key(conn.rider_id)):  # (or an offer a round made as it came in)
        await dispatcher.withdraw(record, claimed=True)
        raise ApiError("forbidden", "the operator paused this rider: no new orders until resumed")
    if record.joins and len(await still_to_collect(conn.runtime, conn.rider_id, list(record.joins))) < len(record.joins):
        await dispatcher.settle(record, WITHDRAWN)  # back to the next round, as a job of its own
        raise ApiError("conflict", f"offer {record.offer_id!r} adds to orders no longer waiting for this rider "
                               "(picked up or given back); it is withdrawn")
    outcome = WITHDRAWN  # unless the assignment goes through (an order was cancelled meanwhile...)
    try:
        await assign_orders(conn.runtime, list(record.order_ids), conn.rider_id, offer_id=record.offer_id,
                            sequence=list(record.sequence) or None, lock_keys=record.lock_keys)
        outcome = ACCEPTED
    finally:
        await dispatcher.settle(record, outcome)
    await conn.send(record.frame("assigned"))
    # An order cancelled (or taken back) since its step: its notice may have reached the rider
    # before this frame, which would leave the rider holding it.
    await recheck_if_overtaken(conn.runtime, conn.rider_id, record.order_ids, carries=True)


@handles("decline")
async def decline(conn: RiderConnection, msg: dict[str, Any]) -> None:
    """Give the offer's orders back to the pool; this rider will not see them again soon."""
    record = await _own_offer(conn, msg)
    dispatcher = conn.runtime.services["dispatcher"]
    if not await dispatcher.store.claim(record):
        raise await _answered_first(dispatcher.store, record)
    await dispatcher.cool_down(record.merchant_id, record.order_ids, conn.rider_id)  # before they are open again
    await dispatcher.settle(record, DECLINED)
    try:
        await note_refusal(conn.runtime, conn.rider_id, record.offer_id)
    except REDIS_DOWN as exc:  # (a figure for the operator: the decline itself went through)
        log_failure(log, "decline not counted for its rider", exc, rider=conn.rider_id)


@handles("release")
async def release(conn: RiderConnection, msg: dict[str, Any]) -> None:
    """Give back one of this rider's orders before pickup; dispatch offers it to someone else."""
    order_id = require_id(msg, "order_id")
    reason = optional_reason(msg)
    order = await load_order(conn.runtime, order_id)
    # Unknown, not its own, or no longer anyone's (cancelled while it held it): the same answer.
    # Picked up is the take-back's to refuse (``invalid_transition``: too late to give back).
    if order is None or order["rider_id"] != conn.rider_id or order["status"] not in CARRYING:
        raise ApiError("forbidden", f"order {order_id!r} is not assigned to this rider")
    await conn.runtime.services["dispatcher"].take_back(order["merchant_id"], order_id, conn.rider_id,
                                                        by="rider", reason=reason)


async def where_rider_stands(conn: RiderConnection) -> None:
    """A ``route`` frame with the orders the rider carries (empty when none), in the order it will
    serve them (:func:`tracker.orders.route.rider_trips`), and the operator's pause (``paused``,
    null when none), then the offer it is still considering, if any (the same ``offer`` frame
    again). On every connect, and after its inbox may have lost messages; then also how the offer
    this socket last showed ended, if that frame may have been lost (:func:`_tell_how_shown_offer_ended`).

    An offer being answered or settled (claimed: an ``accept`` whose process may have died
    before it answered) is never sent again as if open: the orders it assigned to this rider are
    in the route (their follow-up writes may not have been made yet) and an ``assigned`` frame
    for it follows; if it assigned nothing, nothing is said until it is settled."""
    rt = conn.runtime
    store = rt.services["dispatcher"].store
    offer = await store.pending_for(conn.rider_id)
    claimed = offer is not None and await store.is_claimed(offer.offer_id)
    answered = await _assigned_by(rt, offer, conn.rider_id) if offer is not None and claimed else []
    order_ids = sorted(await rt.redis.smembers(rider_orders_key(conn.rider_id)))
    held = [raw for raw in await store_of(rt).load_many(order_ids) if raw is not None and carried_by(raw, conn.rider_id)]
    held += [raw for raw in answered if raw["id"] not in order_ids]
    route = [wire(raw) for trip in rider_trips(held) for raw in trip]
    await conn.send({"type": "route", "orders": [{**rider_order(o), "status": o["status"], "eta": o["eta"]}
                                                 for o in route],
                     "paused": await pause_of(rt.redis, conn.rider_id)})  # (a missed paused/resumed frame)
    await _tell_how_shown_offer_ended(conn, store, offer, {raw["id"] for raw in held})
    if offer is None:
        return
    if answered:
        await conn.send(offer.frame("assigned"))  # (the answer its accept may never have got)
    elif not claimed and offer.expires_at > rt.clock.now_ms():
        if await conn.send(offer.frame()) and not offer.sent:  # (its dispatcher may not have sent it yet)
            await store.mark_sent(offer)  # shown: its expiry is now the rider's refusal


async def _tell_how_shown_offer_ended(conn: RiderConnection, store: OfferStore, pending: OfferRecord | None,
                                      carried: set[str]) -> None:
    """The ``offer_expired``, ``offer_withdrawn`` or ``assigned`` frame for the offer this socket last
    showed, settled since without that frame reaching it (published while the server's pub/sub was
    away). Nothing while it is still pending or being settled (its own frame is still to come), for
    its rider's own decline, or for an acceptance whose orders the rider no longer all carries
    (the ``route`` just sent says what holds)."""
    shown = conn.shown_offer
    if shown is None or (pending is not None and pending.offer_id == shown["offer_id"]):
        return
    offer_id = shown["offer_id"]
    settled = await store.settled(offer_id)
    if settled is None:
        if await store.load(offer_id) is not None or conn.runtime.clock.now_ms() <= shown["expires_at"]:
            return  # being settled now: its own frame follows
        settled = (conn.rider_id, EXPIRED)  # gone unanswered long ago (its record's safety TTL)
    rider_id, outcome = settled
    frame: dict[str, Any] | None = None
    if rider_id == conn.rider_id and outcome in (EXPIRED, WITHDRAWN):
        frame = {"type": f"offer_{outcome}", "offer_id": offer_id}
    elif rider_id == conn.rider_id and outcome == ACCEPTED and {o["order_id"] for o in shown["orders"]} <= carried:
        frame = {**{k: v for k, v in shown.items() if k != "expires_at"}, "type": "assigned"}
    if frame is None:
        conn.shown_offer = None
    else:
        await conn.send(frame)


async def _assigned_by(rt: Runtime, offer: OfferRecord, rider_id: str) -> list[dict]:
    """The records of ``offer``'s orders that its acceptance assigned to ``rider_id`` and it still carries."""
    found = await store_of(rt).load_many(list(offer.order_ids))
    return [raw for raw in found
            if raw is not None and raw.get("offer_id") == offer.offer_id and carried_by(raw, rider_id)]


# Always a route, even an empty one: an app that restarted learns that an order it remembers
# was cancelled or taken back while it was away; after an inbox gap, that a lost
# order_cancelled, assigned or unassigned frame changed what it carries.
ON_CONNECT.append(where_rider_stands)
ON_INBOX_GAP.append(where_rider_stands)
