"""When the dispatch loop and the offer-expiry sweep wake next (sans-I/O: times in, a wait out).

Both run on the server clock, which a replay speeds up (``TRACKER_TIME_SCALE``): a wait is
worked out in server time and turned into real seconds only at the end, so a fixed real-time
floor never stretches into many server seconds.
"""
from __future__ import annotations

SWEEP_FLOOR_REAL_S = 0.005  # the shortest real pause between sweeps (an overdue entry it cannot settle)
SWEEP_CAP_SERVER_S = 1.0  # the longest server-time pause between sweeps (new offers, their claims)
SWEEP_CAP_REAL_S = 0.05  # ... but never under this in real time (a sped-up clock's 1 s is a few ms)


def next_round_wait_s(started_ms: int, now_ms: int, interval_s: float) -> float:
    """Server seconds from ``now_ms`` until the next pass, ``interval_s`` after the one that
    ``started_ms``: passes start an interval apart however long each takes; one that
    overran starts the next at once (no burst of catch-up passes)."""
    return max(0.0, (started_ms + interval_s * 1000 - now_ms) / 1000)


def sweep_wait_real_s(now_ms: int, earliest_ms: float | None, scale: float) -> float:
    """Real seconds until the sweep looks again: when the earliest pending entry (an offer's
    ``expires_at``, a claim's deadline; ``None`` for none) falls due, at most a second of server
    time (and at least :data:`SWEEP_CAP_REAL_S` for that cap), at least :data:`SWEEP_FLOOR_REAL_S`."""
    cap = max(SWEEP_CAP_REAL_S, SWEEP_CAP_SERVER_S / scale)
    if earliest_ms is None:
        return cap
    return min(cap, max(SWEEP_FLOOR_REAL_S, (earliest_ms - now_ms) / 1000 / scale))
