"""``tracker replay``: play MDRP instances through the planner, check and report them."""
from __future__ import annotations

import argparse
import math
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from tracker.errors import ApiError

DEFAULT_INTERVAL_MIN = 0.5
OUT_ONE = "solutions-replay"  # default home of one offline replay (git-ignored: solutions/ is the committed set)
OUT_LIVE = "solutions-live"  # ... of one live replay (git-ignored)
OUT_ALL = "solutions"  # --all: the committed solutions of every instance


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("replay", help="replay MDRP instances through the dispatch planner")
    p.add_argument("instance", nargs="?", help="instance folder (offline replay, or with --check / --live)")
    p.add_argument("solution", nargs="?", help="with --check: the solution folder to check")
    p.add_argument("--out", help=f"where to write the three solution files (default {OUT_ONE}/NAME; with --live "
                                  f"{OUT_LIVE}/NAME; with --all, one folder per instance under {OUT_ALL}/, "
                                  "the solutions this repository keeps)")
    p.add_argument("--check", action="store_true", help="check SOLUTION against INSTANCE's rules, print metrics")
    p.add_argument("--all", metavar="ROOT", help="replay every instance under ROOT (both cores); ROOT may also be one instance")
    p.add_argument("--report", metavar="DIR", help="with --all: write report.md and PNG plots here")
    p.add_argument("--interval", type=float, default=DEFAULT_INTERVAL_MIN, help="minutes between planning rounds")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="processes for --all")
    p.add_argument("--live", action="store_true",
                   help=f"play the day through a running server (writes to {OUT_LIVE}/NAME unless --out; "
                        "prints a progress line every simulated hour)")
    p.add_argument("--server", help="with --live: the server's URL (default: start one)")
    p.add_argument("--secret", help="with --live --server: the server's TRACKER_SECRET")
    p.add_argument("--time-scale", type=float,
                   help="with --live and no --server: the clock speed of the server it starts (default 300: an o50 day "
                        "in under 3 minutes); a --server runs at its own speed")
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
    if args.time_scale is not None and not (math.isfinite(args.time_scale) and args.time_scale > 0):
        print(f"tracker replay: --time-scale must be a positive number, not {args.time_scale:g}", file=sys.stderr)
        return 2
    if args.report and not args.all:
        print("tracker replay: --report works only with --all ROOT (one instance's figures are the summary line)",
              file=sys.stderr)
        return 2
    for flag, value in (("--server", args.server), ("--secret", args.secret), ("--time-scale", args.time_scale)):
        if value is not None and not args.live:
            print(f"tracker replay: {flag} works only with --live", file=sys.stderr)
            return 2
    try:
        if args.all:
            return _run_all(args)
        if not args.instance:
            print("tracker replay: give an INSTANCE folder or --all ROOT", file=sys.stderr)
            return 2
        held = _instances_in(Path(args.instance))
        if held and not (Path(args.instance) / "orders.txt").is_file():
            print(f"tracker replay: {args.instance} is a folder of {len(held)} instances, not one instance: "
                  f"replay them all with --all {args.instance}, or give one of them, e.g. {held[0]}", file=sys.stderr)
            return 2
        if args.check:
            return _check(args)
        if args.live:
            from tracker.commands.replay_live import run_live

            return run_live(args)
        out = args.out or f"{OUT_ONE}/{Path(args.instance).name}"
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


def _instances_in(root: Path) -> list[Path]:
    """The instance folders directly under ``root`` (none if it is not a folder)."""
    try:
        return sorted(p for p in root.iterdir() if (p / "orders.txt").is_file())
    except OSError:
        return []


def _run_all(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from tracker.mdrp.report import summary_table, write_report

    root = Path(args.all)
    if not root.is_dir():
        print(f"tracker replay: --all needs a folder of instances; {root} is {'not a folder' if root.exists() else 'missing'}",
              file=sys.stderr)
        return 2
    folders = [root] if (root / "orders.txt").is_file() else _instances_in(root)  # one instance: a set of one
    if not folders:
        print(f"tracker replay: no instances under {root} (folders holding orders.txt, couriers.txt, ...)", file=sys.stderr)
        return 2
    out_root = Path(args.out or OUT_ALL)
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
    kept = " (the solutions this repository keeps: `git diff --stat solutions` shows what changed)" if not args.out else ""
    print(f"solutions written to {out_root}/NAME{kept}; checker: {len(folders) - len(failures)} of {len(folders)} "
          "solutions keep every rule")
    return 0 if not failures else 1
