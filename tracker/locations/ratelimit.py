"""Rate limits, sans-I/O: a token bucket (per rider, see riders_here.py) plus a flood detector (per connection)."""
from __future__ import annotations

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
