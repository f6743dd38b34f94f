"""What one server process keeps per rider (not per socket): its GPS sanity judge and its fix
rate limit, shared by all of the rider's sockets on this process and dropped with the last one.

A rider with two sockets (two phones, a reconnect that overlaps the old socket) is judged
against its one last good fix and spends one budget of fixes. Sockets of the rider on other
processes have their own; the store's guard (``guard_fix.lua``) still judges every fix against
the one stored, and a fix it refuses makes the stored one this process's last good fix.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from tracker.locations.fix import Fix
from tracker.locations.ratelimit import TokenBucket
from tracker.locations.sanity import FixJudge


@dataclass
class RiderHere:
    """One rider's shared state on this process."""

    judge: FixJudge
    bucket: TokenBucket
    sockets: int = 0
    # The newest fix refused for the rate, to be taken once the budget allows unless a newer
    # one is taken first (rider_fixes.py), and the task that waits to take it.
    held: Any = None
    held_task: asyncio.Task[None] | None = None


class RidersHere:
    """The riders with sockets open on this process."""

    def __init__(self, *, max_speed_mps: float, stale_after_ms: int, fix_rate: float) -> None:
        self._max_speed = max_speed_mps
        self._stale_ms = stale_after_ms
        self.fix_rate = fix_rate
        self.fix_burst = 2 * fix_rate
        self._riders: dict[str, RiderHere] = {}

    def attach(self, rider_id: str, stored: Fix | None) -> RiderHere:
        """A socket of the rider opened; ``stored`` is its last fix read from the store."""
        here = self._riders.get(rider_id)
        if here is None:
            here = self._riders[rider_id] = RiderHere(
                FixJudge(stored, self._max_speed, self._stale_ms), TokenBucket(rate=self.fix_rate, burst=self.fix_burst))
        elif stored is not None and (here.judge.last is None or stored.ts > here.judge.last.ts):
            here.judge.adopt(stored)  # another process wrote a newer fix meanwhile
        here.sockets += 1
        return here

    def detach(self, rider_id: str) -> bool:
        """A socket of the rider closed: forget the rider with its last socket here (then True)."""
        here = self._riders.get(rider_id)
        if here is None:
            return True
        here.sockets -= 1
        if here.sockets > 0:
            return False
        del self._riders[rider_id]
        return True

    def is_here(self, rider_id: str) -> bool:
        """Whether the rider has a socket open on this process."""
        return rider_id in self._riders

    def overruled(self, rider_id: str, stored: Fix) -> None:
        """The store refused a fix of the rider: judge its next ones from the fix it holds."""
        here = self._riders.get(rider_id)
        if here is not None:
            here.judge.adopt(stored)
