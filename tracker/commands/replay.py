"""``tracker replay``: play MDRP instances through the planner, check and report them."""
from __future__ import annotations

import argparse
import math
import os
import shlex
import signal
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tracker.errors import ApiError
from tracker.interrupts import STOPPING_SIGNALS, signals_held
from tracker.settings import MAX_TIME_SCALE

DEFAULT_INTERVAL_MIN = 0.5
OUT_ONE = "solutions-replay"  # default home of one offline replay (git-ignored: solutions/ is the committed set)
OUT_LIVE = "solutions-live"  # ... of one live replay (git-ignored)
OUT_ALL = "solutions"  # --all: the committed solutions of every instance


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``replay`` command and its flags to ``sub``."""
    p = sub.add_parser("replay", help="replay MDRP instances through the dispatch planner")
    p.add_argument("instance", nargs="?", help="instance folder (offline replay, or with --check / --live)")
    p.add_argument("solution", nargs="?", help="with --check: the solution folder to check")
    p.add_argument("--out", help=f"where to write the three solution files (default {OUT_ONE}/NAME; with --live "
                                  f"{OUT_LIVE}/NAME; with --all, one folder per instance under {OUT_ALL}/, "
                                  "the solutions this repository keeps)")
    p.add_argument("--check", action="store_true", help="check SOLUTION against INSTANCE's rules, print metrics")
    p.add_argument("--all", metavar="ROOT", help="replay every instance under ROOT (both cores); ROOT may also be one instance")
    p.add_argument("--report", metavar="DIR", help="with --all: write report.md and PNG plots here")
    p.add_argument("--interval", type=float, default=DEFAULT_INTERVAL_MIN,
                   help=f"minutes between planning rounds (default {DEFAULT_INTERVAL_MIN:g})")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                   help="processes for --all (default: one per core, %(default)s here)")
    p.add_argument("--live", action="store_true",
                   help=f"play the day through a running server (writes to {OUT_LIVE}/NAME unless --out; "
                        "prints a progress line every simulated hour)")
    p.add_argument("--server", help="with --live: the server's URL (default: start one)")
    p.add_argument("--port", type=int, help="with --live and no --server: the port of the server it starts "
                                            "(default: a free one)")
    p.add_argument("--secret", help="with --live --server: the server's TRACKER_SECRET (default: the "
                   "TRACKER_SECRET environment variable, else the development secret in TRACKER_DATA_DIR, default "
                   "./.tracker, as `tracker token`)")
    p.add_argument("--time-scale", type=float,
                   help="with --live: the clock speed of the server it starts (default 300: an o50 day in under 3 "
                        "minutes); with --server, the day plays at that server's own speed, and a --time-scale given "
                        "must equal it (else exit 2)")
    p.add_argument("--print-server-env", action="store_true",
                   help="print, as `export VAR=value` lines, the settings a server for `--live --server` needs to "
                        "match the server --live starts itself (for INSTANCE, --time-scale and --interval)")
    p.set_defaults(func=run, take_extra=_late_solution)


def _late_solution(args: argparse.Namespace, extra: list[str]) -> bool:
    """``tracker replay INSTANCE --check SOLUTION``: the SOLUTION after the flag (argparse takes the
    positionals only as one run) is the solution; True when ``extra`` was that."""
    if args.check and args.instance and args.solution is None and len(extra) == 1 and not extra[0].startswith("-"):
        args.solution = extra[0]
        return True
    return False


def print_metrics(name: str, metrics: dict) -> None:  # type: ignore[type-arg]
    """One day's headline figures on one line (an offline, checked or live replay alike)."""
    keys = ("undelivered_pct", "ctd_mean", "ctd_p90", "r2p_mean", "orders_per_bundle", "cost_per_order")
    print(f"{name}: delivered={metrics['delivered']}/{metrics['orders']}  "
          + "  ".join(f"{k}={_fmt(metrics[k])}" for k in keys))


def _fmt(value: Any) -> str:
    if not isinstance(value, float):
        return str(value)
    return "n/a" if math.isnan(value) else f"{value:.2f}"  # n/a: nothing to measure (no deliveries)


