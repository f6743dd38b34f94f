"""``/v1/ws/customer`` (one order's channel) and ``/v1/ws/merchant`` (a merchant's feed)."""
from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Any, Awaitable, Callable

from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

from tracker.auth import Role
from tracker.cancelling import cancel_and_wait
from tracker.errors import ApiError
from tracker.logs import log_throttled
from tracker.locations.ratelimit import TokenBucket
from tracker.locations.store import last_fix
from tracker.orders import service
from tracker.orders.channel import forward
from tracker.orders.estimate import estimate_frame
from tracker.orders.food_ready import MAX_READY_AHEAD_MS, expected_ready_ms
from tracker.orders.feed_pace import SPACING_S
from tracker.orders.live import kitchen_catch_up, rider_location
from tracker.orders.machine import BEFORE_PICKUP, CARRYING, STATUSES
from tracker.orders.resume import id_key, is_stream_id
from tracker.orders.store import OrderChanged, events_key, feed_key, merchant_channel, order_channel, store_of
from tracker.redis_client import REDIS_DOWN, AnyRedis
from tracker.runtime import Runtime
from tracker.validate import ID_RULE, is_valid_id, require_id, require_number
from tracker.wsconn import CLOSE_INTERNAL, CLOSE_POLICY, WsSession, closes_when_redis_is_down, redis_close_reason

# Positions are published at most once a second per rider, the latest always sent (live.py).
# This cap only stops bursts (two processes feeding one rider while it reconnects): a cap of a
# full second would also drop regular frames whose spacing jitters just under a second, and
# with them an ETA change the customer would then not see until the rider's next fix.
# The feed spaces a rider's frames SPACING_S apart when it publishes them; they reach a socket
# with a few milliseconds' jitter each, so the cap here is a fifth less: a frame published
# exactly SPACING_S after the last (a re-fed fix with the ETAs of changed orders) is not dropped.
MIN_POSITION_SPACING_S = 0.8 * SPACING_S
MERCHANT_MAX_MESSAGE_RATE = 10.0  # kitchen messages (confirm, ready, delay) per second per socket (not the operator's)
MERCHANT_MESSAGE_BURST = 50  # a kitchen confirming a rush of orders at once
# A kitchen's delays of one order: each is an event of its history (a tablet stuck on "delay"
# grew it without end: over 1,000 and every customer resume is told too_many_missed).
MAX_DELAYS = 10
DELAY_ATTEMPTS = 5  # reads of an order other steps keep changing before a delay gives up (conflict)
# A kitchen board that resumes gets the prompts and riders' arrivals it missed for the orders of
# its feed's events this long before its last one (feed ids are Redis's clock), the newest so many.
RESUME_CATCH_UP_WINDOW_MS = 6 * 3600 * 1000
RESUME_CATCH_UP_EVENTS = 5000

log = logging.getLogger("tracker.orders")


async def _open(websocket: WebSocket, role: Role) -> tuple[Runtime, WsSession] | None:
    rt: Runtime = websocket.app.state.runtime
    session = await WsSession.open(
        websocket, secret=rt.secret, revocations=rt.revocations, roles=(role,), hub=rt.hub,
        max_frame_bytes=rt.settings.max_frame_bytes,
    )
    return None if session is None else (rt, session)


# ``ping`` answers ``pong``: at most this many a second on average (bursts of PING_BURST).
PING_RATE, PING_BURST = 1.0, 5
MAX_QUEUED_MESSAGES = 16  # messages read ahead of the one being handled (then reading waits)


async def _serve(session: WsSession, channel_task: Awaitable[None],
                 handle: Callable[[dict[str, Any]], Awaitable[None]] | None) -> None:
    task = asyncio.ensure_future(channel_task)
    closing: list[asyncio.Future[None]] = []

    def channel_ended(done: asyncio.Future[None]) -> None:
        # The channel feeding this socket failed (Redis gone): close with a reason, not a silent socket.
        if not done.cancelled() and done.exception() is not None:
            exc = done.exception()
            # (one line per outage window, counting the rest: every socket's channel fails at once)
            log_throttled(log, "a socket's channel failed", f"{session.principal.sub}: {exc!r}", level=logging.WARNING)
            reason = redis_close_reason(exc, "channel lost") if isinstance(exc, REDIS_DOWN) else "internal: channel failed"
            closing.append(asyncio.ensure_future(session.close(CLOSE_INTERNAL, reason)))

    task.add_done_callback(channel_ended)
    pings = TokenBucket(rate=PING_RATE, burst=PING_BURST)
    # Messages are handled one at a time, in order, by `work`; pings are answered as they are
    # read, so a page sees its socket alive while a step waits on Redis.
    queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(maxsize=MAX_QUEUED_MESSAGES)

    async def work() -> None:
        while (msg := await queue.get()) is not None:
            await session.answer(msg, handle(msg))  # type: ignore[misc]

    worker = asyncio.ensure_future(work()) if handle is not None else None
    try:
        async for msg in session.messages():
            if msg["type"] == "ping":  # a page checking that its socket still carries bytes
                if pings.take(time.monotonic()):
                    await session.send({"type": "pong", **({"ref": msg["id"]} if msg.get("id") is not None else {})})
                else:
                    await session.send_error(ApiError("rate_limited", f"at most {PING_RATE:g} pings per second"), msg.get("id"))
                continue
            if worker is None:
                await session.send_error(ApiError("unknown_type", f"this channel takes no {msg['type']!r} messages"),
                                         msg.get("id"))
                continue
            await queue.put(msg)
        if worker is not None:  # what was read is still handled (a step is not cut half-way)
            await queue.put(None)
            await worker
    finally:
        await cancel_and_wait([task] if worker is None else [task, worker])
        await asyncio.gather(*closing, return_exceptions=True)
        session.finish()


