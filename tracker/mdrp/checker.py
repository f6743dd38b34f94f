"""Check a solution against every rule of the MDRP README and compute its headline metrics.

Reads only the instance folder and the three solution files (as the published evaluator
does), so it judges the offline replay and the live replay alike. Each courier's moves are
walked into its stays (a place, when it got there, when it left); then, rules checked:

1. every order in at most one assignment (and once in the orders file), only placed orders, no
   assignment before placement, no pickup before the assignment is made, no courier setting
   off towards a restaurant before the first of the orders it picks up there is placed;
2. no pickup after the courier's off time;
3. a bundle is one restaurant's orders, picked up at or after their latest ready time, during
   a stay of its courier at that restaurant, at or after its arrival plus half the pickup
   service time; the courier leaves at the pickup plus the other half, not later;
4. drop-offs in the assignment's sequence, each during a stay of its courier at the diner,
   exactly at its arrival plus half the drop-off service time; the courier leaves at the
   drop-off plus the other half (later only from the assignment's last drop-off, rule 6);
5. continuous moves: each starts where the previous ended, not before the courier could leave
   (service halves included), not before its on time; and every pickup and drop-off time in
   the orders file agrees with the assignments;
6. a courier waits only at its on-location and at the last drop-off of an assignment: every
   place it goes to is a restaurant it picks up at or a diner it drops off at.

A courier may set off towards a restaurant before the assignment time written for its bundle:
the bundle may still grow while it travels (the two-stage commitment of Reyes et al.; its
assignment time is when it was last grown), which the published evaluator accepts too.

And the layout the published evaluator can read (rule ``format``): columns separated by
single spaces in the orders file (it reads it with pandas, ``sep=' '``), no tabs, headers
where it expects them, no blank line in the assignments file (its reader of that file stops
there with an error), and each courier's moves in one block (it keeps only a courier's last).

Times a solution computes from others (an arrival, a service half after it) are compared
within ``EPS``, since the files give them to 3 decimals; the bounds the instance sets (an
assignment at or after the placement, a pickup at or after the ready time, a departure at or
after the courier's on time) get no such slack: the published evaluator cuts assignment,
pickup and departure times to whole minutes, so 12.999 for a placement at 13 reads as 12.
Reading the files, and the layouts refused there, is :mod:`tracker.mdrp.solution_files`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tracker.mdrp.instance import Instance, load_instance
from tracker.mdrp.metrics import Metrics, compute_metrics
from tracker.mdrp.solution_files import Violation, read_solution
from tracker.mdrp.tables import require_folder

EPS = 1.5e-3  # two times written to 3 decimals differ from the true ones by at most 1e-3
TINY = 1e-9  # float noise only


def before(t: float, bound: float) -> bool:
    """True when ``t``, a time written to 3 decimals, is before ``bound``, an instance time:
    no slack, except for a bound with more decimals than the files hold."""
    return t < round(bound, 3) - TINY


@dataclass
class CheckReport:
    instance: str
    violations: list[Violation] = field(default_factory=list)
    metrics: Metrics | None = None
    notes: tuple[str, ...] = ()  # the instance loader's warnings, then the solution reader's

    @property
    def ok(self) -> bool:
        """True when the solution breaks no rule."""
        return not self.violations


def check_solution(instance_dir: str | Path, solution_dir: str | Path) -> CheckReport:
    """Verify every rule; the report lists each violation and carries the metrics."""
    inst = load_instance(instance_dir)
    sol = Path(solution_dir)
    require_folder(sol, "a solution")
    violations: list[Violation] = []
    bad = violations.append
    rows = read_solution(sol, bad)
    report = CheckReport(inst.name, violations, notes=(*inst.notes, *rows.notes))
    p = inst.params
    assignments, moves, order_rows = rows.assignments, rows.moves, rows.orders

    seen: dict[str, int] = {}
    pickups: dict[str, tuple[float, str]] = {}  # order -> (pickup time, courier)
    for at, pickup, cid, oids in assignments:
        if cid not in inst.couriers:
            bad(Violation("1", f"assignment at {at} names unknown courier {cid}"))
            continue
        courier = inst.couriers[cid]
        if pickup + EPS < at:
            bad(Violation("1", f"assignment at {at} of {cid} is picked up at {pickup}, before it is made"))
        rests = set()
        for oid in oids:
            if oid not in inst.orders:
                bad(Violation("1", f"assignment at {at} names unknown order {oid}"))
                continue
            seen[oid] = seen.get(oid, 0) + 1
            o = inst.orders[oid]
            rests.add(o.restaurant)
            if before(at, o.placement):
                bad(Violation("1", f"order {oid} assigned at {at} before its placement at {o.placement}"))
            if before(pickup, o.ready):
                bad(Violation("3", f"order {oid} picked up at {pickup} before ready at {o.ready}"))
            pickups[oid] = (pickup, cid)
        if len(rests) > 1:
            bad(Violation("3", f"assignment at {at} of {cid} mixes restaurants {sorted(rests)}"))
        if pickup > courier.off + EPS:
            bad(Violation("2", f"courier {cid} picks up at {pickup} after its off time {courier.off}"))
    for oid, count in seen.items():
        if count > 1:
            bad(Violation("1", f"order {oid} is in {count} assignments"))

    stays = _walk_moves(inst, moves, bad)
    for at, pickup, cid, oids in assignments:
        if cid not in inst.couriers or not oids or oids[0] not in inst.orders:
            continue
        rest = inst.orders[oids[0]].restaurant
        placed = min(inst.orders[oid].placement for oid in oids if oid in inst.orders)
        _check_pickup(_stay_at(stays.get(cid, []), rest, pickup), cid, rest, pickup, p.pickup_service / 2, placed, bad)
        previous = pickup
        for n, oid in enumerate(oids, start=1):
            row = order_rows.get(oid)
            if row is None:
                listed = rows.undelivered.get(oid)
                bad(Violation("5", f"order {oid} is assigned but " + (
                    f"solution_info_orders.txt line {listed} lists it undelivered" if listed
                    else "missing from solution_info_orders.txt")))
                continue
            o_pick, o_drop, o_courier = row
            if o_courier != cid or abs(o_pick - pickup) > EPS:
                bad(Violation("5", f"order {oid}: orders file says pickup {o_pick} by {o_courier}, assignment says {pickup} by {cid}"))
            _check_dropoff(_stay_at(stays.get(cid, []), oid, o_drop), cid, oid, o_drop, p.dropoff_service / 2,
                           n == len(oids), bad)
            if o_drop + EPS < previous:
                bad(Violation("4", f"order {oid} dropped at {o_drop}, before the previous stop of its assignment"))
            previous = o_drop
    for cid, path in stays.items():
        for came_from, stay in zip(path, path[1:]):
            if not stay.served:
                bad(Violation("6", f"courier {cid} goes to {stay.place} (there at {stay.arrive:g}) with nothing to "
                                   "pick up or drop off there"))
            elif stay.placed is not None and came_from.depart is not None and before(came_from.depart, stay.placed):
                bad(Violation("1", f"courier {cid} sets off towards restaurant {stay.place} at {came_from.depart}, "
                                   f"before any order it picks up there is placed (the first at {stay.placed})"))
    for oid in order_rows:
        if oid not in pickups:
            bad(Violation("1", f"order {oid} is in the orders file but in no assignment"))
    counted = {oid: row for oid, row in order_rows.items() if oid in pickups}  # not a row refused above
    report.metrics = compute_metrics(inst, assignments, counted, moves)
    return report


@dataclass
class Stay:
    """A courier at one place: from its arrival until it leaves (``None``: it stays there)."""

    place: str
    arrive: float
    depart: float | None = None
    served: bool = False  # a pickup or a drop-off of the solution happened during it
    placed: float | None = None  # the earliest placement among the orders picked up during it


def _stay_at(path: list[Stay], place: str, when: float) -> Stay | None:
    """The courier's stay at ``place`` that ``when`` falls in, else its stay there nearest in
    time (the rules then say what is wrong with the times), or ``None`` if it never goes there."""
    there = [stay for stay in path if stay.place == place]

    def off_by(stay: Stay) -> float:
        return max(stay.arrive - when, 0.0 if stay.depart is None else when - stay.depart, 0.0)
    return min(there, key=lambda stay: (off_by(stay), stay.served), default=None)  # a free one among equals


def _check_pickup(stay: Stay | None, cid: str, rest: str, pickup: float, half: float, placed: float,  # type: ignore[no-untyped-def]
                  bad) -> None:
    """Rule 3 at the restaurant: there, served half the service after arriving, gone half after.
    ``placed`` is the earliest placement among the bundle's orders."""
    if stay is None:
        bad(Violation("6", f"courier {cid} never goes to restaurant {rest} for its pickup at {pickup:g}"))
        return
    stay.served = True
    stay.placed = placed if stay.placed is None else min(stay.placed, placed)
    if stay.depart is not None and pickup > stay.depart + EPS:
        bad(Violation("3", f"courier {cid} picks up at restaurant {rest} at {pickup:g}, after it left ({stay.depart:g})"))
    elif pickup + EPS < stay.arrive + half:
        bad(Violation("3", f"courier {cid} picks up at restaurant {rest} at {pickup:g}, before its arrival "
                           f"({stay.arrive:g}) plus half the pickup service"))
    if stay.depart is not None and abs(stay.depart - (pickup + half)) > EPS:
        bad(Violation("3", f"courier {cid} leaves restaurant {rest} at {stay.depart:g}, not at its pickup "
                           f"({pickup:g}) plus half the pickup service ({pickup + half:g})"))