@dataclass
class Replayed:
    """One instance replayed, written and checked (or the one-line error that stopped it)."""

    name: str
    metrics: Any = None  # tracker.mdrp.metrics.Metrics
    violations: list[str] = field(default_factory=list)
    notes: tuple[str, ...] = ()  # warnings about the instance's data
    error: str | None = None


def replay_one(instance_dir: str, out_dir: str, interval: float) -> Replayed:
    """Replay, write and check one instance."""
    from tracker.mdrp.checker import check_solution
    from tracker.mdrp.instance import load_instance
    from tracker.mdrp.simulator import simulate
    from tracker.mdrp.solution import write_solution

    inst = load_instance(instance_dir)
    day = simulate(inst, interval)
    write_solution(day, out_dir)
    report = check_solution(instance_dir, out_dir)
    return Replayed(report.instance, report.metrics, [f"rule {v.rule}: {v.message}" for v in report.violations],
                    inst.notes)


def replay_guarded(instance_dir: str, out_dir: str, interval: float) -> Replayed:
    """:func:`replay_one` for a worker process: any failure comes back as a string, never as an exception
    (one bad instance must not stop the others, and not every exception survives pickling)."""
    try:
        return replay_one(instance_dir, out_dir, interval)
    except ApiError as err:
        return Replayed(Path(instance_dir).name, error=err.message)
    except OSError as err:
        return Replayed(Path(instance_dir).name, error=f"{err.filename or ''}: {err.strerror or err}")
    except UnicodeDecodeError:
        return Replayed(Path(instance_dir).name, error="an instance or solution file is not UTF-8 text")
    except Exception as err:  # noqa: BLE001 - reported per instance; the run goes on
        return Replayed(Path(instance_dir).name, error=f"{type(err).__name__}: {err}")


def _warn(notes: tuple[str, ...], name: str = "") -> None:
    for note in notes:
        print(f"tracker replay: warning: {name + ': ' if name else ''}{note}", file=sys.stderr)


def _folder_problem(flag: str, path: Path) -> str | None:
    """Why ``path`` cannot take our output (a file, under a file, an instance folder), or None."""
    if path.exists() and not path.is_dir():
        return f"{flag} {path} is a file, not a folder"
    up = path.parent
    while not up.exists() and up != up.parent:
        up = up.parent
    if up.exists() and not up.is_dir():
        return f"{flag} {path}: {up} is a file, not a folder"
    if (path / "orders.txt").is_file():
        return f"{flag} {path} holds an instance (orders.txt): solution files would mix into it; write them elsewhere"
    where = path if path.is_dir() else up
    try:  # (a folder made and removed: whether we may write there, read-only file systems and /proc included)
        tempfile.TemporaryDirectory(dir=where, prefix=".tracker-replay-").cleanup()
    except OSError as exc:
        return f"{flag} {path}: cannot write in {where} ({exc.strerror or exc})"
    return None


def print_first(lines: list[str], most: int, rest: str) -> None:
    """Print the first ``most`` of ``lines`` (each indented), then how many were left out and ``rest``."""
    for line in lines[:most]:
        print("  " + line)
    if len(lines) > most:
        print(f"  ... and {len(lines) - most} more{rest}")


