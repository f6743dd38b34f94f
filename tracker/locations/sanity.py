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
- but the last good fix may itself have been the glitch (a cold GPS's first fix at 0, 0; a
  typo), and then every true fix after it would be refused for as long as the impossible
  distance takes at ``max_speed_mps`` (a day for 6,000 km). So ``CONFIRMING_FIXES`` fixes in a
  row that the last good one refuses and that are plausible from each other move the rider
  there (the last of them is accepted, the ones before are refused), and a last good fix older
  than the stale time anchors nothing: a rider silent that long may have come back from
  anywhere. Only fresh evidence counts: a refused fix sent again (same position and client
  timestamp, a resend, of any fix refused since the last good one) adds nothing;
- a fix at exactly 0, 0 (what a GPS without a fix reports) is refused, first fix or not, so a
  GPS stuck on 0, 0 never moves a rider;
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
    NO_FIX = "no_fix"  # exactly 0, 0: what a GPS without a fix sends


CONFIRMING_FIXES = 3  # refused fixes in a row, plausible from each other, that move the rider


def plausible(last: Fix, new: Fix, max_speed_mps: float) -> bool:
    """Could a rider at ``last`` be at ``new`` when it was received?"""
    elapsed_s = max(1.0, (new.ts - last.ts) / 1000.0)
    slack = min(MAX_ACCURACY_DISCOUNT_M, (new.accuracy or 0.0) + (last.accuracy or 0.0))
    distance = max(0.0, haversine_m(last.lat, last.lng, new.lat, new.lng) - slack)
    return distance / elapsed_s <= max_speed_mps


class FixJudge:
    """One socket's GPS sanity: its last good fix (read back on connect) and the run of
    refused fixes that agree with each other."""

    def __init__(self, last: Fix | None, max_speed_mps: float, stale_after_ms: int) -> None:
        self.last = last
        self._max_speed = max_speed_mps
        self._stale_ms = stale_after_ms
        self._refused: Fix | None = None  # the newest fix refused as a teleport
        self._run = 0  # refused fixes in a row, each plausible from the one before
        self._sent: set[tuple[float, float, int]] = set()  # the refused fixes since the last good one

    def judge(self, new: Fix) -> Verdict:
        """How to treat ``new``; an accepted fix becomes the last good one."""
        last = self.last
        if last is not None and new.client_ts is not None and \
                (new.lat, new.lng, new.client_ts) == (last.lat, last.lng, last.client_ts):
            return Verdict.DUPLICATE
        if new.lat == 0.0 and new.lng == 0.0:
            return Verdict.NO_FIX  # never where the rider is, even as a first fix
        if last is None or new.ts - last.ts > self._stale_ms or plausible(last, new, self._max_speed):
            return self._accept(new)
        if new.client_ts is not None:
            if (new.lat, new.lng, new.client_ts) in self._sent:
                return Verdict.TELEPORT  # a refused fix resent: no new evidence
            self._sent.add((new.lat, new.lng, new.client_ts))
        refused = self._refused
        agrees = refused is not None and plausible(refused, new, self._max_speed)
        self._run = self._run + 1 if agrees else 1
        self._refused = new
        if self._run >= CONFIRMING_FIXES:
            return self._accept(new)  # the last good fix was the glitch: the rider is here
        return Verdict.TELEPORT

    def _accept(self, new: Fix) -> Verdict:
        self.last, self._refused, self._run = new, None, 0
        self._sent.clear()
        return Verdict.ACCEPT
