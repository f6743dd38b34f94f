"""Cancelling tasks so that they end, even where Python 3.11 loses a cancellation.

On Python 3.11 ``asyncio.wait_for`` drops a cancellation that reaches its caller in the same
turn of the loop as the awaited step finishes (CPython gh-86296, fixed by the rewrite in 3.12).
redis-py wraps every command's write in ``wait_for``, and that write usually finishes at once:
a task cancelled while it sends a command to Redis then runs on as if it had never been
cancelled (a third of 300 tries, cancelled a few milliseconds into a loop of commands). A stop
that cancelled each task once and waited for it waited out its whole timeout for such a task,
and the process's last cancellation, at its exit, could hang for good.

:func:`cancel_and_wait` cancels again each task still running :data:`RECANCEL_EVERY_S` after its
last cancellation. A task that took its cancellation is then already unwinding; the cleanup it
runs on the way out (closing a subscription, a socket) is written to survive a second one.
"""
from __future__ import annotations

import asyncio
from typing import Any, Iterable

RECANCEL_EVERY_S = 0.5  # how long a cancelled task may run on before it is cancelled again


async def cancel_and_wait(tasks: Iterable[asyncio.Future[Any]], timeout: float | None = None) -> set[asyncio.Future[Any]]:
    """Cancel ``tasks`` and wait until every one has ended, cancelling again those that run on;
    returns the ones still running after ``timeout`` seconds (``None``: wait as long as it takes).
    Their results and exceptions are left to them (retrieved, so none is reported as lost)."""
    every = list(tasks)
    pending = {task for task in every if not task.done()}
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    while pending:
        for task in pending:
            task.cancel()
        wait = RECANCEL_EVERY_S if deadline is None else min(RECANCEL_EVERY_S, deadline - loop.time())
        if wait <= 0:
            break
        _, pending = await asyncio.wait(pending, timeout=wait)
    for task in every:
        if task.done() and not task.cancelled():
            task.exception()  # (marks it retrieved)
    return pending
