"""Background tasks whose failures are never silent.

Every long-running task of the server runs under a :class:`Supervisor`: an exception is
logged with its traceback, counted in ``tracker_background_task_failures_total``, kept
as the task's ``last_error`` (shown by ``/readyz``), and the task is restarted with
exponential backoff. Given a ``ready`` probe (Redis answers: every task needs it), a failed
task is restarted as soon as the probe succeeds, not at the end of a backoff grown long during
an outage (a minute's outage had the pub/sub listener, and so every new socket, wait 20 s more).
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Awaitable, Callable

from prometheus_client import CollectorRegistry, Counter

from tracker.logs import log_failure
from tracker.redis_client import REDIS_DOWN

log = logging.getLogger("tracker.tasks")

TaskFactory = Callable[[], Awaitable[None]]
Probe = Callable[[], Awaitable[bool]]
PROBE_EVERY_S = 0.5  # how often a waiting task's ``ready`` probe is tried
REPEAT_LOG_S = 600.0  # a unit failing again the same way is logged in full at most this often


@dataclass
class TaskState:
    name: str
    restarts: int = 0
    failures: int = 0
    last_error: str | None = None
    last_error_at: float | None = None
    running: bool = False
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "running": self.running,
            "failures": self.failures,
            "restarts": self.restarts,
            "last_error": self.last_error,
            "last_error_at": self.last_error_at,
        }


class Supervisor:
    """Runs named background tasks, restarting and reporting the ones that fail."""

    def __init__(self, registry: CollectorRegistry, *, max_backoff_s: float = 30.0, ready: Probe | None = None) -> None:
        self._states: dict[str, TaskState] = {}
        self._repeats: dict[tuple[str, str, str], tuple[float, int]] = {}  # failure -> (logged at, held back)
        self._max_backoff = max_backoff_s
        self._ready = ready
        self._failures = Counter(
            "tracker_background_task_failures",
            "Background task crashes (each is logged and the task restarted)",
            ["task"],
            registry=registry,
        )

    def spawn(self, name: str, factory: TaskFactory) -> asyncio.Task[None]:
        """Run ``factory()`` as task ``name``; restart it after a crash (with backoff, cut short
        once the supervisor's ``ready`` probe, if any, answers True)."""
        if name in self._states and self._states[name].running:
            raise RuntimeError(f"task {name!r} is already running")
        state = TaskState(name=name)
        self._states[name] = state
        state.task = asyncio.create_task(self._run(state, factory), name=name)
        return state.task

    async def _wait(self, backoff: float) -> None:
        """Sleep ``backoff`` seconds, or less: until the ``ready`` probe (tried every
        :data:`PROBE_EVERY_S`) succeeds after failing, i.e. what was away is back. (A task that
        fails with what it needs in place, a bug, waits out its backoff.)"""
        ready, was_away = self._ready, False
        deadline = time.monotonic() + backoff
        while (left := deadline - time.monotonic()) > 0:
            await asyncio.sleep(min(left, PROBE_EVERY_S))
            if ready is None or time.monotonic() >= deadline:
                continue
            try:
                answers = await asyncio.wait_for(ready(), PROBE_EVERY_S)
            except Exception:  # noqa: BLE001 - a probe that fails: still away
                answers = False
            if answers and was_away:
                return
            was_away = was_away or not answers

    async def _run(self, state: TaskState, factory: TaskFactory) -> None:
        backoff = 0.1
        while True:
            state.running = True
            started = time.monotonic()
            try:
                await factory()
                state.running = False
                return
            except asyncio.CancelledError:
                state.running = False
                raise
            except Exception as exc:  # noqa: BLE001 - this is the place that reports them
                state.running = False
                self._record(state, exc, f"background task {state.name} failed")
                if time.monotonic() - started > 60:
                    backoff = 0.1
                await self._wait(backoff)
                backoff = min(backoff * 2, self._max_backoff)
                state.restarts += 1

    def _record(self, state: TaskState, exc: BaseException, message: str, **extra: object) -> None:
        self._count(state, exc)
        log_failure(log, message, exc, task=state.name, **extra)

    def _count(self, state: TaskState, exc: BaseException) -> None:
        """Count a failure (``failures``, ``last_error`` in ``/readyz``, the metric), logged or not."""
        state.failures += 1
        state.last_error = f"{type(exc).__name__}: {exc}"
        state.last_error_at = time.time()
        self._failures.labels(state.name).inc()

    def report(self, name: str, exc: BaseException, **extra: object) -> None:
        """Record a failure of one unit of task ``name``'s work that the task survived and moved past.

        Logged, counted and shown (``failures``, ``last_error``) like a crash, without a restart:
        for tasks that serve many independent units (regions, offers) where one failing must not
        stop the others. The same unit failing the same way again is counted every time but
        logged in full at most every :data:`REPEAT_LOG_S`, saying how often it failed meanwhile.
        """
        state = self._states.get(name)
        if state is None:  # work done in short units, not one task: it goes on (``running``) past a failed unit
            state = self._states[name] = TaskState(name=name, running=True)
        message = f"background task {name}: one unit failed"
        held_back = self._held_back(name, exc, extra)
        if held_back is None:  # (the same failure of the same unit, logged in full not long ago)
            self._count(state, exc)
            return
        if held_back:
            message += f"; failed the same way {held_back} more times since it was last logged"
        self._record(state, exc, message, **extra)

    def _held_back(self, name: str, exc: BaseException, extra: dict[str, object]) -> int | None:
        """None when this failure (task, unit, error) was logged within :data:`REPEAT_LOG_S`;
        else how many times it recurred unlogged since it last was (a failing region every round
        is one traceback every ten minutes, not one a round)."""
        if isinstance(exc, REDIS_DOWN):
            return 0  # (log_failure throttles those itself, per outage)
        now = time.monotonic()
        key = (name, repr(sorted(extra.items())), f"{type(exc).__name__}: {exc}")
        logged_at, held = self._repeats.get(key, (-REPEAT_LOG_S, 0))
        if now - logged_at < REPEAT_LOG_S:
            self._repeats[key] = (logged_at, held + 1)
            return None
        if len(self._repeats) > 1000:  # (forget failures that stopped recurring)
            self._repeats = {k: v for k, v in self._repeats.items() if now - v[0] < REPEAT_LOG_S}
        self._repeats[key] = (now, 0)
        return held

    def status(self) -> list[dict[str, object]]:
        """Every task's state, for ``/readyz``."""
        return [s.as_dict() for s in self._states.values()]

    async def stop(self, timeout: float = 5.0) -> None:
        """Cancel every task and wait for them to finish."""
        tasks = [s.task for s in self._states.values() if s.task and not s.task.done()]
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)
