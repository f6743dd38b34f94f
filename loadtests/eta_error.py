"""ETA error on the MDRP days: the live ETA model against what the replay's couriers did.

Run on demand (not in CI), from the repository root:

    python loadtests/eta_error.py ../shared/mdrp/instances [--jobs 2]

For every instance under ROOT it replays the day offline (the production planner, the
evaluator's timing rules), then, for each executed assignment, asks the live ETA model
(``tracker.orders.eta.route_times``: haversine distance over the instance's speed, the same
service times) when the courier, leaving from where it was at departure, would pick up and
deliver each order, and compares with the times the day really had (planar distance rounded
up to whole minutes per leg, as the evaluator requires). Prints the error of the predicted
drop-off time (predicted minus actual, minutes): mean, mean absolute, p90 and max absolute,
and the same for the pickup time.
"""
from __future__ import annotations

import argparse
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from tracker.geo import LocalProjection
from tracker.mdrp.instance import Instance, load_instance
from tracker.mdrp.simulator import ORIGIN, simulate, to_ms
from tracker.orders.eta import EtaModel, route_times

MS_PER_MIN = 60_000.0


def instance_errors(folder: str) -> tuple[list[float], list[float]]:
    """(drop-off errors, pickup errors) in minutes for every assignment of one replayed day."""
    inst = load_instance(folder)
    day = simulate(inst)
    proj = LocalProjection(*ORIGIN)
    p = inst.params
    model = EtaModel(p.meters_per_minute / 60.0, p.pickup_service * 60.0, p.dropoff_service * 60.0)
    departures = _departures(inst, day.moves)
    drop_err: list[float] = []
    pick_err: list[float] = []
    for a in day.assignments:
        depart, start = departures[(a.courier, a.orders[0])]
        orders = [inst.orders[o] for o in a.orders]
        plan = route_times(
            model, to_ms(depart), proj.to_latlng(*start), proj.to_latlng(*inst.restaurants[orders[0].restaurant]),
            to_ms(max(o.ready for o in orders)), [proj.to_latlng(o.x, o.y) for o in orders],
        )
        half_pickup_ms = p.pickup_service / 2 * MS_PER_MIN
        picked = max(plan.pickup_arrival + half_pickup_ms, to_ms(max(o.ready for o in orders)))  # type: ignore[operator]
        pick_err.append((picked - to_ms(a.pickup)) / MS_PER_MIN)
        drop_err.extend((pred - to_ms(actual)) / MS_PER_MIN for pred, actual in zip(plan.dropoffs, a.dropoffs))
    return drop_err, pick_err


def _departures(inst: Instance, moves: dict[str, list[tuple[float, str, str]]]) -> dict[tuple[str, str], tuple[float, tuple[float, float]]]:
    """(courier, first order of an assignment) -> (departure minute, start position)."""
    out = {}
    for cid, courier_moves in moves.items():
        for i, (t, src, dst) in enumerate(courier_moves):
            if dst in inst.restaurants and i + 1 < len(courier_moves):
                start = (inst.couriers[cid].x, inst.couriers[cid].y) if src == "0" else (inst.orders[src].x, inst.orders[src].y)
                out[(cid, courier_moves[i + 1][2])] = (t, start)
    return out


def _summary(name: str, errors: np.ndarray) -> str:
    a = np.abs(errors)
    return (f"{name:>9}: n={len(errors)}  mean {errors.mean():+.2f} min  mean |err| {a.mean():.2f}  "
            f"p90 |err| {np.percentile(a, 90):.2f}  max |err| {a.max():.2f}")


def main() -> None:
    """Replay every instance under ROOT in ``--jobs`` processes and print the drop-off and pickup errors."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", help="folder of MDRP instances (or one instance)")
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    root = Path(args.root)
    folders = [root] if (root / "orders.txt").exists() else sorted(p for p in root.iterdir() if (p / "orders.txt").exists())
    drops: list[float] = []
    picks: list[float] = []
    with ProcessPoolExecutor(args.jobs) as pool:
        for d, k in pool.map(instance_errors, [str(f) for f in folders]):
            drops.extend(d)
            picks.extend(k)
    print(f"ETA model vs the replayed days ({len(folders)} instances; predicted minus actual)")
    print(_summary("drop-off", np.array(drops)))
    print(_summary("pickup", np.array(picks)))


if __name__ == "__main__":
    main()
