"""SIGTERM and SIGHUP stop a command as Ctrl-C does (a command line's cleanup runs on
``KeyboardInterrupt``): their default would kill the process at once, leaving its children
(a ``tracker serve`` of its own, pool workers) running and its server's orders open."""
from __future__ import annotations

import contextlib
import signal
import threading
from types import FrameType
from typing import Callable, Iterator

STOPPING_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
_received: list[int] = []


def _as_ctrl_c(signum: int, frame: FrameType | None) -> None:
    _received.append(signum)
    current = signal.getsignal(signal.SIGINT)
    if callable(current):  # Python's (raises KeyboardInterrupt), or asyncio.run's (cancels its main task)
        current(signal.SIGINT, frame)
    else:  # SIGINT ignored (a background job of a script) or left at its default: still stop
        raise KeyboardInterrupt


@contextlib.contextmanager
def stop_signals_as_ctrl_c() -> Iterator[None]:
    """Within the block SIGTERM and SIGHUP are delivered as Ctrl-C; the handlers before are restored after."""
    previous = {sig: signal.signal(sig, _as_ctrl_c) for sig in STOPPING_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def interrupted_status() -> int:
    """The exit status of a command stopped by an interrupt: 128 + the signal (130 for Ctrl-C, 143
    for SIGTERM, 129 for SIGHUP), as a shell reports a process that signal ended."""
    return 128 + (_received[0] if _received else signal.SIGINT)


def hold_signals() -> set[signal.Signals] | None:
    """Block Ctrl-C, SIGTERM and SIGHUP in this thread (delivered once unblocked); returns the
    mask before, to restore, or None where signals cannot be blocked."""
    if not hasattr(signal, "pthread_sigmask"):  # pragma: no cover - not on Linux
        return None
    return signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, *STOPPING_SIGNALS})


class ImportHold:
    """Ctrl-C, SIGTERM and SIGHUP held (blocked) from its creation, at the top of a command's module,
    while the modules load (see :func:`signals_held`), until the command lets them through."""

    def __init__(self, active: bool = True) -> None:
        """``active=False`` (the module imported, not run as a command): nothing held, ever."""
        self._before = hold_signals() if active else None

    @contextlib.contextmanager
    def holding(self) -> Iterator[Callable[[], None]]:
        """Hold them (still, or again for a second run in one process) and give the function that lets
        them through as before the import, which leaving the block also does (one held meanwhile then
        takes effect: a Ctrl-C raises)."""
        before = self._before
        if before is None:
            yield lambda: None
            return
        hold_signals()
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                signal.pthread_sigmask(signal.SIG_SETMASK, before)

        try:
            yield release
        finally:
            release()


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Ctrl-C, SIGTERM and SIGHUP that come within the block take effect at its end, through the
    handlers before it: for starting a child process, which an interrupt inside ``Popen`` (after the
    fork) would leave running with no handle to stop it by. (Off the main thread, where Python runs no
    signal handler, nothing to do.)"""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    came: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, frame: came.append(signum))
                for sig in (signal.SIGINT, *STOPPING_SIGNALS)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for sig in came:
            signal.raise_signal(sig)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Ctrl-C, SIGTERM and SIGHUP wait (blocked) until the end of the block, then take effect: for
    imports, which an interrupt can leave half done (a module's initialisation crashed; and CPython,
    after a KeyboardInterrupt inside some imports, ends the process by SIGINT whatever the exit status)."""
    before = hold_signals()
    try:
        yield
    finally:
        if before is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, before)
