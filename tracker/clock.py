"""The server's clock: real time, or K times faster for replays (``--time-scale K``).

At real speed server time is the wall clock itself, so every process and host (each kept in
time by NTP) stamps alike, however long it has run. A replay's clock starts at ``origin_ms``
(the wall clock, or where the last scaled run on its Redis left off: :func:`tracker.agreement.start_clock`)
and then advances ``scale`` times faster, on the monotonic clock. Every stamp (``ts``), timer, interval and timeout in the server
goes through one :class:`Clock`, so a replay speeds the whole server up consistently.
:class:`ClockCheck` says whether this host's clock agrees with Redis's now (the fleet-wide sweeps
and dispatch wait while it does not: :mod:`tracker.agreement`).
"""
from __future__ import annotations

import asyncio
import time


class Clock:
    """Scaled server time in integer milliseconds since the Unix epoch."""

    def __init__(self, scale: float = 1.0, *, origin_ms: int | None = None) -> None:
        if not scale > 0:
            raise ValueError("time scale must be positive")
        self.scale = float(scale)
        self._mono0 = time.monotonic()
        self._origin_ms = int(time.time() * 1000) if origin_ms is None else int(origin_ms)
        self._wall = self.scale == 1.0 and origin_ms is None

    def now_ms(self) -> int:
        """Current server time (ms since epoch)."""
        if self._wall:
            return int(time.time() * 1000)
        return self._origin_ms + int((time.monotonic() - self._mono0) * 1000.0 * self.scale)

    def real_seconds(self, server_seconds: float) -> float:
        """How many real seconds ``server_seconds`` of server time take."""
        return server_seconds / self.scale

    async def sleep(self, server_seconds: float) -> None:
        """Sleep for ``server_seconds`` of server time."""
        await asyncio.sleep(max(0.0, server_seconds) / self.scale)


MAX_SKEW_S = 5.0  # how far a host clock may be from Redis's (the margin revocations already allow a token issuer)


class ClockCheck:
    """Whether this host's clock agrees with Redis's now, for the actions that act on the whole
    fleet's keys by it: the offer-expiry sweep, the stale-rider sweep, the silent-rider take-back
    and planning under the dispatch lease (see :mod:`tracker.agreement`).

    The ``agreement`` task measures the skew against Redis's ``TIME`` (:meth:`measured`, every
    10 s, every second while it is too large). Between two measures a jump of the wall clock
    (a VM resumed, a clock set by hand) shows at once, as the wall clock moving against the
    monotonic one: :meth:`skew_s` is the last measure plus that move, so a process whose clock
    jumps stops those actions at its next look, not at the next measure (a +60 s jump had its
    offer sweep expire every pending offer of the fleet in its first second).
    """

    def __init__(self, max_skew_s: float = MAX_SKEW_S) -> None:
        self.max_skew_s = max_skew_s
        self._skew_s = 0.0  # (the start's check found it within the margin, or the server refused to start)
        self._base_s = time.time() - time.monotonic()
        self.problem: str | None = None  # the agreement task's word on its last measure, while too far off

    def measured(self, skew_s: float, problem: str | None) -> None:
        """The agreement task measured the host clock ``skew_s`` ahead of Redis's (``problem``: why
        that is too far, or ``None``)."""
        self._skew_s, self._base_s, self.problem = skew_s, time.time() - time.monotonic(), problem

    def skew_s(self) -> float:
        """How far (s) the host clock is ahead of Redis's now, as best known: the last measure,
        plus how far the wall clock moved against the monotonic clock since."""
        return self._skew_s + (time.time() - time.monotonic()) - self._base_s

    @property
    def agrees(self) -> bool:
        """False while the last measure, or the wall clock's move since, puts this host's clock
        more than :attr:`max_skew_s` from Redis's."""
        return self.problem is None and abs(self.skew_s()) <= self.max_skew_s

    def why_not(self) -> str | None:
        """Why the clock does not agree now (for ``/readyz``), or ``None`` while it does."""
        if self.agrees:
            return None
        if self.problem is not None:
            return self.problem
        skew = self.skew_s()
        return (f"this host's clock moved to about {abs(skew):.1f} s {'ahead of' if skew > 0 else 'behind'} Redis's since "
                "it was last compared (a jump); it is being compared again")
