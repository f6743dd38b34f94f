"""Write a replayed day as the three solution files the published MDRP evaluator reads."""
from __future__ import annotations

from pathlib import Path

from tracker.mdrp.simulator import DayResult


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.3f}"


def write_solution(day: DayResult, folder: str | Path) -> Path:
    """Write ``solution_info_{assignments,orders,couriers}.txt`` into ``folder``."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    inst = day.instance
    lines = ["assignment_time pickup_time courier orders"]
    orders = ["order placement_time ready_time pickup_time dropoff_time courier"]
    for a in sorted(day.assignments, key=lambda a: (a.time, a.courier)):
        lines.append(" ".join([_num(a.time), _num(a.pickup), a.courier, *a.orders]))
        for oid, drop in zip(a.orders, a.dropoffs):
            o = inst.orders[oid]
            orders.append(" ".join([oid, _num(o.placement), _num(o.ready), _num(a.pickup), _num(drop), a.courier]))
    moves = ["courier departure_time origin destination"]
    for cid in inst.couriers:
        for depart, origin, dest in day.moves.get(cid, []):
            moves.append(" ".join([cid, _num(depart), origin, dest]))
    (out / "solution_info_assignments.txt").write_text("\n".join(lines) + "\n")
    (out / "solution_info_orders.txt").write_text("\n".join(orders) + "\n")
    (out / "solution_info_couriers.txt").write_text("\n".join(moves) + "\n")
    return out
