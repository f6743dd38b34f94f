"""ETA, sans-I/O: haversine distance over a configured speed, through the remaining stops.

The rule mirrors the MDRP timing rules, so the same model serves live ETAs and the replay:
the rider reaches the restaurant after ``distance / speed``; the pickup happens at the later
of arrival plus half the pickup service time and the food's ready time; departure is pickup
plus the other half; each drop-off (in the bundle's sequence) is reached after its leg and
happens half a drop-off service time later. The same rule holds once a stop is under way: a
rider who has just collected the food leaves no earlier than half a pickup service after the
pickup (one riding away is timed from its fix, not from the counter), a rider at a door
delivers half a drop-off service after reaching it, and one still at a door it has just
delivered at leaves it half a drop-off service after that drop-off, so the ETA neither jumps
nor slides when the rider reports a step, nor creeps while it rides away.
docs/architecture.md ("ETA") gives its error on the MDRP instances.
"""
from __future__ import annotations

from dataclasses import dataclass

from tracker.geo import haversine_m

Point = tuple[float, float]

AT_COUNTER_M = 250.0  # a rider who says it is at a restaurant (or door) while farther than this still has the leg


@dataclass(frozen=True)
class EtaModel:
    """Speed in metres per second; service times in seconds (MDRP: 4 min each)."""

    speed_mps: float
    pickup_service_s: float = 240.0
    dropoff_service_s: float = 240.0

    def leg_ms(self, a: Point, b: Point) -> float:
        return haversine_m(a[0], a[1], b[0], b[1]) / self.speed_mps * 1000.0


@dataclass(frozen=True)
class RoutePlan:
    """Times along a rider's remaining route (server ms)."""

    pickup_arrival: float | None  # None once the food is picked up
    dropoffs: tuple[float, ...]  # one per remaining drop-off, in sequence
    pickup: float | None = None  # when the food is collected (None once picked up)


def route_times(model: EtaModel, now_ms: int, rider: Point, pickup: Point | None, ready_at_ms: int | None,
                drops: list[Point], *, at_pickup: bool = False, arrived_ms: float | None = None,
                collected: tuple[Point, float] | None = None, at_dropoff_ms: float | None = None,
                delivered: tuple[Point, float] | None = None) -> RoutePlan:
    """When the rider reaches the restaurant (if still to pick up) and each drop-off.

    ``pickup`` is ``None`` when the food is already picked up; ``at_pickup`` when the rider
    is already waiting at the restaurant, since ``arrived_ms`` if known: its pickup service
    then runs from its arrival, not from now (the food is not collected before now, though).
    A rider that says so while its position is over :data:`AT_COUNTER_M` away (reported
    early) still has the leg there to ride: its ETA does not jump ahead by that leg.

    Once picked up, ``collected`` is where and when the food was collected (the last pickup):
    a rider near that counter reaches the first drop-off no earlier than the leg from the
    counter after leaving it half a pickup service after the pickup, as planned before the
    pickup. That is a floor, not the rider's position: a rider standing at the counter gets
    the planned time until then (and is late after it, its time sliding from its fix); one
    riding away on time keeps it, one 50 m out is not timed as if still at the counter (its
    ETA crept a second later every second until it was 250 m out); nor is one that has
    delivered an earlier drop near the restaurant. ``at_dropoff_ms`` is when the rider said it
    reached the first drop-off's door: that drop-off happens half a drop-off service after it
    (not before now), not half a service after every fix, and the rider has left the counter.
    ``delivered`` is where and when the rider made its last drop-off of this trip: a rider
    still near that door leaves it half a drop-off service after the drop-off, as planned
    before it, so the next drop-off is reached no earlier than the leg from that door after
    then (the same kind of floor as the counter's; it jumped earlier by that half at the
    ``delivered``, then slid back a second per second while the rider stood there).
    They count only within :data:`AT_COUNTER_M` of the place (a rider farther off has left, or
    is not there yet; a door report from within it is taken at its word).
    """
    t = float(now_ms)
    position = rider
    arrival = picked = None
    half_pickup = model.pickup_service_s * 500.0
    if pickup is not None:
        if at_pickup and _at(rider, pickup):
            arrival = t if arrived_ms is None else min(t, float(arrived_ms))
        else:
            arrival = t + model.leg_ms(rider, pickup)
        picked = max(arrival + half_pickup, float(ready_at_ms or 0), t)
        t = picked + half_pickup
        position = pickup
    left: list[tuple[Point, float]] = []  # (a stop the rider is still at, its planned departure)
    if pickup is None and collected is not None and at_dropoff_ms is None and _at(rider, collected[0]):
        left.append((collected[0], float(collected[1]) + half_pickup))  # the counter
    if pickup is None and delivered is not None and at_dropoff_ms is None and _at(rider, delivered[0]):
        left.append((delivered[0], float(delivered[1]) + model.dropoff_service_s * 500.0))  # the last door
    out = []
    for i, drop in enumerate(drops):
        if i == 0 and at_dropoff_ms is not None and _at(position, drop):
            reach = min(t, float(at_dropoff_ms))
        else:
            reach = t + model.leg_ms(position, drop)
            if i == 0:  # not before the planned departure's leg there
                reach = max([reach] + [leave + model.leg_ms(place, drop) for place, leave in left])
        dropoff = max(reach + model.dropoff_service_s * 500.0, t)  # (at a door: not delivered before now)
        out.append(dropoff)
        t = dropoff + model.dropoff_service_s * 500.0
        position = drop
    return RoutePlan(arrival, tuple(out), picked)


def _at(rider: Point, place: Point) -> bool:
    """Whether the rider is at ``place`` (a counter or a door), as far as its fix tells."""
    return haversine_m(rider[0], rider[1], place[0], place[1]) <= AT_COUNTER_M
