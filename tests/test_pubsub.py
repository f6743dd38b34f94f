"""The pub/sub fan-out adapter against a real Redis: delivery, bounded queues, gaps."""
from __future__ import annotations

import asyncio
import logging
import re
from typing import AsyncIterator

import pytest
from prometheus_client import CollectorRegistry
from redis.asyncio.cluster import RedisCluster

from tracker import logs
from tracker.pubsub import GAP, TOO_SLOW_LINE, PubSubHub, SubscriberTooSlow, Subscription
from tracker.redis_client import AnyRedis, connect, is_cluster, subscriber_count
from tracker.supervisor import Supervisor


@pytest.fixture
async def hubs(redis_url: str) -> AsyncIterator[tuple[PubSubHub, PubSubHub, AnyRedis]]:
    client = connect(redis_url, decode_responses=True)
    made = []
    for _ in range(2):
        registry = CollectorRegistry()
        sup = Supervisor(registry, max_backoff_s=0.2)
        hub = PubSubHub(client, sup, registry, queue_size=8)
        await hub.start()
        made.append((hub, sup))
    yield made[0][0], made[1][0], client
    for hub, sup in made:
        await sup.stop()
        await hub.stop()
    await client.aclose()


async def kill_pubsub_connections(client: AnyRedis) -> None:
    """Drop every pub/sub connection (on a cluster: on every node, wherever the hub's is)."""
    extra = {"target_nodes": RedisCluster.ALL_NODES} if is_cluster(client) else {}
    await client.execute_command("CLIENT", "KILL", "TYPE", "pubsub", **extra)


async def test_message_published_by_one_process_reaches_subscribers_of_another(hubs, uid) -> None:
    a, b, _ = hubs
    channel = uid("ch")
    s1, s2 = await b.subscribe(channel), await b.subscribe(channel)
    await a.publish(channel, "hello")
    assert await asyncio.wait_for(s1.get(), 5) == "hello"
    assert await asyncio.wait_for(s2.get(), 5) == "hello"
    await s1.close()
    await a.publish(channel, "again")
    assert await asyncio.wait_for(s2.get(), 5) == "again"
    assert s1.queue.empty()


async def test_slow_subscriber_is_cut_off_without_blocking_others(hubs, uid) -> None:
    a, b, _ = hubs
    channel = uid("ch")
    slow, fast = await b.subscribe(channel), await b.subscribe(channel)
    got = []
    for i in range(20):
        await a.publish(channel, str(i))
        got.append(await asyncio.wait_for(fast.get(), 5))
    assert got == [str(i) for i in range(20)]
    with pytest.raises(SubscriberTooSlow):
        for _ in range(20):
            await asyncio.wait_for(slow.get(), 5)
    assert slow.queue.qsize() <= 8


async def cut_under(hub: PubSubHub, client: AnyRedis, channel: str) -> Subscription:
    """A subscription of ``hub`` to ``channel`` whose listener connection was just cut (it got GAP)."""
    sub = await hub.subscribe(channel)
    await kill_pubsub_connections(client)
    assert await asyncio.wait_for(sub.get(), 5) is GAP
    return sub


async def test_lost_connection_delivers_gap_then_resumes(hubs, uid) -> None:
    a, b, client = hubs
    channel = uid("ch")
    sub = await cut_under(b, client, channel)
    for _ in range(100):  # the listener resubscribes after its restart
        if await subscriber_count(client, channel) >= 1:
            break
        await asyncio.sleep(0.05)
    await a.publish(channel, "after")
    item = await asyncio.wait_for(sub.get(), 5)
    while item is GAP:
        item = await asyncio.wait_for(sub.get(), 5)
    assert item == "after"


async def test_a_second_gap_comes_once_subscribed_again(hubs, uid) -> None:
    """A message published after the first GAP, while the listener is away, is lost: the
    subscriber hears GAP again once its channel is subscribed again (a re-read then sees it)."""
    a, b, client = hubs
    channel = uid("ch")
    sub = await cut_under(b, client, channel)
    if await subscriber_count(client, channel) == 0:  # (nearly always: the listener restarts after 0.1 s)
        await a.publish(channel, "lost")
    assert await asyncio.wait_for(sub.get(), 5) is GAP  # subscribed again
    await a.publish(channel, "after")
    assert await asyncio.wait_for(sub.get(), 5) == "after"


async def test_a_subscriber_that_came_after_a_listener_failure_gets_no_gap(hubs, uid) -> None:
    a, b, client = hubs
    channel = uid("ch")
    old = await cut_under(b, client, channel)
    await old.close()  # (its socket went away with the outage)
    fresh = await b.subscribe(channel)  # waits for the listener to be back
    await a.publish(channel, "first")
    assert await asyncio.wait_for(fresh.get(), 5) == "first"


async def test_a_message_published_as_soon_as_subscribe_returns_is_delivered(hubs, uid) -> None:
    """subscribe() returns once Redis has confirmed: a channel reading history next misses nothing."""
    a, b, _ = hubs
    for i in range(200):
        channel = uid("ch")
        sub = await b.subscribe(channel)
        await a.publish(channel, str(i))
        assert await asyncio.wait_for(sub.get(), 5) == str(i), f"lost on attempt {i}"
        await sub.close()


async def test_subscribing_while_the_listener_reconnects_waits_for_it(hubs, uid) -> None:
    a, b, client = hubs
    await kill_pubsub_connections(client)
    channel = uid("ch")
    sub = await b.subscribe(channel)  # the listener is down or restarting now
    await a.publish(channel, "first")
    item = await asyncio.wait_for(sub.get(), 5)
    while item is GAP:
        item = await asyncio.wait_for(sub.get(), 5)
    assert item == "first"


async def test_a_cut_off_subscriber_is_logged_in_one_line_and_a_crowd_of_them_in_a_few(
        hubs, uid, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """A ``too_slow`` cut was only a metric: now one line says whose, on which channel and how far
    behind; many at once are rolled up (:func:`tracker.logs.log_throttled`)."""
    monkeypatch.setattr(logs, "_last_logged", {})  # (no window left open by another test's cut)
    a, b, _ = hubs
    channel = uid("ch")
    slow = [await b.subscribe(channel, f"customer {uid('o')}-{i}") for i in range(5)]
    with caplog.at_level(logging.WARNING, logger="tracker.pubsub"):
        for i in range(10):  # the queues hold 8
            await a.publish(channel, str(i))
        for _ in range(100):
            if all(s.overflowed.is_set() for s in slow):
                break
            await asyncio.sleep(0.02)
    lines = [r.getMessage() for r in caplog.records if TOO_SLOW_LINE in r.getMessage()]
    assert len(lines) == 1, lines  # (the other four are counted at the end of the window)
    assert re.search(rf"customer {uid('o')}-\d on {channel}: 8 messages unread, the last taken \d+\.\d s ago",
                     lines[0]), lines
