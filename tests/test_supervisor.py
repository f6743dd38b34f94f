"""The supervisor's restarts after an outage, with a stand-in task and readiness probe (no Redis).

A task that failed because Redis was away restarts at the first probe that finds Redis back:
Redis back a moment after one of its failed restarts (before the next probe, 0.5 s later) had it
wait out its whole backoff (up to 30 s: the pub/sub listener, and so every new socket). The log
says when Redis answers again (once) and when the task runs again (once it has run a while).
"""
from __future__ import annotations

import asyncio
import logging
import time

import pytest
from prometheus_client import CollectorRegistry
from redis.exceptions import ConnectionError as RedisConnectionError

from tracker import supervisor as sup
from tracker.supervisor import Supervisor


async def test_a_task_restarts_at_the_first_probe_after_redis_returns_just_after_a_failed_restart(
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sup, "RUNS_AGAIN_S", 1.0, raising=False)  # (shorter than the waits below: none may say it too soon)
    redis = {"up": False, "back_at": None}
    attempts: list[float] = []
    running_again = asyncio.Event()

    async def probe() -> bool:
        return bool(redis["up"])

    async def task() -> None:
        attempts.append(time.monotonic())
        if redis["up"]:
            running_again.set()
            await asyncio.sleep(3600)
        if len(attempts) == 6:  # its backoff is 3.2 s now: Redis comes back 0.1 s into it

            async def come_back() -> None:
                await asyncio.sleep(0.1)
                redis["up"], redis["back_at"] = True, time.monotonic()

            asyncio.ensure_future(come_back())
        raise RedisConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    supervisor = Supervisor(CollectorRegistry(), ready=probe)
    caplog.set_level(logging.INFO, logger="tracker.tasks")
    supervisor.spawn("pubsub-listener", task)
    try:
        await asyncio.wait_for(running_again.wait(), 10)
        took = attempts[-1] - float(redis["back_at"])  # type: ignore[arg-type]
        assert took < 0.8, f"restarted {took:.1f} s after Redis came back (its backoff: 3.2 s)"
        said = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
        assert [m for m in said if m.startswith("Redis answers again")] and not \
            [m for m in said if "runs again" in m], said  # (nothing said to run again during the outage)
        await asyncio.sleep(1.3)
        said = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
        assert len([m for m in said if m.startswith("Redis answers again")]) == 1, said
        again = [m for m in said if "runs again" in m]
        assert len(again) == 1 and "pubsub-listener" in again[0] and "6 failure(s)" in again[0], said
    finally:
        await supervisor.stop()


async def test_a_task_that_fails_with_redis_in_place_waits_out_its_backoff() -> None:
    """A bug, not an outage: the probe answers all along, so no restart comes early."""
    attempts: list[float] = []

    async def probe() -> bool:
        return True

    async def task() -> None:
        attempts.append(time.monotonic())
        raise ValueError("a bug")

    supervisor = Supervisor(CollectorRegistry(), ready=probe)
    supervisor.spawn("buggy", task)
    try:
        await asyncio.sleep(2.0)  # backoffs 0.1, 0.2, 0.4, 0.8: the fifth attempt at 1.5 s, the sixth at 3.1 s
    finally:
        await supervisor.stop()
    gaps = [round(b - a, 1) for a, b in zip(attempts, attempts[1:])]
    assert len(attempts) == 5 and gaps[-1] >= 0.8, gaps


async def test_status_tells_a_task_that_returned_from_one_that_failed() -> None:
    """``done``: true only for a task that returned normally; a failed one waiting to restart is
    ``running`` false as well, but not done (``/readyz`` lists these states)."""
    async def one_shot() -> None:
        return None

    async def buggy() -> None:
        raise ValueError("a bug")

    supervisor = Supervisor(CollectorRegistry(), max_backoff_s=60.0)
    supervisor.spawn("one-shot", one_shot)
    supervisor.spawn("buggy", buggy)
    try:
        await asyncio.sleep(0.05)  # (both ran; the buggy one waits out its first backoff, 0.1 s)
        status = {s["name"]: s for s in supervisor.status()}
    finally:
        await supervisor.stop()
    assert (status["one-shot"]["running"], status["one-shot"]["done"], status["one-shot"]["failures"]) == (False, True, 0)
    assert (status["buggy"]["running"], status["buggy"]["done"], status["buggy"]["failures"]) == (False, False, 1)
