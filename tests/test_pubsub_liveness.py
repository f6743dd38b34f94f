"""A pub/sub connection that goes silent without being closed is noticed and replaced.

A half-open TCP connection (or a NAT that lost its state) kept the listener waiting for messages
that never came: every live message on that process was lost, with ``/readyz`` 200 and nothing
logged, until the kernel gave up on the connection (about 15 minutes). Here the hub's Redis
connections go through :class:`tests.blackhole_proxy.BlackholeProxy`, which can drop every byte of
the pub/sub connection and keep it open; on a Redis Cluster, one proxy port per node.
"""
from __future__ import annotations

import asyncio
import time
from typing import Any, AsyncIterator, Callable
from urllib.parse import urlsplit

import httpx
import pytest
from prometheus_client import CollectorRegistry

from tests.blackhole_proxy import BlackholeProxy
from tests.orders_helpers import Ops, customer, platform_kitchen
from tracker.launcher import ServerProcess
from tracker.pubsub import GAP, PubSubHub
from tracker.pubsub_liveness import IDLE_PING_S, REPLY_DEADLINE_S
from tracker.redis_client import AnyRedis, check_ready, connect, is_cluster
from tracker.supervisor import Supervisor

NOTICED_WITHIN_S = IDLE_PING_S + REPLY_DEADLINE_S + 1.5  # the longest a silence may go unnoticed, and some slack


def _upstream(url: str) -> str:
    """``host:port`` or the unix socket path of a Redis URL."""
    parts = urlsplit(url)
    return parts.path if parts.scheme == "unix" else f"{parts.hostname}:{parts.port}"


async def proxied_client(url: str, proxy: BlackholeProxy) -> AnyRedis:
    """A client like the server's whose every connection goes through ``proxy``."""
    options = dict(decode_responses=True, health_check_interval=30, socket_timeout=5.0, socket_connect_timeout=5.0)
    direct = connect(url, decode_responses=True)
    try:
        if not is_cluster(direct):
            return connect(f"redis://127.0.0.1:{proxy.listen(_upstream(url))}/0", cluster=False, **options)
        await direct.initialize()
        ports = {(n.host, n.port): proxy.listen(f"{n.host}:{n.port}") for n in direct.get_nodes()}
    finally:
        await direct.aclose()
    first = next(iter(ports.values()))
    return connect(f"redis://127.0.0.1:{first}/0", cluster=True,
                   address_remap=lambda address: ("127.0.0.1", ports.get(address, address[1])), **options)


@pytest.fixture
async def silenced(redis_url: str) -> AsyncIterator[tuple[PubSubHub, Supervisor, BlackholeProxy, AnyRedis]]:
    """A hub whose Redis is behind a proxy that can black-hole its pub/sub connection; and a direct client."""
    proxy = BlackholeProxy()
    client = await proxied_client(redis_url, proxy)
    direct = connect(redis_url, decode_responses=True)

    async def ready() -> bool:
        await check_ready(client)
        return True

    registry = CollectorRegistry()
    sup = Supervisor(registry, ready=ready)
    hub = PubSubHub(client, sup, registry, queue_size=8)
    await hub.start()
    try:
        yield hub, sup, proxy, direct
    finally:
        proxy.lift()
        await sup.stop()
        await hub.stop()
        await client.aclose()
        await direct.aclose()
        proxy.close()


def _listener(sup: Supervisor) -> dict[str, object]:
    return next(t for t in sup.status() if t["name"] == "pubsub-listener")


async def _until(check, timeout: float) -> float:  # type: ignore[no-untyped-def]
    """Wait until ``check()`` holds; returns how long it took."""
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < timeout, "timed out"
        await asyncio.sleep(0.05)
    return time.monotonic() - start


async def test_a_silent_connection_is_noticed_every_subscriber_told_and_replaced_once_the_path_is_back(
        silenced, uid) -> None:
    hub, sup, proxy, direct = silenced
    channel = uid("ch")
    sub = await hub.subscribe(channel)
    await direct.publish(channel, "before")
    assert await asyncio.wait_for(sub.get(), 5) == "before"
    assert hub.listening

    proxy.blackhole()
    start = time.monotonic()
    assert await asyncio.wait_for(sub.get(), NOTICED_WITHIN_S) is GAP  # the connection taken as lost
    noticed = time.monotonic() - start
    assert noticed >= REPLY_DEADLINE_S - 0.5, noticed  # (it was asked, and given its deadline)
    assert not hub.listening  # its next connection is silent too: not proven alive
    assert _listener(sup)["failures"] >= 1 and "PubSubSilent" in str(_listener(sup)["last_error"])
    await direct.publish(channel, "lost")  # nobody on this process hears it

    failed = _listener(sup)["failures"]
    # another reconnection, as silent, noticed and given up (not only some seconds gone by): no GAP more
    await _until(lambda: _listener(sup)["failures"] > failed, 3 * NOTICED_WITHIN_S)
    assert sub.queue.empty(), sub.queue

    proxy.lift()
    assert await asyncio.wait_for(sub.get(), REPLY_DEADLINE_S + 5) is GAP  # subscribed again: re-read now
    assert hub.listening
    await direct.publish(channel, "after")
    assert await asyncio.wait_for(sub.get(), 5) == "after"