def _delayed(order: dict[str, str], minutes: float, now: int,
             default_prep_min: float | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The hash fields and event fields of a ``delay`` of ``minutes`` on ``order`` as read.

    A confirmed order (or one given a ready time) gets a new ``ready_at``, ``minutes`` past the
    later of now and its estimate. An order not confirmed yet has no ready time to move: its
    preparation, counted from the confirmation to come, grows by ``minutes`` instead
    (``prep_minutes``; the event's ``ready_at`` is ``null``), so a late confirm still counts."""
    if not order.get("confirmed_at") and not order.get("ready_at"):
        prep = float(order["prep_minutes"]) if order.get("prep_minutes") else (default_prep_min or 0.0)
        longer = prep + minutes
        if longer * 60_000 > MAX_READY_AHEAD_MS:
            raise ApiError("bad_message", "a delay may not make the food's preparation longer than 7 days")
        return {"prep_minutes": longer}, {"ready_at": None, "prep_minutes": longer}
    ready_at = max(expected_ready_ms(order, default_prep_min) or 0, now) + int(minutes * 60000)
    if ready_at > now + MAX_READY_AHEAD_MS:
        raise ApiError("bad_message", "a delay may not move the food's ready time more than 7 days ahead")
    return {"ready_at": ready_at}, {"ready_at": ready_at}


def _holds_id(redis: AnyRedis, stream: str) -> Callable[[str], Awaitable[bool]]:
    """Whether the stream ``stream`` holds an entry of that id."""
    async def holds(event_id: str) -> bool:
        return bool(await redis.xrange(stream, min=event_id, max=event_id))
    return holds


async def _checked_last_id(session: WsSession, raw: str | None, first: str | None, known: Callable[[str], Awaitable[bool]],
                           trimmed: bool) -> str | None:
    """The client's ``last_event_id`` if usable; else ``None`` (full history), saying why when
    the client's view cannot be continued.

    A malformed id is the client's bug: an error frame. An id older than the stream's first
    entry ``first`` (``None``: it holds none; ``0-0`` included) on a stream that has lost nothing
    (``trimmed`` false: never trimmed, or its first entry is the first it ever held, as read
    with ``first``) misses nothing: the whole
    history follows, with no ``resync``. Any other well-formed id the stream does not hold gets a
    ``resync`` telling the client to rebuild its view from what follows: ``history_trimmed``
    when it is older than what a trimmed stream keeps, else ``unknown_last_event_id``.
    """
    if raw is None:
        return None
    if not is_stream_id(raw):
        await session.send_error(ApiError("bad_message", f"malformed last_event_id {raw!r}; sending the full history"))
        return None
    if await known(raw):
        return raw
    if first is None:  # nothing held: an expired feed lost what the id saw; else only "from the start" continues
        lost = trimmed
        older = lost or id_key(raw) == (0, 0)
    else:
        older = id_key(raw) < id_key(first)
        lost = older and trimmed
    if older and not lost:
        return None
    await session.send({"type": "resync", "reason": "history_trimmed" if lost else "unknown_last_event_id"})
    return None


async def customer_ws(websocket: WebSocket) -> None:
    opened = await _open(websocket, Role.CUSTOMER)
    if opened is None:
        return
    rt, session = opened
    order_id = websocket.query_params.get("order_id")
    if not order_id:
        await session.close(CLOSE_POLICY, "bad_request: order_id query parameter missing (?order_id=ID: the order to follow)")
        return
    if not is_valid_id(order_id):
        await session.close(CLOSE_POLICY, f"bad_request: order_id query parameter malformed: an id is {ID_RULE}")
        return
    if not session.principal.is_operator and session.principal.sub != order_id:
        await session.close(CLOSE_POLICY, "forbidden: a customer token watches only its own order")
        return
    raw = await store_of(rt).load(order_id)  # type: ignore[arg-type]
    if raw is None:
        await session.close(CLOSE_POLICY, f"not_found: no order {order_id!r}")
        return
    store, merchant, placed_at = store_of(rt), raw["merchant_id"], raw.get("placed_at")
    history = await store.history(merchant, order_id, count=1)  # type: ignore[arg-type]
    last = await _checked_last_id(session, websocket.query_params.get("last_event_id"),
                                  history[0]["id"] if history else None,
                                  _holds_id(rt.redis, events_key(merchant, order_id)), False)  # (never trimmed)
    # The order's status now: a resume that replays no event must still pass the rider's positions.
    view = {"status": raw["status"], "sent_at": 0.0}

    def on_event(event: dict[str, Any]) -> None:
        kind = event["kind"]
        if kind in STATUSES:
            view["status"] = kind
        elif kind == "rider_unassigned":
            view["status"] = "confirmed"

    def allow(msg: dict[str, Any]) -> bool:
        if msg.get("order_id") != order_id:
            return False
        if msg.get("type") == "estimate":  # the plan's drop-off, only while the order waits for a rider
            return view["status"] == "confirmed"
        # Privacy: positions only while a rider carries this order; bursts capped.
        if msg.get("type") != "rider_location" or view["status"] not in CARRYING:
            return False
        now = time.monotonic()
        if now - view["sent_at"] < MIN_POSITION_SPACING_S:  # type: ignore[operator]
            return False
        view["sent_at"] = now
        return True

    async def read(after: str | None, count: int) -> list[dict[str, Any]]:
        # (On opening and after a gap.) An order that expired, and maybe was created again under
        # its id since (another order, perhaps another merchant's), is not this channel's: its
        # events would read as this one's going backwards, or not at all. Closed, as an order
        # that is not there would be refused.
        now = await store.load(order_id)  # type: ignore[arg-type]
        if now is None or now["merchant_id"] != merchant or now.get("placed_at") != placed_at:
            await session.close(CLOSE_POLICY, f"not_found: order {order_id!r} ended and is no longer kept"
                                              + (" (its id was used again for a new order)" if now else ""))
            return []
        return await store.history(merchant, order_id, after, count)  # type: ignore[arg-type]

    async def latest_view() -> None:
        # Where the rider was last seen, so a page opened (or reloaded) while its phone is quiet
        # still shows it; ``ts`` says how old the position is. After the history, as its events
        # say that a rider carries the order (the order read again: its rider as of now). An
        # order still waiting for a rider gets the plan's estimate instead, ``null`` when there
        # is none (a page that reconnects must not keep counting down one that went meanwhile).
        # Only what the events sent so far allow: an order assigned since the history was read
        # has its ``assigned`` event still to come, and its positions after it (as live ones).
        if view["status"] not in CARRYING and view["status"] != "confirmed":
            return
        now = await store.load(order_id)  # type: ignore[arg-type]
        if view["status"] == "confirmed":
            if now is not None and now["status"] == "confirmed" and not now.get("rider_id"):
                planned = int(now["planned_eta"]) if now.get("planned_eta") else None
                await session.send(estimate_frame(order_id, planned, rt.clock.now_ms()))
            return
        if now is None or now["status"] not in CARRYING or not now.get("rider_id"):
            return
        fix, _, _ = await last_fix(rt.redis, now["rider_id"])
        if fix is not None:
            stops = now.get("stops_before")  # (as the rider's last fix left them)
            await session.send(rider_location(order_id, now["rider_id"], fix, int(now["eta"]) if now.get("eta") else None,
                                              int(stops) if stops else None))

    await _serve(session, forward(rt, session, order_channel(order_id), read, last,  # type: ignore[arg-type]
                                  on_event=on_event, allow_ephemeral=allow, after_history=latest_view), None)


async def merchant_ws(websocket: WebSocket) -> None:
    opened = await _open(websocket, Role.MERCHANT)
    if opened is None:
        return
    rt, session = opened
    merchant = session.principal.sub
    named = websocket.query_params.get("merchant_id")
    if session.principal.is_operator:
        merchant = named or ""
        if not is_valid_id(merchant):
            await session.close(CLOSE_POLICY, "bad_request: operators name the merchant with ?merchant_id=")
            return
    elif named and named != merchant:
        await session.close(CLOSE_POLICY, "forbidden: a merchant token opens only its own merchant's feed")
        return
    store = store_of(rt)
    # The feed's newest id, its first and whether it was trimmed, read at one moment: a feed still
    # empty then had no event meanwhile.
    newest, first, trimmed = await store.feed_ends(merchant)
    holds = _holds_id(rt.redis, feed_key(merchant))

    async def known(event_id: str) -> bool:  # the newest id the feed was given misses nothing, even once it expired
        return event_id == newest or await holds(event_id)

    last = await _checked_last_id(session, websocket.query_params.get("last_event_id"), first, known, trimmed)
    if last is None and first is None:
        last = newest  # an expired feed: the next event's ``prev`` is its newest id, not a gap

    async def read(after: str | None, count: int) -> list[dict[str, Any]]:
        return await store.feed(merchant, after, count)

    bucket = TokenBucket(rate=MERCHANT_MAX_MESSAGE_RATE, burst=MERCHANT_MESSAGE_BURST)

    async def handle(msg: dict[str, Any]) -> None:
        kind = msg["type"]
        if kind not in ("confirm", "ready", "delay"):
            raise ApiError("unknown_type", f"unknown message type {kind!r}")
        if not session.principal.is_operator and not bucket.take(time.monotonic()):
            raise ApiError("rate_limited", f"at most {MERCHANT_MAX_MESSAGE_RATE:g} kitchen messages per second "
                                           f"(bursts of {MERCHANT_MESSAGE_BURST})")
        order_id = require_id(msg, "order_id")
        raw = await store.load(order_id)
        if raw is None and session.principal.is_operator:
            raise ApiError("not_found", f"no order {order_id!r}")
        if raw is None or raw["merchant_id"] != merchant:  # unknown or another's: the same answer
            raise ApiError("forbidden", f"order {order_id!r} is not one of this merchant's orders")
        if kind == "confirm":
            await service.step(rt, [order_id], "confirmed", merchant_id=merchant)
        elif kind == "ready":
            await service.step(rt, [order_id], "food_ready", merchant_id=merchant)
        else:
            await delay(order_id, require_number(msg, "minutes", lo=1, hi=240), raw)

    async def delay(order_id: str, minutes: float, raw: dict[str, str]) -> None:
        """Put the food back ``minutes`` (:func:`_delayed`): computed from the order as read, and
        applied only if no step changed it since (two tablets delaying at once: each counts from
        the other's estimate, instead of one delay lost)."""
        for _ in range(DELAY_ATTEMPTS):
            now = rt.clock.now_ms()
            delays = int(raw.get("food_delays") or 0)
            # (An order past delaying, the food ready or the order over, is refused for that by
            # the step itself: the cap only answers a delay the order could still take.)
            delayable = raw.get("status") in BEFORE_PICKUP and not raw.get("food_ready_at")
            if delays >= MAX_DELAYS and delayable and not session.principal.is_operator:
                raise ApiError("too_many_delays", f"order {order_id!r} was delayed {delays} times, the most a kitchen "
                                                  "may; if the food cannot be made, cancel the order")
            fields, extra = _delayed(raw, minutes, now, rt.settings.default_prep_min)
            try:
                await service.step(rt, [order_id], "food_delayed", merchant_id=merchant,
                                   fields={**fields, "food_delays": delays + 1},
                                   event_extra={"minutes": minutes, **extra,
                                                "delays_left": max(0, MAX_DELAYS - delays - 1)},
                                   unchanged={"last_event_id": raw.get("last_event_id", "")})
                return
            except OrderChanged:  # another step came first: read it, after a moment (others may be at it too)
                await asyncio.sleep(random.uniform(0.005, 0.05))
                raw = await store.load(order_id) or raw
        raise ApiError("conflict", f"order {order_id!r} kept changing; send the delay again")

    replayed: set[str] = set()  # the orders of the history this socket is sent (live ones are not kept)
    live = False

    def note(event: dict[str, Any]) -> None:
        if not live:
            replayed.add(event["order_id"])

    async def catch_up() -> None:
        # A board that reloads (or opens late) still shows "start plating" and when riders on
        # their way arrive; one that resumes after a drop gets them for the orders it already
        # had, whose events came before ``last``, as well as for those it was just sent.
        nonlocal live
        live = True
        if last is not None:
            replayed.update(await store.feed_orders_before(merchant, last, RESUME_CATCH_UP_WINDOW_MS,
                                                           RESUME_CATCH_UP_EVENTS))
        for frame in await kitchen_catch_up(rt.redis, merchant, replayed, rt.clock.now_ms()):
            await session.send(frame)
        replayed.clear()

    await _serve(session, forward(rt, session, merchant_channel(merchant), read, last,
                                  on_event=note, after_history=catch_up), handle)


routes = [WebSocketRoute("/v1/ws/customer", closes_when_redis_is_down(customer_ws)),
          WebSocketRoute("/v1/ws/merchant", closes_when_redis_is_down(merchant_ws))]