def _check_dropoff(stay: Stay | None, cid: str, oid: str, drop: float, half: float, last: bool, bad) -> None:  # type: ignore[no-untyped-def]
    """Rule 4 at the diner: dropped half the service after arriving, gone half after (or
    waiting there, after the assignment's last drop-off: rule 6)."""
    if stay is None:
        bad(Violation("6", f"courier {cid} never goes to order {oid}'s diner for its drop-off at {drop:g}"))
        return
    stay.served = True
    if abs(drop - (stay.arrive + half)) > EPS:
        bad(Violation("4", f"order {oid} is dropped off at {drop:g}, not at its courier's arrival ({stay.arrive:g}) "
                           f"plus half the drop-off service ({stay.arrive + half:g})"))
    if stay.depart is not None and (stay.depart + EPS < drop + half or (not last and stay.depart > drop + half + EPS)):
        bad(Violation("4", f"courier {cid} leaves order {oid}'s diner at {stay.depart:g}, not at the drop-off plus "
                           f"half the service ({drop + half:g})" + ("" if last else
                           ": a courier waits only at the last drop-off of its assignment")))


def _walk_moves(inst: Instance, moves: dict[str, list[tuple[float, str, str]]], bad) -> dict[str, list[Stay]]:  # type: ignore[no-untyped-def]
    """Check each courier's moves are continuous; return its stays, the on-location first."""
    p = inst.params
    stays: dict[str, list[Stay]] = {}
    for cid, path in moves.items():
        if cid not in inst.couriers:
            bad(Violation("5", f"moves of unknown courier {cid}"))
            continue
        courier = inst.couriers[cid]
        here = Stay("0", courier.on, served=True)  # waiting there is allowed
        stays[cid] = [here]
        ready_to_leave = courier.on
        for depart, origin, dest in path:
            if origin != here.place:
                bad(Violation("5", f"courier {cid} leaves {origin} at {depart} but is at {here.place}"))
            if before(depart, courier.on) if len(stays[cid]) == 1 else depart + EPS < ready_to_leave:
                bad(Violation("5", f"courier {cid} leaves {origin} at {depart}, before it can ({ready_to_leave})"))
            try:
                a, b = inst.place_of(origin, courier), inst.place_of(dest, courier)
            except KeyError as exc:
                bad(Violation("5", f"courier {cid} moves to or from unknown place {exc}"))
                break
            here.depart = depart
            here = Stay(dest, depart + inst.travel(a, b))
            stays[cid].append(here)
            ready_to_leave = here.arrive + (p.dropoff_service if dest in inst.orders else p.pickup_service)
    return stays
