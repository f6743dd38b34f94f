"""Live fan-out through Redis pub/sub: one listener per process, bounded queues per subscriber.

``PubSubHub.subscribe(channel)`` returns a :class:`Subscription` whose queue receives every
message published on that channel (by any process) after it returns: it waits for Redis to
confirm the SUBSCRIBE, so a caller that reads durable history next cannot miss a message.
Queues are bounded: a subscriber that falls ``queue_size`` messages behind is marked
``overflowed`` and gets no more messages (its owner closes it: a slow consumer never
blocks others nor grows memory). Pub/sub is at-most-once: when the listener's Redis
connection fails, every subscription receives :data:`GAP` so its owner can resync, and
the listener (a supervised task) resubscribes everything on restart; each subscription then
receives a second :data:`GAP` once its channel is subscribed again, so an owner that re-reads
durable state on every GAP misses nothing published while the listener was away. A
connection that goes silent without being closed counts as failed too
(:mod:`tracker.pubsub_liveness`): the listener PINGs it when idle and drops it when nothing answers.
"""
from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import deque
from typing import Final

import redis.asyncio as aioredis
from redis.exceptions import TimeoutError as RedisTimeoutError
from prometheus_client import CollectorRegistry, Counter

from tracker.logs import log_throttled
from tracker.pubsub_liveness import Liveness, PubSubSilent
from tracker.redis_client import AnyRedis
from tracker.supervisor import Supervisor

log = logging.getLogger("tracker.pubsub")

CONFIRM_TIMEOUT_S = 5.0  # how long subscribe() waits for Redis to confirm the SUBSCRIBE
RECONNECT_POLL_S = 0.02  # how often subscribe() looks whether a restarting listener is back
LISTEN_POLL_S = 1.0  # the longest the listener waits for a message before it looks at its connection
TOO_SLOW_LINE = "a subscriber fell too far behind and was cut off (too_slow)"


class _Gap:
    """Marker put in a subscription queue when messages may have been lost."""

    def __repr__(self) -> str:
        return "GAP"


GAP: Final = _Gap()


class Subscription:
    """One subscriber's bounded view of a channel."""

    def __init__(self, hub: "PubSubHub", channel: str, queue_size: int, who: str = "") -> None:
        self.hub = hub
        self.channel = channel
        self.who = who  # whose it is, for the log (a socket's role and subject)
        self.taken_at = time.monotonic()  # when its owner last took a message (or subscribed)
        self.queue: asyncio.Queue[str | _Gap] = asyncio.Queue(queue_size)
        self.overflowed = asyncio.Event()
        self.active = True
        self.gapped = False  # it had GAP for a failed listener and gets another once subscribed again

    def _offer(self, item: str | _Gap) -> None:
        if not self.active or self.overflowed.is_set():
            return
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            self.overflowed.set()
            self.hub._dropped.inc()
            log_throttled(log, TOO_SLOW_LINE, f"{self.who or 'a subscriber'} on {self.channel}: "
                          f"{self.queue.qsize()} messages unread, the last taken {time.monotonic() - self.taken_at:.1f} s "
                          "ago", level=logging.WARNING, channel=self.channel, subject=self.who)

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
            self.taken_at = time.monotonic()
            return get.result()
        raise SubscriberTooSlow(self.channel)

    async def close(self) -> None:
        await self.hub.unsubscribe(self)


class SubscriberTooSlow(Exception):
    """The subscriber fell too far behind and was cut off."""