async def test_an_idle_listener_asks_once_every_few_seconds_and_stays(silenced, uid) -> None:
    hub, sup, proxy, direct = silenced
    await asyncio.sleep(2 * IDLE_PING_S + 0.5)
    assert 1 <= proxy.pings() <= 3, proxy.pings()
    assert _listener(sup)["failures"] == 0 and hub.listening
    channel = uid("ch")
    sub = await hub.subscribe(channel)
    await direct.publish(channel, "still here")
    assert await asyncio.wait_for(sub.get(), 5) == "still here"


SILENT_LINE = "the pub/sub listener's connection went silent"


async def test_a_server_whose_pub_sub_connection_went_silent_resyncs_its_sockets_says_so_and_recovers(
        request: pytest.FixtureRequest, redis_url: str, server: ServerProcess,
        start_server: Callable[..., ServerProcess], uid: Callable[[str], str]) -> None:
    """A real server behind the proxy, a customer socket on it; the steps are made on another
    server. Before: the socket got nothing, no resync, while ``/readyz`` said 200 and nothing was
    logged. Now: a ``resync`` and the step (re-read) within seconds, ``/readyz`` 503 while the
    listener's connection is not proven alive, one log line, and live events again once the path is back."""
    if request.config.getoption("--redis-cluster"):
        pytest.skip("a server cannot be pointed at proxies of a cluster's nodes; the hub's test covers a cluster")
    proxy = BlackholeProxy()
    try:
        behind = start_server(redis=f"redis://127.0.0.1:{proxy.listen(_upstream(redis_url))}/0")
        ops, oid, mid = Ops(server), uid("o"), uid("m")
        assert (await ops.create(oid, mid)).status_code == 201
        kitchen = await platform_kitchen(server, mid)
        watcher = await customer(behind, oid)
        async with httpx.AsyncClient(base_url=behind.base_url, timeout=10) as http:
            try:
                assert (await watcher.next_event())["kind"] == "placed"
                proxy.blackhole()
                await kitchen.confirm(oid)
                stepped = time.monotonic()
                assert await watcher.next_event(NOTICED_WITHIN_S) == {"type": "resync", "reason": "live_gap"}
                assert (await watcher.next_event(5))["kind"] == "confirmed"  # read again from its history
                assert time.monotonic() - stepped < NOTICED_WITHIN_S
                ready = await http.get("/readyz")
                assert ready.status_code == 503 and "not proven alive" in ready.text, ready.text
                assert "PubSubSilent" in ready.text, ready.text  # (the listener's last error)

                failed = _task(ready.json(), "pubsub-listener")["failures"]
                await asyncio.sleep(REPLY_DEADLINE_S + 1.5)  # its next connection is as silent: replaced too
                ready = await http.get("/readyz")
                assert ready.status_code == 503 and _task(ready.json(), "pubsub-listener")["failures"] > failed
                assert watcher.sock is not None and watcher.sock.ws.protocol.state.name == "OPEN"  # (no close)

                proxy.lift()
                await _until_ready(http, REPLY_DEADLINE_S + 10)
                assert await watcher.next_event(5) == {"type": "resync", "reason": "live_gap"}  # subscribed again
                await kitchen.delay(oid, 5)
                assert (await watcher.next_event(5))["kind"] == "food_delayed"  # live again
            finally:
                await watcher.close()
                await kitchen.close()
                await ops.close()
        said = [line for line in behind.log_path.read_text(errors="replace").splitlines() if SILENT_LINE in line]
        assert len(said) == 1, behind.log_tail(60)
    finally:
        proxy.close()


async def _until_ready(http: httpx.AsyncClient, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while (await http.get("/readyz")).status_code != 200:
        assert time.monotonic() < deadline, (await http.get("/readyz")).text
        await asyncio.sleep(0.1)


def _task(ready: dict[str, Any], name: str) -> dict[str, Any]:
    return next(t for t in ready["tasks"] if t["name"] == name)
