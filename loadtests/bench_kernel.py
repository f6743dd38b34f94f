"""Kernel benchmark: linear_assignment vs scipy and lap, and a full planning round.

Run on demand (not in CI):  python loadtests/bench_kernel.py [--repeat 5]

Prints, side by side from one run, the median solve time of ``dispatch_ext.linear_assignment``,
``scipy.optimize.linear_sum_assignment`` and ``lap.lapjv`` at each size (uniform random costs
and travel-time-like geometric costs), checks the three reach the same optimum, and times a
full planning round (costs + bundling + assignment through the production planner) for 1,000
open orders against 3,000 riders on one core.
"""
from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: ``loadtests`` is not a package

import dispatch_ext  # noqa: E402
from dispatch_ext import linear_assignment  # noqa: E402
from loadtests.arguments import ctrl_c_exits, positive_int  # noqa: E402

SIZES = [(100, 100), (500, 500), (1000, 1000), (2000, 2000), (300, 2000)]
BENCH_EXTRAS = ("scipy", "lap")  # what it compares the kernel with: the [bench] extras


def missing_extras() -> list[str]:
    """The modules of the ``[bench]`` extras that are not installed."""
    return [name for name in BENCH_EXTRAS if importlib.util.find_spec(name) is None]


def timed(fn, repeat: int) -> tuple[float, object]:  # type: ignore[no-untyped-def]
    """Call ``fn`` ``repeat`` times; returns the median seconds and the last result."""
    times, result = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), result


def lap_solve(cost: np.ndarray) -> float:
    """Solve ``cost`` with ``lap.lapjv``; returns the total cost of the pairs it matched."""
    import lap

    n, m = cost.shape
    total, x, _ = lap.lapjv(cost, extend_cost=n != m)
    return float(sum(cost[i, j] for i, j in enumerate(x) if j >= 0))


def costs(kind: str, n: int, m: int, rng: np.random.Generator) -> np.ndarray:
    """An n x m cost matrix: ``uniform`` in [0, 100), otherwise whole travel minutes (320 m/min)
    between random points in a 15 km square."""
    if kind == "uniform":
        return rng.random((n, m)) * 100.0
    riders = rng.random((n, 2)) * 15000.0
    sites = rng.random((m, 2)) * 15000.0
    return np.ceil(np.hypot(riders[:, None, 0] - sites[None, :, 0], riders[:, None, 1] - sites[None, :, 1]) / 320.0)


def bench_assignment(repeat: int) -> None:
    """Print the kernel's, scipy's and lap's median solve times at each size, and whether all three
    reach the same optimum."""
    from scipy.optimize import linear_sum_assignment

    rng = np.random.default_rng(7)
    print(f"dispatch_ext compiled: {dispatch_ext.IS_COMPILED}")
    print(f"{'size':>11} {'costs':>9} {'kernel ms':>10} {'scipy ms':>9} {'lap ms':>8} {'kernel/scipy':>13} {'kernel/lap':>11}  same optimum")
    for n, m in SIZES:
        for kind in ("uniform", "geometric"):
            c = costs(kind, n, m, rng)
            tk, (r, k) = timed(lambda: linear_assignment(c), repeat)  # type: ignore[misc]
            ts, (rs, cs) = timed(lambda: linear_sum_assignment(c), repeat)  # type: ignore[misc]
            tl, lap_total = timed(lambda: lap_solve(c), repeat)
            ours, theirs = c[r, k].sum(), c[rs, cs].sum()
            same = abs(ours - theirs) <= 1e-6 * max(1.0, abs(theirs)) and abs(float(lap_total) - theirs) <= 1e-6 * max(1.0, abs(theirs))  # type: ignore[arg-type]
            print(f"{n:>5}x{m:<5} {kind:>9} {tk*1e3:>10.2f} {ts*1e3:>9.2f} {tl*1e3:>8.2f} {tk/ts:>13.2f} {tk/tl:>11.2f}  {same}")


def bench_round(repeat: int) -> None:
    """Time a full planning round (1,000 orders, 3,000 riders) on the compiled kernel, then once on
    the pure-Python twin, and print both."""
    from tracker.dispatch.model import OrderView, RiderView, Snapshot
    from tracker.dispatch.planner import Policy, plan
    from tracker.geo import LocalProjection

    rng = np.random.default_rng(11)
    proj = LocalProjection(40.7128, -74.0060)
    now = 1_700_000_000_000
    restaurants = [proj.to_latlng(*xy) for xy in rng.random((300, 2)) * 20000]
    orders = []
    for i in range(1000):
        rl = restaurants[int(rng.integers(0, 300))]
        dl = proj.to_latlng(*(rng.random(2) * 20000))
        orders.append(OrderView(f"o{i}", f"m{restaurants.index(rl)}", rl[0], rl[1], dl[0], dl[1],
                                now - int(rng.integers(0, 20)) * 60000, now + int(rng.integers(-5, 15)) * 60000))
    riders = []
    for i in range(3000):
        lat, lng = proj.to_latlng(*(rng.random(2) * 20000))
        riders.append(RiderView(f"r{i}", lat, lng, True, None, busy_until_ms=now + int(rng.integers(0, 10)) * 60000))
    snap = Snapshot(now, proj.origin_lat, proj.origin_lng, tuple(orders), tuple(riders))
    policy = Policy(interval_min=5.0)
    t, result = timed(lambda: plan(snap, policy), repeat)
    print(f"full planning round, 1000 orders x 3000 riders: {t*1e3:.1f} ms median of {repeat} "
          f"({result.stats['bundles']} bundles, {len(result.offers)} offers)")  # type: ignore[attr-defined]
    from dispatch_ext import _pure
    from tracker.dispatch import planner

    compiled, planner.kernel = planner.kernel, _pure  # type: ignore[assignment]
    try:
        tp, pure_result = timed(lambda: plan(snap, policy), 1)
    finally:
        planner.kernel = compiled
    # Equal-cost ties may resolve to different pairs, so compare the counts, not the pairs.
    print(f"  the same round on the pure-Python twin: {tp*1e3:.1f} ms (compiled/pure {t/tp:.3f}); "
          f"offers {len(result.offers)} vs {len(pure_result.offers)}")  # type: ignore[attr-defined]


def main() -> None:
    """Run both benchmarks, or exit with a message when the ``[bench]`` extras are missing."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=positive_int, default=5)
    args = parser.parse_args()
    missing = missing_extras()
    if missing:
        sys.exit(f"bench_kernel: {' and '.join(missing)} not installed (the benchmark extras): "
                 "pip install -e '.[bench]'")
    with ctrl_c_exits("bench_kernel.py"):
        bench_assignment(args.repeat)
        bench_round(args.repeat)


if __name__ == "__main__":
    main()