class PubSubHub:
    """Process-wide Redis pub/sub listener fanning out to bounded per-subscriber queues."""

    def __init__(self, redis: AnyRedis, supervisor: Supervisor, registry: CollectorRegistry, *, queue_size: int = 256) -> None:
        self.redis = redis
        self.supervisor = supervisor
        self.queue_size = queue_size
        self._subs: dict[str, set[Subscription]] = {}
        self._pubsub: aioredis.client.PubSub | None = None
        self._home = f"tracker:proc:{uuid.uuid4().hex}"  # keeps the connection subscribed
        self._lock = asyncio.Lock()
        self._ready = asyncio.Event()
        self._liveness: Liveness | None = None  # the listener's current connection's
        # One future per SUBSCRIBE sent and not yet confirmed, per channel, in sending order:
        # Redis confirms in that order on the listener's connection.
        self._unconfirmed: dict[str, deque[asyncio.Future[bool]]] = {}
        self._unsubscribing: set[asyncio.Task[None]] = set()
        self._dropped = Counter(
            "tracker_pubsub_slow_subscribers", "Subscribers cut off for falling behind", registry=registry
        )
        self._published = Counter("tracker_pubsub_published", "Messages published", registry=registry)

    @property
    def listening(self) -> bool:
        """Whether the listener is connected and its connection proven alive (Redis confirmed its
        SUBSCRIBE, and has answered every PING since): while it is not (restarting after Redis was
        away, or its connection went silent), a new subscription waits for it, and fails after
        :data:`CONFIRM_TIMEOUT_S`."""
        return self._pubsub is not None and self._liveness is not None and self._liveness.alive

    async def start(self) -> None:
        """Start the supervised listener and wait until it is subscribed."""
        self.supervisor.spawn("pubsub-listener", self._listen)
        async with asyncio.timeout(10):
            await self._ready.wait()

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

    async def subscribe(self, channel: str, who: str = "") -> Subscription:
        """Subscribe; every message published after this returns is delivered. ``who``: whose the
        subscription is, for the log line that says it was cut off as too slow.

        Waits until Redis has confirmed the SUBSCRIBE (redis-py only sends it): a caller that
        reads durable history next must not miss what is published in between. Raises Redis's
        ``TimeoutError`` when no confirmation comes within :data:`CONFIRM_TIMEOUT_S`.
        """
        sub = Subscription(self, channel, self.queue_size, who)
        try:
            async with asyncio.timeout(CONFIRM_TIMEOUT_S):
                await self._subscribe(sub)
        except TimeoutError:
            await self.unsubscribe(sub)
            raise RedisTimeoutError(f"Redis did not confirm the subscription to {channel}") from None
        except BaseException:
            await self.unsubscribe(sub)
            raise
        return sub

    async def _subscribe(self, sub: Subscription) -> None:
        async with self._lock:
            subs = self._subs.setdefault(sub.channel, set())
            first = not subs
            subs.add(sub)
            broken = None
            if first and self._pubsub is not None:
                try:
                    await self._send_subscribe(self._pubsub, sub.channel)
                except Exception:  # noqa: BLE001 - a dead connection fails in more ways than one
                    broken = self._pubsub  # its listener is about to fail and restart
        while True:
            # While the listener reconnects, wait: once back it subscribes every wanted channel.
            while self._pubsub is None or self._pubsub is broken:
                await asyncio.sleep(RECONNECT_POLL_S)
            pending = self._unconfirmed.get(sub.channel)
            if not pending:
                return  # confirmed already
            on = self._pubsub
            if await asyncio.shield(pending[-1]):
                return
            broken = on  # that connection died before confirming: wait for the next one

    async def _send_subscribe(self, pubsub: aioredis.client.PubSub, *channels: str) -> None:
        """Send SUBSCRIBE (caller holds the lock) and expect one confirmation per channel."""
        loop = asyncio.get_running_loop()
        for channel in channels:
            self._unconfirmed.setdefault(channel, deque()).append(loop.create_future())
        await pubsub.subscribe(*channels)

    def _confirm(self, channel: str) -> None:
        pending = self._unconfirmed.get(channel)
        if not pending:
            return
        done = pending.popleft()
        if not pending:
            del self._unconfirmed[channel]
        if not done.done():
            done.set_result(True)

    def _release_waiters(self) -> None:
        """The connection is gone: nothing pending will be confirmed on it."""
        for pending in self._unconfirmed.values():
            for waiter in pending:
                if not waiter.done():
                    waiter.set_result(False)  # not confirmed: the subscriber waits for the next connection
        self._unconfirmed.clear()

    async def unsubscribe(self, sub: Subscription) -> None:
        """Stop delivering to ``sub``; the channel's last subscriber also unsubscribes it in Redis.

        ``sub`` leaves at once, before any wait, so a caller cancelled here leaves nothing behind;
        the UNSUBSCRIBE runs in a task of its own that a cancelled caller does not stop."""
        sub.active = False
        subs = self._subs.get(sub.channel)
        if not subs or sub not in subs:
            return
        subs.discard(sub)
        if subs:
            return
        del self._subs[sub.channel]
        task = asyncio.ensure_future(self._unsubscribe_unwanted(sub.channel))
        self._unsubscribing.add(task)  # (held until done: the loop keeps only weak references)
        task.add_done_callback(self._unsubscribing.discard)
        await asyncio.shield(task)

    async def _unsubscribe_unwanted(self, channel: str) -> None:
        async with self._lock:
            if channel in self._subs or self._pubsub is None:
                return  # wanted again meanwhile (its SUBSCRIBE went out), or no listener to unsubscribe
            try:
                await self._pubsub.unsubscribe(channel)
            except Exception:  # noqa: BLE001 - the listener resubscribes only what is still wanted
                log.warning("unsubscribe %s failed", channel)

    async def _listen(self) -> None:
        # A new name each attempt: on a Redis Cluster the listener connects to the node serving
        # this channel's slot, so after a failure it tries another node, not the dead one again.
        self._home = f"tracker:proc:{uuid.uuid4().hex}"
        pubsub = self.redis.pubsub()
        watch = self._liveness = Liveness(time.monotonic())
        try:
            async with self._lock:
                await self._send_subscribe(pubsub, self._home, *self._subs.keys())
                self._pubsub = pubsub
            self._ready.set()
            while True:
                looked = time.monotonic()
                msg = await pubsub.get_message(timeout=min(LISTEN_POLL_S, max(0.01, watch.wait_s(looked))))
                if msg is None:
                    await self._nothing_came(pubsub, watch, looked)
                    continue
                watch.heard(time.monotonic())
                if msg.get("type") == "subscribe":
                    self._confirm(msg["channel"])
                    for sub in tuple(self._subs.get(msg["channel"], ())):
                        if sub.gapped:  # subscribed again: now a re-read misses nothing
                            sub.gapped = False
                            sub._offer(GAP)
                elif msg.get("type") == "message":
                    for sub in tuple(self._subs.get(msg["channel"], ())):
                        sub._offer(msg["data"])
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if isinstance(exc, PubSubSilent) and watch.alive:
                log.warning("the pub/sub listener's connection went silent: %s; taken as lost, as if Redis had "
                            "closed it: %d subscriptions resync, and the listener reconnects", exc,
                            sum(map(len, self._subs.values())))
            # Anything published while we were not listening is lost: tell every subscriber,
            # now and again once subscribed again (a subscriber that re-read its history at the
            # first GAP may have read it before the last message published to nobody). One told
            # already and not subscribed again since gets its second GAP then: no more meanwhile.
            for subs in self._subs.values():
                for sub in subs:
                    if not sub.gapped:
                        sub.gapped = True
                        sub._offer(GAP)
            raise
        finally:
            self._pubsub = None
            self._liveness = None
            self._ready.clear()
            self._release_waiters()
            try:
                await pubsub.aclose()
            except Exception:  # noqa: BLE001
                pass

    async def _nothing_came(self, pubsub: aioredis.client.PubSub, watch: Liveness, looked: float) -> None:
        """A look at the connection begun at ``looked`` found nothing: PING it if it has been idle
        a while; raise :class:`PubSubSilent` if a question was overdue when the look began (a
        look begun earlier, say by a loop blocked a while, may have missed an answer that is there)."""
        if watch.overdue(looked):
            raise watch.lost(time.monotonic())
        now = time.monotonic()
        if watch.should_ask(now):
            watch.asked(now)
            try:
                async with asyncio.timeout(watch.deadline_s):
                    await pubsub.ping(f"{self._home}:ping")
            except TimeoutError:  # (not even sent: the connection takes nothing more)
                raise watch.lost(time.monotonic()) from None
