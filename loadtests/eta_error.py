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

It also measures the estimate a customer is shown while the order still waits for a rider
(``Plan.estimates``: the drop-off the round's plan gives it, the rider offered it now or only
planned): the first one, made when the order comes in, and the last one before its rider is
committed, each against the drop-off the day really had, and how many orders had one when
they came in.
"""
from __future__ import annotations

import argparse
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: ``loadtests`` is not a package

from loadtests.arguments import ctrl_c_exits, instance_folders, positive_int  # noqa: E402
from tracker.dispatch.model import Plan, Snapshot  # noqa: E402
from tracker.geo import LocalProjection  # noqa: E402
from tracker.mdrp.instance import Instance, load_instance  # noqa: E402
from tracker.mdrp.simulator import ORIGIN, simulate, to_ms  # noqa: E402
from tracker.orders.eta import EtaModel, route_times  # noqa: E402

MS_PER_MIN = 60_000.0


def instance_errors(folder: str) -> tuple[list[float], list[float], list[float], list[float], int]:
    """(drop-off errors, pickup errors, first-estimate errors, last-estimate errors, orders with
    no estimate when they came in), minutes, for one replayed day."""
    inst = load_instance(folder)
    first: dict[str, float | None] = {}  # order -> its first round's estimate (None: none)
    last: dict[str, float] = {}  # order -> its latest estimate

    def observe(snapshot: Snapshot, decision: Plan) -> None:
        for o in snapshot.orders:
            if o.rider_id is None:
                eta = decision.estimates.get(o.id)
                first.setdefault(o.id, eta)
                if eta is not None:
                    last[o.id] = eta

    day = simulate(inst, observe=observe)
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
    delivered = {oid: to_ms(t) for a in day.assignments for oid, t in zip(a.orders, a.dropoffs)}
    first_err = [(eta - delivered[oid]) / MS_PER_MIN for oid, eta in first.items() if eta is not None and oid in delivered]
    last_err = [(eta - delivered[oid]) / MS_PER_MIN for oid, eta in last.items() if oid in delivered]
    return drop_err, pick_err, first_err, last_err, sum(1 for eta in first.values() if eta is None)


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
    ap.add_argument("--jobs", type=positive_int, default=2)
    args = ap.parse_args()
    root = Path(args.root)
    folders = [root] if (root / "orders.txt").exists() else instance_folders(ap, root)
    drops: list[float] = []
    picks: list[float] = []
    firsts: list[float] = []
    lasts: list[float] = []
    without = 0
    with ctrl_c_exits("eta_error.py"), ProcessPoolExecutor(args.jobs) as pool:
        for d, k, f, la, n in pool.map(instance_errors, [str(f) for f in folders]):
            drops.extend(d)
            picks.extend(k)
            firsts.extend(f)
            lasts.extend(la)
            without += n
    print(f"ETA model vs the replayed days ({len(folders)} instances; predicted minus actual)")
    print(_summary("drop-off", np.array(drops)))
    print(_summary("pickup", np.array(picks)))
    print("Estimate while the order waits for a rider (the plan's drop-off) vs the actual drop-off")
    print(_summary("first", np.array(firsts)))
    print(_summary("last", np.array(lasts)))
    print(f"{'':>9}  orders with no estimate when they came in: {without} of {without + len(firsts)}")


if __name__ == "__main__":
    main()
