"""The socket side of a resumable channel: history, then live, resync on any gap.

Used by the customer (one order's stream) and merchant (the merchant feed) sockets. The
ordering logic is :class:`~tracker.orders.resume.Resume`; this adapter does the I/O:
subscribe first, read history, forward live messages, cut off a subscriber that is too slow.
Messages without an ``id`` (``rider_location``, ``estimate``, ``prompt``, ``rider_eta``) are
ephemeral: passed through a filter and never replayed.
"""
from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable

import orjson

from tracker.orders.resume import GAP, Resume
from tracker.pubsub import GAP as PUBSUB_GAP
from tracker.pubsub import SubscriberTooSlow, Subscription
from tracker.runtime import Runtime
from tracker.wsconn import CLOSE_POLICY, WsSession

TOO_SLOW = "too_slow: subscriber fell too far behind; reconnect with last_event_id"
CLOSE_WAIT_S = 10.0
MAX_REPLAY = 1000  # a resume that missed more than this: resync instead of a flood

HistoryReader = Callable[[str | None, int], Awaitable[list[dict[str, Any]]]]
Filter = Callable[[dict[str, Any]], bool]


def event_frame(event: dict[str, Any]) -> dict[str, Any]:
    frame = {"type": "event", **event}
    frame.pop("prev", None)
    return frame


async def forward(rt: Runtime, session: WsSession, channel: str, read_history: HistoryReader,
                  last_event_id: str | None, *, on_event: Callable[[dict[str, Any]], None] | None = None,
                  allow_ephemeral: Filter | None = None,
                  after_history: Callable[[], Awaitable[None]] | None = None) -> None:
    """Run the channel until the socket closes; ``after_history`` runs once, when the history
    asked for has been sent and before anything live is.

    A client that asked for the whole history (no ``last_event_id``) gets all of it, in pages of
    :data:`MAX_REPLAY`; one resuming after missing more than that gets ``resync``
    (``too_many_missed``) for each :data:`MAX_REPLAY` + 1 events skipped, then the rest.
    """
    whole_history = last_event_id is None
    sub = await rt.pubsub.subscribe(channel, f"{session.principal.role.value} {session.principal.sub}")
    resume = Resume(last_event_id)
    # A send blocked on a client that stopped reading would never see the overflow: watch it.
    watchdog = asyncio.ensure_future(_cut_when_overflowed(sub, session))
    try:
        while not session.closed:
            missed = await read_history(resume.last, MAX_REPLAY + 1)
            if len(missed) > MAX_REPLAY and whole_history:
                for event in missed[:MAX_REPLAY]:
                    if on_event:
                        on_event(event)
                    await session.send(event_frame(event))
                resume.last = missed[MAX_REPLAY - 1]["id"]
                continue
            if len(missed) > MAX_REPLAY:
                # Not replayable as a whole: say so, skip ahead, and let the client reload.
                await session.send({"type": "resync", "reason": "too_many_missed"})
                resume.last = missed[-1]["id"]
                continue
            for event in resume.history(missed):
                if on_event:
                    on_event(event)
                await session.send(event_frame(event))
            if after_history is not None:
                await after_history()
                after_history = None
            while not session.closed:
                item = await sub.get()
                if item is PUBSUB_GAP:
                    await _resync(session)
                    break
                msg = orjson.loads(item)
                if "id" not in msg:
                    if allow_ephemeral is None or allow_ephemeral(msg):
                        await session.send(msg)
                    continue
                delivered = resume.live(msg)
                if delivered is GAP:
                    await _resync(session)
                    break
                for event in delivered:  # type: ignore[union-attr]
                    if on_event:
                        on_event(event)
                    await session.send(event_frame(event))
    except SubscriberTooSlow:
        await session.close(CLOSE_POLICY, TOO_SLOW)
    finally:
        try:
            if sub.overflowed.is_set():
                # Let the close frame go out once the client drains; a client that never reads
                # is left to the WebSocket ping timeout. (The socket's own loop, seeing it closed,
                # cancels this task, often during this wait.)
                await asyncio.wait([watchdog], timeout=CLOSE_WAIT_S)
        finally:
            watchdog.cancel()
            await sub.close()  # whatever happened above: a subscription left behind would hold its queue for good


async def _cut_when_overflowed(sub: Subscription, session: WsSession) -> None:
    await sub.overflowed.wait()
    await session.close(CLOSE_POLICY, TOO_SLOW)


async def _resync(session: WsSession) -> None:
    """Tell the client a live message was lost; the caller re-reads the history from the last
    event delivered (``live_gap``: the client need not do anything)."""
    await session.send({"type": "resync", "reason": "live_gap"})