def run(args: argparse.Namespace) -> int:
    """Replay, check or report as the flags say; 0 when every solution keeps every rule, 1 on
    violations or failed instances, 2 on bad flags or input; SIGTERM and SIGHUP stop it as Ctrl-C
    does (its server, workers and the orders it left open on a server stopped too: see tracker.cli)."""
    if not (args.interval > 0 and args.interval <= 60):
        print(f"tracker replay: --interval must be more than 0 and at most 60 minutes, not {args.interval:g}",
              file=sys.stderr)
        return 2
    if args.jobs < 1:
        print(f"tracker replay: --jobs must be at least 1, not {args.jobs}", file=sys.stderr)
        return 2
    if args.time_scale is not None and not (math.isfinite(args.time_scale) and 0 < args.time_scale <= MAX_TIME_SCALE):
        print(f"tracker replay: --time-scale must be a number above 0 and at most {MAX_TIME_SCALE:g} (what a server "
              f"takes), not {args.time_scale:g}", file=sys.stderr)
        return 2
    if args.port is not None and not 1 <= args.port <= 65535:
        print(f"tracker replay: --port must be a TCP port, 1 to 65535, not {args.port}", file=sys.stderr)
        return 2
    # Modes that exclude each other: one refused in a line, never quietly dropped.
    clash = next((f"{a} and {b}" for a, b, both in (
        ("--all", "--live", args.all and args.live), ("--all", "--check", args.all and args.check),
        ("--check", "--live", args.check and args.live), ("--check", "--out", args.check and args.out),
        ("--server", "--port", args.server and args.port is not None),
        ("--all ROOT", "an INSTANCE folder", args.all and args.instance)) if both), None)
    if clash:
        print(f"tracker replay: {clash} do not go together", file=sys.stderr)
        return 2
    if args.solution and not args.check:
        print(f"tracker replay: a second folder ({args.solution}) is a SOLUTION to check: add --check, or give one "
              "INSTANCE", file=sys.stderr)
        return 2
    if args.report and not args.all:
        print("tracker replay: --report works only with --all ROOT (one instance's figures are the summary line)",
              file=sys.stderr)
        return 2
    for flag, value in (("--server", args.server), ("--secret", args.secret), ("--time-scale", args.time_scale),
                        ("--port", args.port)):
        if value is not None and not args.live and not (flag == "--time-scale" and args.print_server_env):
            print(f"tracker replay: {flag} works only with --live", file=sys.stderr)
            return 2
    try:
        if args.print_server_env:
            return _print_server_env(args)
        if args.all:
            return _run_all(args)
        if not args.instance:
            print("tracker replay: give an INSTANCE folder or --all ROOT", file=sys.stderr)
            return 2
        problem = _many_instances(args.instance)
        if problem:
            print(f"tracker replay: {problem}", file=sys.stderr)
            return 2
        if args.check:
            return _check(args)
        out = args.out = args.out or f"{OUT_LIVE if args.live else OUT_ONE}/{Path(args.instance).name}"
        problem = _folder_problem("--out", Path(out))
        if problem:
            print(f"tracker replay: {problem}", file=sys.stderr)
            return 2
        if args.live:
            with signals_held():  # (an interrupt while its modules load: see tracker.interrupts)
                from tracker.commands.replay_live import run_live

            return run_live(args)
        done = replay_one(args.instance, out, args.interval)
        _warn(done.notes)
        print_metrics(done.name, done.metrics.as_dict())
        violations = done.violations
        print(f"solution written to {out}; checker: {'OK' if not violations else f'{len(violations)} violations'}")
        print_first(violations, 20, f": tracker replay --check {args.instance} {out}")
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


