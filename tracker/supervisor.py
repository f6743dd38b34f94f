"""Background tasks whose failures are never silent.

Every long-running task of the server runs under a :class:`Supervisor`: an exception is
logged with its traceback, counted in ``tracker_background_task_failures_total``, kept
as the task's ``last_error`` (shown by ``/readyz``), and the task is restarted with
exponential backoff. Given a ``ready`` probe (Redis answers: every task needs it), a task that
failed because Redis was away is restarted as soon as the probe succeeds, not at the end of a
backoff grown long during an outage (a minute's outage had the pub/sub listener, and so every new
socket, wait 20 s more). The log says when Redis answers again (one line per outage) and when
a task that failed runs again (one line per task).
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Awaitable, Callable

from prometheus_client import CollectorRegistry, Counter

from tracker.cancelling import cancel_and_wait
from tracker.logs import log_failure
from tracker.redis_client import REDIS_DOWN

log = logging.getLogger("tracker.tasks")

TaskFactory = Callable[[], Awaitable[None]]
Probe = Callable[[], Awaitable[bool]]
PROBE_EVERY_S = 0.5  # how often a waiting task's ``ready`` probe is tried
# A task restarted after failures that runs this long is logged as running again: longer than an
# attempt can last while Redis is away (a command or a subscription waits 5 s for it, then fails).
RUNS_AGAIN_S = 10.0
OUTAGE_GAP_S = 60.0  # Redis failures further apart than this are two outages, not one
REPEAT_LOG_S = 600.0  # a unit failing again the same way is logged in full at most this often


@dataclass
class TaskState:
    name: str
    restarts: int = 0
    failures: int = 0
    last_error: str | None = None
    last_error_at: float | None = None
    running: bool = False
    done: bool = False  # returned normally: a one-shot task that finished its work (not dead)
    task: asyncio.Task[None] | None = field(default=None, repr=False)
    failing_since: float | None = field(default=None, repr=False)  # first failure since it last ran a while
    failed_in_row: int = field(default=0, repr=False)

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "running": self.running,
            "done": self.done,
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
        self._stopping = False  # stop() began: a task that fails now (its Redis client closing) ends
        self._away_since: float | None = None  # when a task first failed for Redis being away (this outage)
        self._away_last = 0.0  # when a task last did
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

    async def _wait(self, backoff: float, away: bool) -> None:
        """Sleep ``backoff`` seconds, or less: until the ``ready`` probe (tried every
        :data:`PROBE_EVERY_S`) succeeds after what the task needs was away, i.e. it is back.
        ``away``: the task failed because Redis was away (so the first success is its return,
        even one within the first :data:`PROBE_EVERY_S`: Redis back a moment after a failed
        restart had the task wait out its whole backoff, up to 30 s). A task that fails with what
        it needs in place, a bug, waits out its backoff unless the probe fails meanwhile."""
        ready, was_away = self._ready, away
        deadline = time.monotonic() + backoff
        while (left := deadline - time.monotonic()) > 0:
            await asyncio.sleep(min(left, PROBE_EVERY_S))
            if ready is None or time.monotonic() >= deadline:
                continue
            try:
                async with asyncio.timeout(PROBE_EVERY_S):
                    answers = await ready()
            except Exception:  # noqa: BLE001 - a probe that fails: still away
                answers = False
            if answers and was_away:
                self._redis_back()
                return
            was_away = was_away or not answers

    def _note_away(self) -> None:
        """A task failed because Redis was away: the outage starts now, or goes on."""
        now = time.monotonic()
        if self._away_since is None or now - self._away_last > OUTAGE_GAP_S:
            self._away_since = now  # (an outage no probe saw end, a blip, is over)
        self._away_last = now

    def _redis_back(self) -> None:
        """A probe succeeded after an outage: say so once (the first waiting task to see it)."""
        if self._away_since is not None:
            log.info("Redis answers again (%.1f s after a task first failed for it): the background tasks that "
                     "failed meanwhile restart now", time.monotonic() - self._away_since)
            self._away_since = None

    async def _run(self, state: TaskState, factory: TaskFactory) -> None:
        backoff = 0.1
        loop = asyncio.get_running_loop()
        while True:
            state.running = True
            started = time.monotonic()
            # Restarted after failures: once it has run a while, the log says it runs again.
            again = None if state.failing_since is None else loop.call_later(RUNS_AGAIN_S, self._runs_again, state, started)
            try:
                await factory()
                state.running, state.done = False, True
                return
            except asyncio.CancelledError:
                state.running = False
                raise
            except Exception as exc:  # noqa: BLE001 - this is the place that reports them
                state.running = False
                if self._stopping:  # (it ran on past its cancellation, into the shutdown: not restarted)
                    log.debug("background task %s ended at the stop: %r", state.name, exc)
                    return
                if again is not None:
                    again.cancel()  # (now: it would go off during the wait below)
                if state.failing_since is None:
                    state.failing_since, state.failed_in_row = time.monotonic(), 0
                state.failed_in_row += 1
                away = isinstance(exc, REDIS_DOWN)
                if away:
                    self._note_away()
                self._record(state, exc, f"background task {state.name} failed")
                if time.monotonic() - started > 60:
                    backoff = 0.1
                await self._wait(backoff, away)
                backoff = min(backoff * 2, self._max_backoff)
                state.restarts += 1
            finally:
                if again is not None:
                    again.cancel()

    def _runs_again(self, state: TaskState, restarted: float) -> None:
        """Task ``state`` has run :data:`RUNS_AGAIN_S` since its restart (at ``restarted``) after failing."""
        if state.failing_since is None:
            return
        log.info("background task %s runs again (restarted %.1f s after the first of %d failure(s) in a row)",
                 state.name, restarted - state.failing_since, state.failed_in_row, extra={"task": state.name})
        state.failing_since = None

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
        """Cancel every task and wait for them to finish (:func:`cancel_and_wait`: a cancellation
        Python 3.11 lost inside a Redis command is made again); none is restarted after this.
        A task still running after ``timeout`` seconds is named in the log."""
        self._stopping = True
        running = await cancel_and_wait([s.task for s in self._states.values() if s.task], timeout)
        if running:
            log.error("background task(s) %s did not stop within %.0f s of being cancelled",
                      ", ".join(sorted(t.get_name() for t in running if isinstance(t, asyncio.Task))), timeout)
