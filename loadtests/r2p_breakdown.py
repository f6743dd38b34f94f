"""Where ready-to-pickup comes from on the MDRP days: reach at placement, or competition.

Run on demand (not in CI), from the repository root:

    python loadtests/r2p_breakdown.py ../shared/mdrp/instances [--match o50t100s1] [--jobs 2]

For every instance under ROOT (whose name contains ``--match``) it replays the day offline
with the production planner and, for each order, notes in the round where the order first
appears the earliest pickup any courier could make if it served that order alone: from
where and when each courier the planner sees becomes free (idle, still delivering, or
announced), travel by the evaluator's rule, half the pickup service, no pickup after its
off time. ``reach`` is that pickup's lateness against the ready time: about the minutes no
decision could save once the order is placed, given where couriers stood then (a courier
announced later, or one whose later jobs end nearer, can still beat it for one order). The
rest of the replay's ready-to-pickup, ``actual - reach``, is what orders lost to each other
(couriers taken by other orders, or gone off shift). Prints both per family and overall.
"""
from __future__ import annotations

import argparse
import re
import sys
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: ``loadtests`` is not a package

import dispatch_ext as kernel  # noqa: E402
from loadtests.arguments import ctrl_c_exits, instance_folders, positive_int  # noqa: E402
from tracker.dispatch.model import Plan, Snapshot  # noqa: E402
from tracker.geo import LocalProjection  # noqa: E402
from tracker.mdrp.instance import load_instance  # noqa: E402
from tracker.mdrp.simulator import simulate  # noqa: E402

MS_PER_MIN = 60_000.0


def breakdown(folder: str) -> tuple[str, float, float]:
    """(instance, mean reach lateness, mean actual ready-to-pickup) over delivered orders."""
    inst = load_instance(folder)
    p = inst.params
    reach: dict[str, float] = {}

    def observe(snap: Snapshot, _plan: Plan) -> None:
        new = [o for o in snap.orders if o.rider_id is None and o.id not in reach]
        if not new or not snap.riders:
            return
        proj = LocalProjection(snap.origin_lat, snap.origin_lng)
        now = snap.now_ms
        x, y = proj.to_xy(np.array([r.lat for r in snap.riders]), np.array([r.lng for r in snap.riders]))
        start = np.array([max(now, r.busy_until_ms, r.shift_start_ms or now) for r in snap.riders], dtype=float)
        end = np.array([(r.shift_end_ms - now) / MS_PER_MIN if r.shift_end_ms else np.inf for r in snap.riders])
        sx, sy = proj.to_xy(np.array([o.pickup_lat for o in new]), np.array([o.pickup_lng for o in new]))
        ready = np.array([(o.ready_at_ms - now) / MS_PER_MIN for o in new])
        pick = kernel.pickup_times(x, y, (start - now) / MS_PER_MIN, end, np.atleast_1d(sx), np.atleast_1d(sy),
                                   ready, p.meters_per_minute, p.pickup_service, np.inf).min(axis=0)
        for o, pk, rd in zip(new, pick.tolist(), ready.tolist()):
            reach[o.id] = max(0.0, pk - rd) if np.isfinite(pk) else np.nan

    day = simulate(inst, observe=observe)
    pairs = [(reach.get(oid, np.nan), max(0.0, a.pickup - inst.orders[oid].ready))
             for a in day.assignments for oid in a.orders]
    got = np.array([pr for pr in pairs if np.isfinite(pr[0])]).reshape(-1, 2)
    if not len(got):  # no delivered order any courier could reach: nothing to split
        return inst.name, float("nan"), float("nan")
    return inst.name, float(got[:, 0].mean()), float(got[:, 1].mean())


def main() -> None:
    """Break down every matching instance under ROOT in ``--jobs`` processes and print reach and actual
    ready-to-pickup per family and overall."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root")
    ap.add_argument("--match", default="", help="only instances whose name contains this")
    ap.add_argument("--jobs", type=positive_int, default=2)
    args = ap.parse_args()
    folders = [str(f) for f in instance_folders(ap, Path(args.root), args.match)]
    with ctrl_c_exits("r2p_breakdown.py"), ProcessPoolExecutor(args.jobs) as pool:
        rows = list(pool.map(breakdown, folders))
    families: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for name, reach, actual in rows:
        families[re.sub(r"^\d+", "", name)[:-4]].append((reach, actual))
        families["all"].append((reach, actual))
    print(f"{'family':<12} {'days':>4} {'reach':>6} {'actual':>6} {'lost to each other':>18}")
    for fam, vals in sorted(families.items(), key=lambda kv: (kv[0] == "all", kv[0])):
        reach, actual = np.nanmean(np.array(vals), axis=0)
        print(f"{fam:<12} {len(vals):>4} {reach:>6.2f} {actual:>6.2f} {actual - reach:>18.2f}")


if __name__ == "__main__":
    main()