def _worker_signals() -> None:
    """A worker of ``--all`` ignores Ctrl-C (the parent's to handle) and dies of SIGTERM (how the parent
    stops it), not taking it as Ctrl-C as the parent, whose handler it was forked with, does."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for sig in STOPPING_SIGNALS:
        signal.signal(sig, signal.SIG_DFL)


def _many_instances(instance: str) -> str | None:
    """Why ``instance`` is a folder of instances rather than one, or None."""
    held = _instances_in(Path(instance))
    if held and not (Path(instance) / "orders.txt").is_file():
        return (f"{instance} is a folder of {len(held)} instances, not one instance: replay them all with "
                f"--all {instance}, or give one of them, e.g. {held[0]}")
    return None


def _print_server_env(args: argparse.Namespace) -> int:
    """``--print-server-env``: the environment of a server that plays INSTANCE as ``--live`` would."""
    from tracker.commands.replay_live import DEFAULT_TIME_SCALE, matching_env
    from tracker.mdrp.instance import load_instance

    used = [flag for flag, on in (("--check", args.check), ("--all", args.all), ("--live", args.live),
                                  ("--out", args.out), ("--report", args.report), ("SOLUTION", args.solution)) if on]
    if used or not args.instance:
        print("tracker replay --print-server-env: give one INSTANCE folder (and --time-scale, --interval if not the "
              f"defaults){', not ' + ', '.join(used) if used else ''}", file=sys.stderr)
        return 2
    problem = _many_instances(args.instance)
    if problem:
        print(f"tracker replay: {problem}", file=sys.stderr)
        return 2
    inst = load_instance(args.instance)
    scale = DEFAULT_TIME_SCALE if args.time_scale is None else args.time_scale
    for name, value in matching_env(inst, scale, args.interval).items():
        print(f"export {name}={shlex.quote(value)}")
    return 0


def _check(args: argparse.Namespace) -> int:
    from tracker.mdrp.checker import check_solution

    if not args.solution:
        print("tracker replay --check: give INSTANCE and SOLUTION folders", file=sys.stderr)
        return 2
    report = check_solution(args.instance, args.solution)
    _warn(report.notes)
    for v in report.violations:
        print(f"rule {v.rule}: {v.message}")
    print_metrics(report.instance, report.metrics.as_dict())  # type: ignore[union-attr]
    print("OK: every rule holds" if report.ok else f"FAILED: {len(report.violations)} violations")
    return 0 if report.ok else 1


def _instances_in(root: Path) -> list[Path]:
    """The instance folders directly under ``root`` (none if it is not a folder)."""
    try:
        return sorted(p for p in root.iterdir() if (p / "orders.txt").is_file())
    except OSError:
        return []


def _run_all(args: argparse.Namespace) -> int:
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
    for flag, path in [("--out", out_root), *[("--out", out_root / f.name) for f in folders],
                       *([("--report", Path(args.report))] if args.report else [])]:
        problem = _folder_problem(flag, path)
        if problem:
            print(f"tracker replay: {problem}", file=sys.stderr)
            return 2
    done = _replay_all(folders, out_root, args)
    results = [(d.name, d.metrics) for d in done if d.error is None]
    failures = [(d.name, d.violations) for d in done if d.error is None and d.violations]
    errors = [d for d in done if d.error is not None]
    for d in done:
        _warn(d.notes, d.name)
    if results:
        print(summary_table(results))
        if args.report:
            print(f"report written to {write_report(results, args.report)}")
    for name, violations in failures:
        print(f"{name}: {len(violations)} violations, e.g. {violations[0]}")
    for d in errors:
        print(f"{d.name}: error: {d.error}")
    kept = " (the solutions this repository keeps: `git diff --stat solutions` shows what changed)" if not args.out else ""
    failed = f"{len(errors)} of {len(folders)} instances failed to replay (no solution, no figures)" if errors else ""
    if not results:
        print(f"no solution written: {failed}")
    else:
        print(f"solutions written to {out_root}/NAME{kept}; checker: {len(results) - len(failures)} of {len(folders)} "
              f"solutions keep every rule{'; ' + failed if failed else ''}")
    return 0 if not failures and not errors else 1


def _replay_all(folders: list[Path], out_root: Path, args: argparse.Namespace) -> list[Replayed]:
    """Replay every folder in worker processes; a failure is reported per instance."""
    from tqdm import tqdm

    done = []
    # Ctrl-C is the parent's to handle (workers ignore it): it stops the run where it is, rather
    # than the run going on to the end.
    pool = ProcessPoolExecutor(max_workers=max(1, args.jobs), initializer=_worker_signals)
    try:
        futures = [pool.submit(replay_guarded, str(f), str(out_root / f.name), args.interval) for f in folders]
        # (tqdm outside the zip: inside, the zip stopped at the folders' end before the bar counted the last)
        for f, fut in tqdm(list(zip(folders, futures)), desc="replaying", unit="instance"):
            while not wait([fut], timeout=0.2).done:  # (a wait that Ctrl-C interrupts)
                pass
            try:
                done.append(fut.result())
            except Exception as err:  # noqa: BLE001 - e.g. a worker that died (BrokenProcessPool)
                done.append(Replayed(f.name, error=f"{type(err).__name__}: {err}"))
    except KeyboardInterrupt:
        # The days being played, and those already handed to a worker, are stopped too: on a busy
        # machine they would take a minute (no public way to stop a worker before Python 3.14;
        # taken before shutdown, which forgets them).
        for worker in list((getattr(pool, "_processes", None) or {}).values()):
            worker.terminate()
        pool.shutdown(wait=False, cancel_futures=True)
        print(f"\ntracker replay: interrupted after {len(done)} of {len(folders)} instances; the solutions of "
              f"those are written, no figures", file=sys.stderr)
        raise
    pool.shutdown()
    return done
