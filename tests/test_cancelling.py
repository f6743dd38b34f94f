"""Tasks busy with Redis end when they are cancelled, and a stopping server's tasks with them.

On Python 3.11 ``asyncio.wait_for``, which redis-py wraps every command's write in, loses a
cancellation that arrives as the write finishes (CPython gh-86296): the task runs on as if it was
never cancelled. A sped-up server's silent-rider sweep (a few Redis commands every 2 ms) was
caught so at its stop: its supervisor waited 5 s for it, logged it failed once its Redis client
closed, restarted it, and the process could then hang at its exit until it was killed.
"""
from __future__ import annotations

import asyncio
import logging
import random
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from tracker.cancelling import cancel_and_wait
from tracker.launcher import ServerProcess
from tracker.redis_client import connect
from tracker.supervisor import Supervisor

SCALED = {"TRACKER_TIME_SCALE": "3000", "TRACKER_MAX_CLOCK_SKEW_S": "36000"}  # sweeps every few ms


def busy_with_redis(url: str):  # type: ignore[no-untyped-def]
    """A client and a loop like the server's sweeps: a read, a pipelined read, a short sleep."""
    client = connect(url, decode_responses=True, socket_timeout=5, socket_connect_timeout=5,
                     max_connections=64, wait_for_connection_s=2.0)

    async def sweep() -> None:
        while True:
            await client.smembers("cancelling:riders")
            pipe = client.pipeline(transaction=False)
            pipe.hmget("cancelling:{r}", "ts", "left_at")
            pipe.smembers("cancelling:{r}:orders")
            await pipe.execute()
            await asyncio.sleep(0.002)

    return client, sweep


async def test_tasks_cancelled_in_the_middle_of_redis_commands_all_end(redis_url: str) -> None:
    client, sweep = busy_with_redis(redis_url)
    try:
        still_running = 0
        for _ in range(8):
            tasks = [asyncio.ensure_future(sweep()) for _ in range(12)]
            await asyncio.sleep(random.uniform(0.01, 0.05))
            still_running += len(await cancel_and_wait(tasks, timeout=5))
        assert still_running == 0, f"{still_running} of 96 tasks ran on for 5 s after being cancelled"
    finally:
        await client.aclose()


async def test_a_supervisor_stops_tasks_busy_with_redis_and_restarts_none(
        redis_url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="tracker.tasks")
    client, sweep = busy_with_redis(redis_url)
    supervisor = Supervisor(CollectorRegistry())
    tasks = [supervisor.spawn(f"sweep-{i}", sweep) for i in range(40)]
    try:
        await asyncio.sleep(0.05)
        await supervisor.stop(timeout=5)
        assert all(t.done() for t in tasks), [t.get_name() for t in tasks if not t.done()]
        await client.aclose()  # (as the app does next: a task still running would fail now, and restart)
        await asyncio.sleep(0.3)
        assert not [s for s in supervisor.status() if s["running"] or s["failures"]], supervisor.status()
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    finally:
        await cancel_and_wait(tasks, timeout=1)
        await client.aclose()


async def test_a_task_that_runs_on_past_its_cancellation_is_cancelled_again_and_not_restarted(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="tracker.tasks")
    starts: list[int] = []

    async def loses_its_first_cancellation() -> None:  # (what Python 3.11's wait_for does to a task)
        starts.append(1)
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            pass
        await asyncio.sleep(3600)

    supervisor = Supervisor(CollectorRegistry())
    task = supervisor.spawn("runs-on", loses_its_first_cancellation)
    await asyncio.sleep(0.01)
    await supervisor.stop(timeout=3)
    assert task.cancelled() and len(starts) == 1
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text


async def test_a_task_that_fails_as_it_is_stopped_is_not_restarted_nor_reported(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="tracker.tasks")
    starts: list[int] = []

    async def fails_once_cancelled() -> None:  # (ran on, then its Redis client closed under it)
        starts.append(1)
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            raise ConnectionError("Connection closed by the server before write") from None

    supervisor = Supervisor(CollectorRegistry())
    task = supervisor.spawn("fails-at-stop", fails_once_cancelled)
    await asyncio.sleep(0.01)
    await supervisor.stop(timeout=3)
    await asyncio.sleep(0.3)
    assert task.done() and len(starts) == 1
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text


def test_a_sped_up_server_stops_cleanly_with_no_task_failing_on_the_way_out(tmp_path: Path) -> None:
    for attempt in range(5):
        folder = tmp_path / f"run{attempt}"
        srv = ServerProcess(data_dir=folder, env=SCALED)
        try:
            srv.start()
            assert srv.stop() == 0
        finally:
            srv.cleanup()
        log = (folder / "server.log").read_text()
        shutdown = log[log.index("Waiting for application shutdown"):]
        assert "tracker stopped" in shutdown and " failed" not in shutdown and "did not stop" not in shutdown, shutdown
