"""Rate limits, sans-I/O: a token bucket (per rider, see riders_here.py), a flood detector (per
connection), and what a connection's silence explains of a burst after it (a stalled link's backlog)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class TokenBucket:
    """``rate`` events per second on average, bursts up to ``burst``; times in seconds."""

    rate: float
    burst: float
    tokens: float = field(init=False)
    at: float | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.tokens = self.burst

    def take(self, now: float) -> bool:
        """Spend one token if there is one; False when over the limit."""
        if self.at is not None:
            self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def wait_s(self) -> float:
        """Seconds from the last :meth:`take` until a token is there again."""
        return max(0.0, (1.0 - self.tokens) / self.rate)


@dataclass
class FloodGuard:
    """Counts refusals; a connection refused ``limit`` times within ``window_s`` is flooding."""

    limit: int
    window_s: float
    _refusals: list[float] = field(default_factory=list)

    def refused(self, now: float) -> bool:
        """Record one refusal; True when the connection should be closed."""
        self._refusals = [t for t in self._refusals if now - t < self.window_s]
        self._refusals.append(now)
        return len(self._refusals) >= self.limit


@dataclass
class Backlog:
    """What a connection's silence explains of the frames that follow it; times in seconds.

    A link that stalls (a tunnel, a cell handover) shorter than the keepalive holds what the
    client sends meanwhile and delivers it at once when it flows again: frames arriving after a
    silence of ``gap`` seconds may be a backlog of up to ``rate * gap`` frames, taken by the
    phone over those ``gap`` seconds. :meth:`arrived` notes each frame; a gap of at least
    ``min_gap_s`` (counted up to ``max_gap_s``, the longest a stalled socket stays open) opens
    such a backlog, for as long again as the silence lasted: :meth:`excuse` forgives as many
    refusals as the silence explains, and :meth:`held_s` says how long the network may have
    held a frame back. A client that never falls silent (one flooding on purpose) gets neither.
    """

    rate: float
    min_gap_s: float
    max_gap_s: float
    _last: float | None = field(default=None, init=False)
    _silence_s: float = field(default=0.0, init=False)
    _until: float = field(default=-math.inf, init=False)
    _credit: float = field(default=0.0, init=False)

    def arrived(self, now: float) -> None:
        """A frame arrived at ``now``."""
        if self._last is not None and now - self._last >= self.min_gap_s:
            self._silence_s = min(now - self._last, self.max_gap_s)
            self._until = now + self._silence_s
            self._credit = self.rate * self._silence_s  # (a new silence replaces what is left of the last)
        self._last = now

    def held_s(self, now: float) -> float:
        """How long the network may have held back a frame arriving at ``now`` (0 outside a backlog)."""
        return self._silence_s if now < self._until else 0.0

    def excuse(self, now: float) -> bool:
        """One refusal at ``now``: True when the backlog of the last silence explains it."""
        if now < self._until and self._credit >= 1.0:
            self._credit -= 1.0
            return True
        return False
