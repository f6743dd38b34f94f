"""GPS sanity, sans-I/O: is a new fix plausible after the rider's last good one?

The rule (docs/architecture.md, "GPS sanity"):

- a fix equal to the last good one (same position and same client timestamp, which it must
  carry) is a duplicate: dropped silently (phones resend after a reconnect). Without a client
  timestamp a fix at the same place is a rider standing still, and keeps it fresh;
- a fix implying a speed above ``max_speed_mps`` from the last good fix is a teleport:
  refused with ``implausible_fix``, the last good fix is kept. The elapsed time is taken from
  server receive times (never below one second, which absorbs network bunching, nor below the
  silence before a backlog the fix arrived in, ``Fix.backlog_ms``: a link that stalled delivers
  fixes taken over that long all at once), and the
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
- a fix the phone took no later than the last good one (its client timestamp at or before
  that fix's) is out of order: refused, the last good fix kept, unless that one is stale;
- the judge is the rider's, shared by its sockets on one process (riders_here.py); the store
  applies the same rule again when it writes (guard_fix.lua), against the fix stored by any
  process, and a fix refused there makes the stored one this judge's last good fix (:meth:`FixJudge.adopt`);
- a fix whose own timestamp is far from server time is refused (``clock_skew``, see fix.py).
"""
from __future__ import annotations

import enum
from dataclasses import replace

from tracker.geo import haversine_m
from tracker.locations.fix import Fix

MAX_ACCURACY_DISCOUNT_M = 100.0


class Verdict(enum.Enum):
    ACCEPT = "accept"
    DUPLICATE = "duplicate"
    TELEPORT = "teleport"
    NO_FIX = "no_fix"  # exactly 0, 0: what a GPS without a fix sends
    OUT_OF_ORDER = "out_of_order"  # taken by the phone no later than the last good fix


CONFIRMING_FIXES = 3  # refused fixes in a row, plausible from each other, that move the rider


def plausible(last: Fix, new: Fix, max_speed_mps: float) -> bool:
    """Could a rider at ``last`` be at ``new`` when it was received?"""
    elapsed_s = max(1.0, (new.ts - last.ts) / 1000.0, new.backlog_ms / 1000.0)
    slack = min(MAX_ACCURACY_DISCOUNT_M, (new.accuracy or 0.0) + (last.accuracy or 0.0))
    distance = max(0.0, haversine_m(last.lat, last.lng, new.lat, new.lng) - slack)
    return distance / elapsed_s <= max_speed_mps


class FixJudge:
    """One rider's GPS sanity on this process: its last good fix (read back on connect, or
    the store's when the store refused a fix) and the run of refused fixes that agree with each other."""

    def __init__(self, last: Fix | None, max_speed_mps: float, stale_after_ms: int) -> None:
        self.last = last
        self._max_speed = max_speed_mps
        self._stale_ms = stale_after_ms
        self._refused: Fix | None = None  # the newest fix refused as a teleport
        self._run = 0  # refused fixes in a row, each plausible from the one before
        self._sent: set[tuple[float, float, int]] = set()  # the refused fixes since the last good one

    def judge(self, new: Fix) -> tuple[Verdict, Fix]:
        """How to treat ``new``, and the fix to store when accepted (marked ``confirmed`` when
        confirming fixes moved the rider); an accepted fix becomes the last good one."""
        last = self.last
        if last is not None and new.client_ts is not None and \
                (new.lat, new.lng, new.client_ts) == (last.lat, last.lng, last.client_ts):
            return Verdict.DUPLICATE, new
        if new.lat == 0.0 and new.lng == 0.0:
            return Verdict.NO_FIX, new  # never where the rider is, even as a first fix
        if last is None or new.ts - last.ts > self._stale_ms:
            return self._accept(new)
        if new.client_ts is not None and last.client_ts is not None and new.client_ts <= last.client_ts:
            return Verdict.OUT_OF_ORDER, new
        if plausible(last, new, self._max_speed):
            return self._accept(new)
        if new.client_ts is not None:
            if (new.lat, new.lng, new.client_ts) in self._sent:
                return Verdict.TELEPORT, new  # a refused fix resent: no new evidence
            self._sent.add((new.lat, new.lng, new.client_ts))
        refused = self._refused
        agrees = refused is not None and plausible(refused, new, self._max_speed)
        self._run = self._run + 1 if agrees else 1
        self._refused = new
        if self._run >= CONFIRMING_FIXES:
            # The last good fix was the glitch: the rider is here (and the store is told so).
            return self._accept(replace(new, confirmed=True))
        return Verdict.TELEPORT, new

    def adopt(self, stored: Fix) -> None:
        """The store refused a fix this judge accepted: its stored fix (another socket's or
        process's) is the last good one from now on."""
        self.last, self._refused, self._run = stored, None, 0
        self._sent.clear()

    def _accept(self, new: Fix) -> tuple[Verdict, Fix]:
        self.last, self._refused, self._run = new, None, 0
        self._sent.clear()
        return Verdict.ACCEPT, new
