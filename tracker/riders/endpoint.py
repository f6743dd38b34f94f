"""``/v1/ws/rider``: one rider's socket, dispatching each message type to its handler.

Features register handlers by message type with :func:`handles` (``location``,
``availability``, ``accept``, ``progress``...). Messages for the rider from any process
(offers, assignments) are published on the rider's inbox channel (:func:`tracker.riders.inbox.inbox_channel`)
and forwarded to its socket; inbox messages whose ``type`` starts with ``_`` are internal
notices handled by :func:`handles_internal` handlers and never forwarded.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

import orjson
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

from tracker.auth import Role
from tracker.cancelling import cancel_and_wait
from tracker.errors import ApiError
from tracker.locations.ratelimit import FloodGuard, TokenBucket
from tracker.logs import log_failure
from tracker.pubsub import GAP, SubscriberTooSlow, Subscription
from tracker.redis_client import REDIS_DOWN
from tracker.riders.inbox import RECHECK, inbox_channel
from tracker.runtime import Runtime
from tracker.wsconn import CLOSE_INTERNAL, CLOSE_POLICY, WsSession, closes_when_redis_is_down, redis_close_reason

log = logging.getLogger("tracker.riders")

OFFER_ENDINGS = ("assigned", "offer_expired", "offer_withdrawn")  # frames that tell how an offer ended


@dataclass
class RiderConnection:
    """One connected rider: its session, id and per-connection state for handlers."""

    session: WsSession
    rider_id: str
    runtime: Runtime
    state: dict[str, Any] = field(default_factory=dict)
    # The last ``offer`` frame sent on this socket, until a frame that settles it follows: what
    # the rider may still have on screen (told after an inbox gap if it was settled unheard).
    shown_offer: dict[str, Any] | None = None

    async def send(self, message: dict[str, Any]) -> bool:
        kind = message.get("type")
        if kind == "offer":
            self.shown_offer = message
        elif kind in OFFER_ENDINGS and self.shown_offer is not None \
                and message.get("offer_id") == self.shown_offer.get("offer_id"):
            self.shown_offer = None
        return await self.session.send(message)


Handler = Callable[[RiderConnection, dict[str, Any]], Awaitable[None]]
Hook = Callable[[RiderConnection], Awaitable[None]]

HANDLERS: dict[str, Handler] = {}
INTERNAL_HANDLERS: dict[str, Handler] = {}
ON_CONNECT: list[Hook] = []
ON_DISCONNECT: list[Hook] = []
ON_INBOX_GAP: list[Hook] = []  # after inbox messages may have been lost: re-read and re-tell


def handles(msg_type: str) -> Callable[[Handler], Handler]:
    """Register the handler of client messages of ``msg_type``."""

    def register(fn: Handler) -> Handler:
        HANDLERS[msg_type] = fn
        return fn

    return register


def handles_internal(msg_type: str) -> Callable[[Handler], Handler]:
    """Register the handler of an internal inbox notice (``type`` starting with ``_``)."""
    if not msg_type.startswith("_"):
        raise ValueError("internal notice types start with '_'")

    def register(fn: Handler) -> Handler:
        INTERNAL_HANDLERS[msg_type] = fn
        return fn

    return register


# Messages other than fixes (which have their own limit): enough for any app, bounded for a flood,
# whose backlog (thousands queued before the client even left) would cost a Redis write each.
RIDER_MAX_MESSAGE_RATE = 20.0  # a second, per socket
RIDER_MESSAGE_BURST = 50
RIDER_FLOOD_REFUSALS, RIDER_FLOOD_WINDOW_S = 50, 10.0  # refusals that close the socket (1008)

INBOX_TOO_SLOW = "too_slow: the rider's inbox fell too far behind; reconnect"


async def _close_when_overflowed(conn: RiderConnection, sub: Subscription) -> None:
    """Close a socket whose inbox overflowed, even while a send to it is blocked (a client that
    stopped reading), instead of leaving it to the keepalive ping."""
    await sub.overflowed.wait()
    await conn.session.close(CLOSE_POLICY, INBOX_TOO_SLOW)


async def _forward_inbox(conn: RiderConnection, sub: Subscription) -> None:
    try:
        while not conn.session.closed:
            item = await sub.get()
            if item is GAP or item == RECHECK:
                # Messages may have been lost (Redis pub/sub is at-most-once), or were never sent
                # (a step's follow-ups repaired later): what they would have changed is re-read
                # and told (the route, an open offer; see ON_INBOX_GAP).
                for hook in ON_INBOX_GAP:
                    try:
                        await hook(conn)
                    except Exception as exc:  # noqa: BLE001 - the inbox must go on
                        log_failure(log, "rider inbox resync failed", exc, rider=conn.rider_id)
                continue
            msg = orjson.loads(item)
            kind = msg.get("type", "")
            if kind.startswith("_"):
                handler = INTERNAL_HANDLERS.get(kind)
                if handler is not None:
                    try:
                        await handler(conn, msg)
                    except Exception as exc:  # noqa: BLE001 - one notice failing must not end the inbox
                        log_failure(log, f"rider inbox notice {kind} failed", exc, rider=conn.rider_id)
                continue
            await conn.send(msg)
    except SubscriberTooSlow:
        await conn.session.close(CLOSE_POLICY, INBOX_TOO_SLOW)
    except Exception as exc:  # noqa: BLE001 - without its inbox the socket would get no offers: close it
        log_failure(log, "rider inbox failed", exc, rider=conn.rider_id)
        reason = redis_close_reason(exc, "inbox lost") if isinstance(exc, REDIS_DOWN) else "internal: inbox failed"
        await conn.session.close(CLOSE_INTERNAL, reason)


async def rider_ws(websocket: WebSocket) -> None:
    rt: Runtime = websocket.app.state.runtime
    session = await WsSession.open(
        websocket, secret=rt.secret, revocations=rt.revocations, roles=(Role.RIDER,), hub=rt.hub,
        max_frame_bytes=rt.settings.max_frame_bytes,
    )
    if session is None:
        return
    if session.principal.role is not Role.RIDER:
        await session.close(CLOSE_POLICY, "forbidden: this socket is for riders (role 'rider')")
        return
    conn = RiderConnection(session=session, rider_id=session.principal.sub, runtime=rt)
    sub: Subscription | None = None
    inbox: asyncio.Task[None] | None = None
    watchdog: asyncio.Task[None] | None = None
    try:
        try:
            # Returns once Redis confirmed it (or raises): no offer sent from now on is missed.
            sub = await rt.pubsub.subscribe(inbox_channel(conn.rider_id), f"rider {conn.rider_id}")
        except REDIS_DOWN:
            await session.close(CLOSE_INTERNAL, "redis_unavailable: the rider's inbox could not be subscribed")
            return
        for hook in ON_CONNECT:
            await hook(conn)
        # Forwarded only now: a notice published while the hooks read (an ``unassigned`` after the
        # route's read, say) follows the frame it amends instead of overtaking it.
        inbox = asyncio.create_task(_forward_inbox(conn, sub), name=f"rider-inbox:{conn.rider_id}")
        watchdog = asyncio.create_task(_close_when_overflowed(conn, sub), name=f"rider-inbox-watch:{conn.rider_id}")
        bucket = TokenBucket(rate=RIDER_MAX_MESSAGE_RATE, burst=RIDER_MESSAGE_BURST)
        flood = FloodGuard(RIDER_FLOOD_REFUSALS, RIDER_FLOOD_WINDOW_S)
        async for msg in session.messages():
            handler = HANDLERS.get(msg["type"])
            if handler is None:
                await session.send_error(ApiError("unknown_type", f"unknown message type {msg['type']!r}"), msg.get("id"))
                continue
            now = time.monotonic()
            if msg["type"] != "location" and not bucket.take(now):
                await session.send_error(ApiError("rate_limited", f"at most {RIDER_MAX_MESSAGE_RATE:g} messages a second "
                                                  f"besides location fixes (bursts of {RIDER_MESSAGE_BURST})"), msg.get("id"))
                if flood.refused(now):
                    await session.close(CLOSE_POLICY, "rate_limited: too many messages, connection closed")
                continue
            await session.answer(msg, handler(conn, msg))
    finally:
        await cancel_and_wait(t for t in (inbox, watchdog) if t is not None)
        if sub is not None:
            await sub.close()
        for hook in ON_DISCONNECT:
            try:
                await hook(conn)
            except Exception as exc:  # noqa: BLE001 - a failing hook must not skip the others
                log_failure(log, "rider disconnect hook failed", exc, rider=conn.rider_id)
        session.finish()


routes = [WebSocketRoute("/v1/ws/rider", closes_when_redis_is_down(rider_ws))]
