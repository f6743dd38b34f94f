"""``tracker replay``: play MDRP instances through the planner, check and report them."""
from __future__ import annotations

import argparse
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from tracker.errors import ApiError

DEFAULT_INTERVAL_MIN = 0.5


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("replay", help="replay MDRP instances through the dispatch planner")
    p.add_argument("instance", nargs="?", help="instance folder (offline replay, or with --check / --live)")
    p.add_argument("solution", nargs="?", help="with --check: the solution folder to check")
    p.add_argument("--out", help="where to write the three solution files")
    p.add_argument("--check", action="store_true", help="check SOLUTION against INSTANCE's rules, print metrics")
    p.add_argument("--all", metavar="ROOT", help="replay every instance under ROOT (both cores)")
    p.add_argument("--report", metavar="DIR", help="with --all: write report.md and PNG plots here")
    p.add_argument("--interval", type=float, default=DEFAULT_INTERVAL_MIN, help="minutes between planning rounds")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="processes for --all")
    p.add_argument("--live", action="store_true", help="play the day through a running server")
    p.add_argument("--server", help="with --live: the server's URL (default: start one)")
    p.add_argument("--secret", help="with --live --server: the server's TRACKER_SECRET")
    p.add_argument("--time-scale", type=float, default=300.0, help="with --live: server clock speed (default 300: an o50 day in under 3 minutes)")
    p.set_defaults(func=run)


def _print_metrics(name: str, metrics: dict) -> None:  # type: ignore[type-arg]
    keys = ("delivered", "undelivered_pct", "ctd_mean", "ctd_p90", "r2p_mean", "orders_per_bundle", "cost_per_order")
    print(f"{name}: " + "  ".join(f"{k}={metrics[k]:.2f}" if isinstance(metrics[k], float) else f"{k}={metrics[k]}" for k in keys))


def replay_one(instance_dir: str, out_dir: str, interval: float) -> tuple[str, object, list[str]]:
    """Replay, write and check one instance; returns (name, metrics, violations)."""
    from tracker.mdrp.checker import check_solution
    from tracker.mdrp.instance import load_instance
    from tracker.mdrp.simulator import simulate
    from tracker.mdrp.solution import write_solution

    day = simulate(load_instance(instance_dir), interval)
    write_solution(day, out_dir)
    report = check_solution(instance_dir, out_dir)
    return report.instance, report.metrics, [f"rule {v.rule}: {v.message}" for v in report.violations]


def run(args: argparse.Namespace) -> int:
    if not (args.interval > 0 and args.interval <= 60):
        print(f"tracker replay: --interval must be more than 0 and at most 60 minutes, not {args.interval:g}",
              file=sys.stderr)
        return 2
    if args.jobs < 1:
        print(f"tracker replay: --jobs must be at least 1, not {args.jobs}", file=sys.stderr)
        return 2
    try:
        if args.all:
            return _run_all(args)
        if not args.instance:
            print("tracker replay: give an INSTANCE folder or --all ROOT", file=sys.stderr)
            return 2
        if args.check:
            return _check(args)
        if args.live:
            from tracker.mdrp.live import run_live

            return run_live(args)
        out = args.out or f"solutions/{Path(args.instance).name}"
        name, metrics, violations = replay_one(args.instance, out, args.interval)
        _print_metrics(name, metrics.as_dict())  # type: ignore[attr-defined]
        print(f"solution written to {out}; checker: {'OK' if not violations else f'{len(violations)} violations'}")
        for v in violations[:20]:
            print("  " + v)
        return 0 if not violations else 1
    except ApiError as err:
        print(f"tracker replay: {err.message}", file=sys.stderr)
        return 2
    except OSError as err:  # e.g. --out names a file, or a folder we may not write
        print(f"tracker replay: {err.filename or ''}: {err.strerror or err}", file=sys.stderr)
        return 2
    except UnicodeDecodeError:
        print("tracker replay: an instance or solution file is not UTF-8 text", file=sys.stderr)
        return 2


def _check(args: argparse.Namespace) -> int:
    from tracker.mdrp.checker import check_solution

    if not args.solution:
        print("tracker replay --check: give INSTANCE and SOLUTION folders", file=sys.stderr)
        return 2
    report = check_solution(args.instance, args.solution)
    for v in report.violations:
        print(f"rule {v.rule}: {v.message}")
    _print_metrics(report.instance, report.metrics.as_dict())  # type: ignore[union-attr]
    print("OK: every rule holds" if report.ok else f"FAILED: {len(report.violations)} violations")
    return 0 if report.ok else 1


def _run_all(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from tracker.mdrp.report import summary_table, write_report

    root = Path(args.all)
    if not root.is_dir():
        print(f"tracker replay: --all needs a folder of instances; {root} is {'not a folder' if root.exists() else 'missing'}",
              file=sys.stderr)
        return 2
    folders = sorted(p for p in root.iterdir() if (p / "orders.txt").is_file())
    if not folders:
        print(f"tracker replay: no instances under {root}", file=sys.stderr)
        return 2
    out_root = Path(args.out or "solutions")
    results, failures = [], []
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = [pool.submit(replay_one, str(f), str(out_root / f.name), args.interval) for f in folders]
        for fut in tqdm(futures, desc="replaying", unit="instance"):
            name, metrics, violations = fut.result()
            results.append((name, metrics))
            if violations:
                failures.append((name, violations))
    print(summary_table(results))
    if args.report:
        print(f"report written to {write_report(results, args.report)}")
    for name, violations in failures:
        print(f"{name}: {len(violations)} violations, e.g. {violations[0]}")
    print(f"checker: {len(folders) - len(failures)} of {len(folders)} solutions keep every rule")
    return 0 if not failures else 1
