"""When the rider feed may publish a rider's next frame on its orders' channels.

Real positions at most one a second: a fix within a second of the last one published waits
for the second's end (the newest such fix is kept: trailing edge). A rider's last fix fed once
more because its orders changed (``again``: new ETAs, the same position) waits for that second
too, and a quarter second more, so that the next fix of a rider streaming a fix a second, due
then, goes instead (with the new orders): one frame, not two. It does not start a second of its
own: a re-published fix that did had each later fix of such a rider held back ~1 s, for good.
And no two frames of a rider go closer than :data:`SPACING_S`, the spacing a customer socket
drops closer positions at (``tracker.orders.sockets``): a fix right after a re-published one
waits for it, once (its second still counts from its arrival, so later fixes are not held back).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

from tracker.locations import Fix

MIN_INTERVAL_S = 1.0  # between two real positions
SPACING_S = 0.5  # between any two frames
AGAIN_GRACE_S = 0.25  # a re-published fix waits this much past the second, for the rider's next fix


@dataclass(frozen=True)
class Held:
    """A frame waiting for its time: the fix, the orders to publish it on, whether it is one
    fed again, and when it arrived (monotonic)."""

    fix: Fix
    orders: frozenset[str]
    again: bool
    arrived: float


@dataclass
class _Rider:
    real_at: float = -math.inf  # the start of the second of the last real position published
    sent_at: float = -math.inf  # when its last frame of any kind was published
    held: Held | None = None


class FeedPace:
    """Per rider: the frame waiting, and when it may go."""

    def __init__(self) -> None:
        self._riders: dict[str, _Rider] = {}

    def offer(self, rider_id: str, fix: Fix, orders: frozenset[str], again: bool, now: float) -> float:
        """Hold a frame (one fed again keeps the position of a real fix held, with the new
        orders); returns in how many seconds the held frame is due (0 or less: now)."""
        if len(self._riders) > 100_000:  # (forget riders with nothing held that sent nothing for a while)
            self._riders = {r: s for r, s in self._riders.items() if s.held or now - s.sent_at < 2 * MIN_INTERVAL_S}
        rider = self._riders.setdefault(rider_id, _Rider())
        if again and rider.held is not None:
            rider.held = replace(rider.held, orders=orders)
        else:
            rider.held = Held(fix, orders, again, now)
        held = rider.held
        due = max(rider.real_at + MIN_INTERVAL_S + (AGAIN_GRACE_S if held.again else 0.0), rider.sent_at + SPACING_S)
        return due - now

    def take(self, rider_id: str, now: float) -> Held | None:
        """The frame held for ``rider_id``, if any, published now: the rider's clocks move."""
        rider = self._riders.get(rider_id)
        if rider is None or rider.held is None:
            return None
        held, rider.held = rider.held, None
        rider.sent_at = now
        if not held.again:  # (a fix held back only by the spacing keeps its own second)
            rider.real_at = max(held.arrived, rider.real_at + MIN_INTERVAL_S)
        return held
