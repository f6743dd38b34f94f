"""Live fan-out through Redis pub/sub: one listener per process, bounded queues per subscriber.

``PubSubHub.subscribe(channel)`` returns a :class:`Subscription` whose queue receives every
message published on that channel (by any process) after the subscription is active.
Queues are bounded: a subscriber that falls ``queue_size`` messages behind is marked
``overflowed`` and gets no more messages (its owner closes it: a slow consumer never
blocks others nor grows memory). Pub/sub is at-most-once: when the listener's Redis
connection fails, every subscription receives :data:`GAP` so its owner can resync, and
the listener (a supervised task) resubscribes everything on restart.
"""
from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Final

import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry, Counter

from tracker.supervisor import Supervisor

log = logging.getLogger("tracker.pubsub")


class _Gap:
    """Marker put in a subscription queue when messages may have been lost."""

    def __repr__(self) -> str:
        return "GAP"


GAP: Final = _Gap()


class Subscription:
    """One subscriber's bounded view of a channel."""

    def __init__(self, hub: "PubSubHub", channel: str, queue_size: int) -> None:
        self.hub = hub
        self.channel = channel
        self.queue: asyncio.Queue[str | _Gap] = asyncio.Queue(queue_size)
        self.overflowed = asyncio.Event()
        self.active = True

    def _offer(self, item: str | _Gap) -> None:
        if not self.active or self.overflowed.is_set():
            return
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            self.overflowed.set()
            self.hub._dropped.inc()

    async def get(self) -> str | _Gap:
        """The next message (or :data:`GAP`); raise :class:`SubscriberTooSlow` once overflowed."""
        if self.overflowed.is_set():
            raise SubscriberTooSlow(self.channel)
        get = asyncio.ensure_future(self.queue.get())
        over = asyncio.ensure_future(self.overflowed.wait())
        try:
            done, _ = await asyncio.wait({get, over}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            over.cancel()
            if not get.done():
                get.cancel()
        if get in done and not get.cancelled():
            return get.result()
        raise SubscriberTooSlow(self.channel)

    async def close(self) -> None:
        await self.hub.unsubscribe(self)


class SubscriberTooSlow(Exception):
    """The subscriber fell too far behind and was cut off."""


class PubSubHub:
    """Process-wide Redis pub/sub listener fanning out to bounded per-subscriber queues."""

    def __init__(self, redis: aioredis.Redis, supervisor: Supervisor, registry: CollectorRegistry, *, queue_size: int = 256) -> None:
        self.redis = redis
        self.supervisor = supervisor
        self.queue_size = queue_size
        self._subs: dict[str, set[Subscription]] = {}
        self._pubsub: aioredis.client.PubSub | None = None
        self._home = f"tracker:proc:{uuid.uuid4().hex}"  # keeps the connection subscribed
        self._lock = asyncio.Lock()
        self._ready = asyncio.Event()
        self._dropped = Counter(
            "tracker_pubsub_slow_subscribers", "Subscribers cut off for falling behind", registry=registry
        )
        self._published = Counter("tracker_pubsub_published", "Messages published", registry=registry)

    async def start(self) -> None:
        """Start the supervised listener and wait until it is subscribed."""
        self.supervisor.spawn("pubsub-listener", self._listen)
        await asyncio.wait_for(self._ready.wait(), timeout=10)

    async def stop(self) -> None:
        if self._pubsub is not None:
            try:
                await self._pubsub.aclose()
            except Exception:  # noqa: BLE001 - closing a broken connection
                pass
            self._pubsub = None

    async def publish(self, channel: str, message: str | bytes) -> None:
        await self.redis.publish(channel, message)
        self._published.inc()

    async def subscribe(self, channel: str) -> Subscription:
        """Subscribe; messages published after this returns are delivered."""
        sub = Subscription(self, channel, self.queue_size)
        async with self._lock:
            subs = self._subs.setdefault(channel, set())
            subs.add(sub)
            if len(subs) == 1 and self._pubsub is not None:
                await self._pubsub.subscribe(channel)
        return sub

    async def unsubscribe(self, sub: Subscription) -> None:
        sub.active = False
        async with self._lock:
            subs = self._subs.get(sub.channel)
            if not subs or sub not in subs:
                return
            subs.discard(sub)
            if not subs:
                del self._subs[sub.channel]
                if self._pubsub is not None:
                    try:
                        await self._pubsub.unsubscribe(sub.channel)
                    except Exception:  # noqa: BLE001 - the listener will resubscribe what is still wanted
                        log.warning("unsubscribe %s failed", sub.channel)

    def subscriber_count(self) -> int:
        return sum(len(s) for s in self._subs.values())

    async def _listen(self) -> None:
        pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        try:
            async with self._lock:
                await pubsub.subscribe(self._home, *self._subs.keys())
                self._pubsub = pubsub
            self._ready.set()
            while True:
                msg = await pubsub.get_message(timeout=1.0)
                if msg is None or msg.get("type") != "message":
                    continue
                for sub in tuple(self._subs.get(msg["channel"], ())):
                    sub._offer(msg["data"])
        except asyncio.CancelledError:
            raise
        except Exception:
            # Anything published while we were not listening is lost: tell every subscriber.
            for subs in self._subs.values():
                for sub in subs:
                    sub._offer(GAP)
            raise
        finally:
            self._pubsub = None
            try:
                await pubsub.aclose()
            except Exception:  # noqa: BLE001
                pass
