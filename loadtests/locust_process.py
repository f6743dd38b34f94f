"""Locust as ``run.py``'s child, with every worker it forks: none outlives ``run.py``.

Locust runs in a process group of its own (a terminal's Ctrl-C reaches ``run.py``, which stops
it), tied to ``run.py`` (SIGTERM when ``run.py`` ends, even killed outright). With
``--processes`` the master forks its workers, and a master that fails (its port taken) leaves
them retrying for five minutes: :func:`stop` kills what is left of the group once the master
has ended, and :func:`tie_forked_workers` (called by the locustfile) has each forked worker
killed by the kernel when its master ends, whoever ended it.
"""
from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import time
from typing import Mapping

from tracker.parent_death import tied_to_parent

PR_SET_PDEATHSIG = 1


def start(cmd: list[str], env: Mapping[str, str], quiet: bool) -> subprocess.Popen[bytes]:
    """Start locust's command line ``cmd`` in a session of its own, tied to this process. Call it
    within :func:`~tracker.interrupts.signals_deferred`, assigning the result there: an interrupt
    inside Popen, or before its result is kept, would leave locust running with no handle."""
    out = subprocess.DEVNULL if quiet else None
    return subprocess.Popen(tied_to_parent(cmd), env=env, stdout=out, stderr=out, start_new_session=True)


def ended(proc: subprocess.Popen[bytes], timeout: float) -> bool:
    """Wait up to ``timeout`` s for the master to end, without reaping it: while it is a zombie its
    pid, its group's id, cannot be given to another process, so :func:`stop` kills only its group."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.returncode is not None or os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))


def stop(proc: subprocess.Popen[bytes], timeout: float) -> int:
    """SIGTERM to the master (it stops its users and workers and writes its CSV), SIGKILL after
    ``timeout`` s; then SIGKILL to whatever is left in its group (workers of a master that failed);
    returns the master's exit status. Interrupted meanwhile (a second Ctrl-C), all of it at once."""
    try:
        if not ended(proc, 0):  # (os.kill, not proc.send_signal: that would reap it)
            os.kill(proc.pid, signal.SIGTERM)
            if not ended(proc, timeout):
                os.kill(proc.pid, signal.SIGKILL)
    finally:
        _kill_group(proc)
    return proc.wait()


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL every process in the group of ``proc`` (its leader), unless it was reaped already:
    its id may be another group's by now."""
    if proc.returncode is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:  # (none left)
            pass


def tie_forked_workers() -> None:
    """Have each process this one forks (locust's ``--processes`` workers) killed when this one
    ends: a worker whose master is gone has nothing to report to. Linux only; elsewhere nothing."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return
    master = os.getpid()

    def tie() -> None:
        prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL))
        if os.getppid() != master:  # (the master ended before the tie)
            os._exit(1)

    os.register_at_fork(after_in_child=tie)
