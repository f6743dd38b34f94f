"""Child processes that end when the process that started them ends, even killed by SIGKILL.

:func:`tied_to_parent` wraps a command line in a tiny Python step that asks Linux for a signal
when its parent goes (``PR_SET_PDEATHSIG``, kept across ``exec``), checks that the parent did
not go already, then ``exec``s the command: same pid, nothing left in between. It is a separate
step rather than a ``preexec_fn`` because running Python between fork and exec can deadlock in
a process with threads. The kernel sends the signal when the *thread* that started the child
ends, so start tied children from a thread that lives as long as they should (the main thread,
or one that waits on the child). Elsewhere than Linux the command just runs, untied.
:func:`process_start` and :func:`is_running` tell a process apart from a later one reusing its pid;
:func:`stop_child` asks a child to stop and makes sure it does.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

# argv: signal, parent pid, command...
_TIE = ("import ctypes, os, sys\n"
        "try:\n"
        "    ctypes.CDLL(None, use_errno=True).prctl(1, int(sys.argv[1]))  # PR_SET_PDEATHSIG\n"
        "except (OSError, AttributeError):\n"
        "    pass\n"
        "if os.getppid() != int(sys.argv[2]):\n"
        "    sys.exit('parent gone before the child started')\n"
        "os.execv(sys.argv[3], sys.argv[3:])\n")


def tied_to_parent(argv: list[str], sig: signal.Signals = signal.SIGTERM) -> list[str]:
    """``argv`` run so that it receives ``sig`` when this process (the forking thread) ends."""
    return [sys.executable, "-I", "-S", "-c", _TIE, str(int(sig)), str(os.getpid()), *argv]


def process_start(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot, from ``/proc``), or None when there
    is no such live process (gone, a zombie, or no ``/proc``)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2:].split()  # (the name, in brackets, may hold spaces)
    if len(fields) < 20 or fields[0] == "Z":
        return None
    return fields[19]


def is_running(pid: int, started: str) -> bool:
    """Whether process ``pid`` that started at ``started`` (:func:`process_start`) is still there."""
    return process_start(pid) == started


def stop_child(proc: subprocess.Popen[Any], sig: int, timeout: float) -> int:
    """Send the child ``sig`` (unless it has ended already), give it ``timeout`` seconds to end,
    then SIGKILL it; its exit status. An interrupt while it waits is the caller's to handle."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode
