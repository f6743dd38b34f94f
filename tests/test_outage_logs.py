"""A Redis outage does not flood the server's log: requests and sockets that fail all at once
are rolled up into a line per :data:`tracker.logs.THROTTLE_S` window that still counts them all.

A real server on a Redis of the test's own, which the test stops; the log is the server's own.
"""
from __future__ import annotations

import asyncio
import os
import re
import signal
from pathlib import Path
from typing import Callable, Iterator

import pytest
from websockets.exceptions import ConnectionClosed

from clients.jsonsocket import JsonSocket
from tests.orders_helpers import Ops, platform_kitchen
from tracker.embedded_redis import EmbeddedRedis
from tracker.launcher import ServerProcess
from tracker.logs import THROTTLE_S

HTTP_LINE = "Redis did not answer an HTTP request"
SOCKET_LINE = "a socket's channel failed"
CLOSED_LINE = "closing /v1/ws/merchant: Redis unavailable"  # (a socket that met the outage first itself)


@pytest.fixture
def stoppable_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A Redis of this test's own (the test stops it)."""
    with EmbeddedRedis(tmp_path / "stoppable-redis") as redis:
        yield redis


def counted(log: str, message: str) -> tuple[int, int]:
    """(lines with ``message``, failures they account for: one per line naming its own, plus
    each line's "N more like it")."""
    lines = [line for line in log.splitlines() if message in line]
    own = sum(1 for line in lines if f"{message} (" in line)
    more = sum(int(m.group(1)) for line in lines if (m := re.search(r"; (\d+) more like it", line)))
    return len(lines), own + more


async def test_a_burst_of_failing_requests_and_sockets_is_logged_in_a_few_lines_counting_them_all(
        stoppable_redis: EmbeddedRedis, start_server: Callable[..., ServerProcess], uid: Callable[[str], str]) -> None:
    srv = start_server(redis=stoppable_redis.url)
    ops = Ops(srv)
    sockets, requests = 12, 40
    feeds = [await platform_kitchen(srv, uid(f"m{i}")) for i in range(sockets)]
    try:
        stoppable_redis.stop()
        for feed in feeds:  # every feed's channel fails, and its socket is closed
            with pytest.raises(ConnectionClosed):
                while True:
                    await feed.recv(timeout=20)
        answers = [(await ops.create(uid(f"o{i}"), uid("m"))).status_code for i in range(requests)]
        assert set(answers) == {503}, answers
        await asyncio.sleep(THROTTLE_S + 2)  # the window ends: what it held back is counted
        log = srv.log_path.read_text(errors="replace")
        assert counted(log, HTTP_LINE) <= (2, requests) and counted(log, HTTP_LINE)[1] == requests, \
            srv.log_tail(80)
        channel, closed = counted(log, SOCKET_LINE), counted(log, CLOSED_LINE)
        # Each socket is logged once, by whichever of its tasks met the outage first: its channel
        # (most), or its own read; each kind in at most two lines.
        assert channel[0] <= 2 and closed[0] <= 2 and channel[1] + closed[1] == sockets, srv.log_tail(80)
    finally:
        for feed in feeds:
            await feed.close()
        await ops.close()


async def test_sockets_that_leave_while_redis_hangs_are_dropped_quietly(
        stoppable_redis: EmbeddedRedis, start_server: Callable[..., ServerProcess], uid: Callable[[str], str]) -> None:
    """Phones giving up while Redis hangs: their channels fail once Redis's timeout is up, and
    the sockets, gone by then, are forgotten without a traceback each (only the rolled-up line)."""
    srv = start_server(redis=stoppable_redis.url)
    ops_token = srv.token("operator", "ops")
    assert stoppable_redis.pid is not None
    os.kill(stoppable_redis.pid, signal.SIGSTOP)
    try:
        paths = [f"/v1/ws/customer?order_id={uid('o')}", f"/v1/ws/merchant?merchant_id={uid('m')}"]
        sockets = [await JsonSocket.open(srv.ws_url + path, ops_token) for path in paths]
        await asyncio.sleep(0.5)
        for socket in sockets:
            await socket.ws.close()  # a clean close (1000) while the server waits on Redis
        await asyncio.sleep(8)  # past the server's Redis timeout: the channels fail
    finally:
        os.kill(stoppable_redis.pid, signal.SIGCONT)
    log = srv.log_path.read_text(errors="replace")
    assert "closing /v1/ws/customer: Redis unavailable" in log, srv.log_tail(80)
    assert "Traceback" not in log and "Exception in ASGI application" not in log, srv.log_tail(80)
