"""GPS sanity, sans-I/O: is a new fix plausible after the rider's last good one?

The rule (docs/architecture.md, "GPS sanity"):

- a fix equal to the last good one (same position and same client timestamp, which it must
  carry) is a duplicate: dropped silently (phones resend after a reconnect). Without a client
  timestamp a fix at the same place is a rider standing still, and keeps it fresh;
- a fix implying a speed above ``max_speed_mps`` from the last good fix is a teleport:
  refused with ``implausible_fix``, the last good fix is kept. The elapsed time is taken from
  server receive times (never below one second, which absorbs network bunching), and the
  distance is discounted by the two fixes' reported accuracy (up to 100 m), so jitter of a
  rider standing still is never a teleport;
- a fix whose own timestamp is far from server time is refused (``clock_skew``, see fix.py).
"""
from __future__ import annotations

import enum

from tracker.geo import haversine_m
from tracker.locations.fix import Fix

MAX_ACCURACY_DISCOUNT_M = 100.0


class Verdict(enum.Enum):
    ACCEPT = "accept"
    DUPLICATE = "duplicate"
    TELEPORT = "teleport"


def judge(last: Fix | None, new: Fix, max_speed_mps: float) -> Verdict:
    """How to treat ``new`` given the last good fix ``last`` (``None`` for the first)."""
    if last is None:
        return Verdict.ACCEPT
    if new.client_ts is not None and (new.lat, new.lng, new.client_ts) == (last.lat, last.lng, last.client_ts):
        return Verdict.DUPLICATE
    elapsed_s = max(1.0, (new.ts - last.ts) / 1000.0)
    slack = min(MAX_ACCURACY_DISCOUNT_M, (new.accuracy or 0.0) + (last.accuracy or 0.0))
    distance = max(0.0, haversine_m(last.lat, last.lng, new.lat, new.lng) - slack)
    return Verdict.TELEPORT if distance / elapsed_s > max_speed_mps else Verdict.ACCEPT
