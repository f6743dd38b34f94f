"""ETA, sans-I/O: haversine distance over a configured speed, through the remaining stops.

The rule mirrors the MDRP timing rules, so the same model serves live ETAs and the replay:
the rider reaches the restaurant after ``distance / speed``; the pickup happens at the later
of arrival plus half the pickup service time and the food's ready time; departure is pickup
plus the other half; each drop-off (in the bundle's sequence) is reached after its leg and
happens half a drop-off service time later. docs/architecture.md ("ETA") gives its error on
the MDRP instances.
"""
from __future__ import annotations

from dataclasses import dataclass

from tracker.geo import haversine_m

Point = tuple[float, float]

AT_COUNTER_M = 250.0  # a rider who says it is at the restaurant while farther than this still has the leg


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
                drops: list[Point], *, at_pickup: bool = False, arrived_ms: float | None = None) -> RoutePlan:
    """When the rider reaches the restaurant (if still to pick up) and each drop-off.

    ``pickup`` is ``None`` when the food is already picked up; ``at_pickup`` when the rider
    is already waiting at the restaurant, since ``arrived_ms`` if known: its pickup service
    then runs from its arrival, not from now (the food is not collected before now, though).
    A rider that says so while its position is over :data:`AT_COUNTER_M` away (reported
    early) still has the leg there to ride: its ETA does not jump ahead by that leg.
    """
    t = float(now_ms)
    position = rider
    arrival = picked = None
    if pickup is not None:
        if at_pickup and haversine_m(rider[0], rider[1], pickup[0], pickup[1]) <= AT_COUNTER_M:
            arrival = t if arrived_ms is None else min(t, float(arrived_ms))
        else:
            arrival = t + model.leg_ms(rider, pickup)
        half = model.pickup_service_s * 500.0
        picked = max(arrival + half, float(ready_at_ms or 0), t)
        t = picked + half
        position = pickup
    out = []
    for drop in drops:
        reach = t + model.leg_ms(position, drop)
        dropoff = reach + model.dropoff_service_s * 500.0
        out.append(dropoff)
        t = dropoff + model.dropoff_service_s * 500.0
        position = drop
    return RoutePlan(arrival, tuple(out), picked)
