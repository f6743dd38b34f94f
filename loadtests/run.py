"""Run the locust scenarios headless against a server and print a capacity summary.

    python loadtests/run.py --riders 200 --customers 20 --merchants 5 --time 30s
    TRACKER_SECRET=S python loadtests/run.py --server http://host:8000 ...   # an existing server
    (without TRACKER_SECRET and --secret: the development secret in TRACKER_DATA_DIR, default ./.tracker)

Starts ``tracker serve`` (embedded Redis) unless ``--server`` is given, runs locust
(``--processes`` workers to use the cores), loopback only and bounded in time, collects
the CSV and prints: connections held, fixes/s accepted, fan-out and fix-to-visibility
p50/p99 (``not measured`` when there was no sample), errors, and the server's CPU and memory
per connection. Then ``result  ok``, or ``result  FAILED`` and one ``FAILED: ...`` line per
reason (locust wrote no statistics, every socket closed by the server, nothing measured, failed
requests, exceptions in the users, orders it could not end), and exit status 1. Locust's CSV
files go to ``--csv DIR`` (an earlier run's there removed first); without it to a folder in
/tmp, removed after a run that passed. An https ``--server`` is checked with the system's CAs,
``--ca-file PEM`` or not at all (``--insecure``): ``loadtests/tls.py``.

At the end (also when interrupted: Ctrl-C, SIGTERM or SIGHUP stop locust, its workers too) it
ends the run's unfinished orders on the server (``loadtests/cleanup.py``: cancelled, or failed
once picked up) and prints how many, then stops its own server (in a session of its own: a
terminal's Ctrl-C does not stop it before that); an interrupted run prints its summary with
``result interrupted`` and exits 130 (143 after SIGTERM, 129 after SIGHUP). Locust and every
worker it forks are gone when this process ends, even killed outright (``loadtests/locust_process.py``).
Needs locust (the ``[bench]`` extra): without it, one line and exit status 1, before anything starts.
A run that cannot begin (its folder cannot be written, its server does not start) is one line
and exit status 1.
"""
from __future__ import annotations

import argparse
import csv
import importlib.util
import os
import secrets
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psutil

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run as a script: ``loadtests`` is not an installed package

from loadtests import locust_process, run_files, tls  # noqa: E402
from loadtests.arguments import count, one_line, port, positive_float, positive_int  # noqa: E402
from loadtests.cleanup import REASON, Ending, end_run_orders, placed, read_run_orders  # noqa: E402
from loadtests.timespan import run_seconds  # noqa: E402
from tracker.auth import local_data_dir, local_secret, secret_path  # noqa: E402
from tracker.embedded_redis import free_port  # noqa: E402
from tracker.errors import StartupError  # noqa: E402
from tracker.interrupts import interrupted_status, signals_deferred, stop_signals_as_ctrl_c  # noqa: E402
from tracker.launcher import ServerProcess  # noqa: E402

LOCUST_STOP_S = 15.0  # locust's own --stop-timeout (5 s) and its workers' shutdown, with room to spare
NO_LOCUST = "locust is not installed (the load tests' extra): pip install -e '.[bench]'"


class CannotRun(Exception):
    """A run that could not begin: its folder cannot be written, its server did not start (one line)."""


def require_locust() -> None:
    """Exit with one line saying what to install when locust is missing (call before starting anything)."""
    if importlib.util.find_spec("locust") is None:
        sys.exit(f"{Path(sys.argv[0]).name}: {NO_LOCUST}")


def read_stats(prefix: Path) -> dict[str, dict[str, str]]:
    """The rows of locust's ``PREFIX_stats.csv`` by ``"Type Name"`` (empty when there is no file)."""
    return {f"{row['Type']} {row['Name']}": row for row in read_rows(Path(f"{prefix}_stats.csv"))}


def read_rows(path: Path) -> list[dict[str, str]]:
    """The rows of one of locust's CSV files (none when there is no file)."""
    if not path.exists():
        return []
    with path.open() as f:
        return list(csv.DictReader(f))


class Sampler(threading.Thread):
    """Samples the server process's CPU and memory (not its embedded Redis child's) during the run."""

    def __init__(self, pid: int, base_url: str) -> None:
        super().__init__(daemon=True)
        self.proc = psutil.Process(pid)
        self.base_url = base_url
        self.cpu: list[float] = []
        self.rss: list[int] = []
        self.connections = 0.0  # the most WebSockets the server held at once
        self.stop = threading.Event()

    def run(self) -> None:
        """Sample CPU, RSS and the WebSockets held once a second until ``stop`` is set or the process ends."""
        self.proc.cpu_percent(None)
        while not self.stop.wait(1.0):
            try:
                self.cpu.append(self.proc.cpu_percent(None))
                self.rss.append(self.proc.memory_info().rss)
            except psutil.Error:
                return
            self.connections = max(self.connections, self._held())

    def _held(self) -> float:
        try:
            text = httpx.get(self.base_url + "/metrics", timeout=5).text
        except httpx.HTTPError:
            return 0.0
        return next((float(line.split()[-1]) for line in text.splitlines()
                     if line.startswith("tracker_websocket_connections ")), 0.0)


def run(args: argparse.Namespace) -> dict[str, object]:
    """Run the locust scenarios as ``args`` say, on a server of its own unless ``--server``, and
    return the run's summary (``problems``: why the run failed, empty when it did not).
    CannotRun, before anything started or with what started stopped, when it cannot begin."""
    secret = args.secret or os.environ.get("TRACKER_SECRET") or secrets.token_urlsafe(32)
    try:  # (before anything starts: a folder it cannot write is said now, not after the server started)
        files = run_files.prepare(args.csv)
    except run_files.FolderError as exc:
        raise CannotRun(str(exc)) from None
    server = None
    if args.server:
        host = args.server
    else:
        env = {"TRACKER_DISPATCH_INTERVAL_S": "2", "TRACKER_LOG_LEVEL": "warning"}
        # a session of its own: a terminal's Ctrl-C stops the run, which ends its orders, then the server
        server = ServerProcess(secret=secret, env=env, new_session=True, port=args.port, port_flag="--port")
        try:
            host = server.start().base_url
        except RuntimeError as exc:  # (its port taken, or it did not start: one line, not a traceback)
            server.cleanup()
            files.discard()
            raise CannotRun(f"could not start a server: {one_line(exc)}") from None
        except KeyboardInterrupt:
            server.cleanup()
            files.discard()
            raise
    users = args.riders + args.customers + args.merchants + args.operators + 1
    out, orders = files.prefix, files.orders  # (orders: every order id the users place, from every worker process)
    run_id = secrets.token_hex(3)
    verify = tls.context(args.ca_file, args.insecure)
    sampler: Sampler | None = None
    idle_rss: int | None = None
    locust: subprocess.Popen[bytes] | None = None
    interrupted = False
    started = time.time()
    try:
        try:
            if server is not None and server.proc is not None:
                sampler = Sampler(server.proc.pid, server.base_url)
                idle_rss = psutil.Process(server.proc.pid).memory_info().rss
                sampler.start()
            cmd, env = _locust_command(args, host, secret, files, run_id, users)
            with signals_deferred():  # (assigned before an interrupt meanwhile takes effect: a handle to stop it by)
                locust = locust_process.start(cmd, env, args.quiet)
            locust_process.ended(locust, run_seconds(args.time) + 120)  # (one that overran its time: stopped below)
        except KeyboardInterrupt:  # Ctrl-C, SIGTERM or SIGHUP (main delivers those as Ctrl-C): end the run
            interrupted = True
        elapsed = time.time() - started
    finally:  # (a locust that overran its time, or an interrupt, still ends the orders and stops the server)
        try:
            if locust is not None:  # (SIGTERM: it stops its users and workers and writes its CSV; then any worker left)
                locust_process.stop(locust, LOCUST_STOP_S)
        finally:  # (even a second Ctrl-C while locust stops still ends the orders; one more stops that)
            if sampler is not None:
                sampler.stop.set()
            try:
                ending = end_run_orders(host, secret, orders, run_id, verify=verify)
            finally:
                if server is not None:  # (only now: the orders were ended on it)
                    server.cleanup()
    stats = read_stats(out)
    summary = _summarise(stats, elapsed, sampler, idle_rss, users)
    summary["run_id"] = run_id
    summary["orders_placed"] = placed(ending, read_run_orders(orders, run_id), orders.name)
    summary["orders_ended"] = ended_text(ending)
    failed = problems(stats, read_rows(files.locust_file("_failures.csv")), read_rows(files.locust_file("_exceptions.csv")),
                      args.riders, quiet=args.quiet)
    if ending.unresolved == ending.listed > 0:  # not one answer: the server refused the operator, or was gone
        failed.append(f"could not check this run's orders on the server, first: {sorted(ending.errors)[0]}; "
                      f"up to {ending.listed} of them may still be open (see {orders.name})")
    elif ending.unresolved:
        failed.append(f"{ending.unresolved} of this run's orders could not be checked or ended "
                      f"(see {orders.name}), first: {sorted(ending.errors)[0]}")
    if args.csv:
        summary["csv"] = f"{out}_stats.csv"
    elif failed:  # (its failures and its order ids, named above, to look into)
        summary["csv"] = f"{out}_stats.csv (kept: the run failed)"
    else:  # a folder of its own in /tmp: not left behind by every run
        files.discard()
        summary["csv"] = "not kept (--csv DIR keeps locust's files)"
    summary["problems"] = failed
    summary["interrupted"] = interrupted
    return summary


def _locust_command(args: argparse.Namespace, host: str, secret: str, files: run_files.RunFiles, run_id: str,
                    users: int) -> tuple[list[str], dict[str, str]]:
    """Locust's command line and environment for the run ``args`` describe against ``host``."""
    cmd = [
        sys.executable, "-m", "locust", "-f", str(HERE / "locustfile.py"), "--headless", "--host", host,
        "-u", str(users), "-r", str(args.spawn_rate), "-t", args.time, "--csv", str(files.prefix), "--only-summary",
        "--stop-timeout", "5", "--exit-code-on-error", "0",
        "RiderUser", "CustomerUser", "MerchantUser", "OperatorUser", "ProbeUser",
    ]
    if args.processes > 1:  # the master on a port of its own, loopback only (locust's default is *:5557)
        master = str(args.master_port or free_port())
        cmd[3:3] = ["--processes", str(args.processes), "--master-bind-host", "127.0.0.1",
                    "--master-bind-port", master, "--master-host", "127.0.0.1", "--master-port", master]
    env = {**os.environ, "TRACKER_SECRET": secret, "LOADTEST_MERCHANTS": str(max(1, args.merchants)),
           "LOADTEST_RUN": run_id, "LOADTEST_PROCESSES": str(max(1, args.processes)),
           "LOADTEST_ORDERS": str(files.orders), **tls.env_for(args.ca_file, args.insecure)}
    env["PYTHONPATH"] = str(HERE.parent) + os.pathsep + env.get("PYTHONPATH", "")
    env.update({"LOADTEST_RIDERS": str(args.riders), "LOADTEST_CUSTOMERS": str(args.customers),
                "LOADTEST_MERCHANT_USERS": str(args.merchants), "LOADTEST_OPERATORS": str(args.operators),
                # the probe files its samples taken while users are still being spawned apart
                "LOADTEST_RAMP_S": str(users / args.spawn_rate + 2.0)})
    return cmd, env


def ended_text(ending: Ending) -> str:
    """``N`` orders this run ended at its end, and how: ``3 (2 cancelled, 1 failed: "load test ended")``."""
    how = ", ".join(f"{ending.outcomes[k]} {k}" for k in ("cancelled", "failed") if ending.outcomes[k])
    return f'{ending.ended} ({how}: "{REASON}")' if how else "0"


def _summarise(stats: dict[str, dict[str, str]], elapsed: float, sampler: Sampler | None, idle_rss: int | None,
               users: int) -> dict[str, object]:
    def row(name: str) -> dict[str, str]:
        return stats.get(name, {})

    def num(r: dict[str, str], key: str) -> float:
        try:
            return float(r.get(key) or 0)
        except ValueError:
            return 0.0

    def measured(r: dict[str, str], key: str) -> float | None:
        """A percentile of a row with samples; ``None`` (printed ``not measured``) without."""
        return num(r, key) if num(r, "Request Count") else None

    loc = row("WS location")
    events = [r for k, r in stats.items() if k.startswith("WS event:") and num(r, "Request Count")]
    errors = sum(int(num(r, "Failure Count")) for r in stats.values() if r.get("Name") != "Aggregated")  # not twice
    summary: dict[str, object] = {
        "users": users,
        "fixes_sent": int(num(loc, "Request Count")),
        "fixes_per_s": round(num(loc, "Requests/s"), 1),
        "fix_to_visibility_samples": int(num(row("WS fix_to_visibility"), "Request Count")),
        "fix_to_visibility_p50_ms": measured(row("WS fix_to_visibility"), "50%"),
        "fix_to_visibility_p99_ms": measured(row("WS fix_to_visibility"), "99%"),
        # order events sent live to a subscribed customer socket, from the step's server ts
        # (the slowest kind); what the server replays at subscribe is not counted
        "fanout_samples": int(sum(num(r, "Request Count") for r in events)),
        "fanout_p50_ms": max((num(r, "50%") for r in events), default=None),
        "fanout_p99_ms": max((num(r, "99%") for r in events), default=None),
        # rider positions on the customer's socket, from the fix's own ts: each rider's are sent
        # at most once a second (the newest one), so up to a second of this is by design
        "position_p50_ms": measured(row("WS rider_location"), "50%"),
        "position_p99_ms": measured(row("WS rider_location"), "99%"),
        "errors": errors,
        "elapsed_s": round(elapsed, 1),
    }
    if sampler is not None and sampler.cpu:
        summary["connections_held_max"] = int(sampler.connections)
        summary["server_cpu_pct_mean"] = round(sum(sampler.cpu) / len(sampler.cpu), 1)
        summary["server_rss_mb_max"] = round(max(sampler.rss) / 2**20, 1)
        if idle_rss:
            summary["server_kb_per_user"] = round((max(sampler.rss) - idle_rss) / 1024 / max(1, users), 1)
    return summary


def problems(stats: dict[str, dict[str, str]], failures: list[dict[str, str]], exceptions: list[dict[str, str]],
             riders: int, *, quiet: bool = True) -> list[str]:
    """Why a run failed, one line each (none when it did not): no socket held, every socket closed
    by the server, nothing measured, failed requests, exceptions raised in the users."""
    def count(name: str, key: str = "Request Count") -> int:
        return int(float(stats.get(name, {}).get(key) or 0))

    out: list[str] = []
    by_count = sorted(failures, key=lambda f: -int(f["Occurrences"]))
    closes = [f for f in by_count if f["Name"].startswith("closed:")]
    held = count("WS connect") - count("WS connect", "Failure Count")
    closed = sum(int(f["Occurrences"]) for f in closes)
    if not stats:
        see = "run without --quiet to see" if quiet else "see its output above"
        out.append(f"locust wrote no statistics (did it start? {see})")
    elif held <= 0:
        first = next((f["Error"] for f in by_count if f["Name"] == "connect"), "no attempt")
        out.append(f"no socket connected: {first}")
    elif closed >= held:
        out.append(f"every socket was closed by the server ({closed} of {held}): {_close_reason(closes[0])}")
        by_count.remove(closes[0])  # said above
    if stats and not count("WS fix_to_visibility"):
        out.append("nothing measured: no fix_to_visibility sample (the probe's fix never showed, or it never ran)")
    if stats and riders and not count("WS location"):
        out.append("nothing measured: no rider sent a fix")
    for f in by_count[:5]:
        out.append(f"{f['Occurrences']} x {f['Method']} {f['Name']}: {f['Error']}")
    if exceptions:
        total = sum(int(e["Count"]) for e in exceptions)
        out.append(f"{total} exception(s) in the users, first: {exceptions[0]['Message']} (see the _exceptions.csv)")
    return out


def _close_reason(failure: dict[str, str]) -> str:
    """``1008 unauthorized: ...`` from a ``closed:`` failure's error text (``WsClosed('...')``)."""
    text = failure["Error"]
    return text[text.find("(") + 2:-2] if text.startswith("WsClosed(") else text


def _run_time(text: str) -> str:
    """``--time``: a run time locust takes (``30s``, ``5m``, ``1h30m``, or whole seconds: locust's own
    parser, ``loadtests/timespan.py``), above zero (0 is no limit to locust)."""
    try:
        seconds = run_seconds(text)
    except (ValueError, OverflowError):
        seconds = 0
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a run time above 0 as locust reads one "
                                         "(whole numbers: e.g. 30s, 5m, 1h30m, 90)")
    return text


def _ca_file(text: str) -> str:
    """``--ca-file``: a PEM file of CA certificates (or the server's self-signed one) that loads."""
    try:
        tls.context(text)
    except (OSError, ssl.SSLError) as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a PEM file of certificates ({exc})") from None
    return text


def _url(text: str) -> str:
    """``--server``: an http(s) URL, without its trailing ``/`` (which would make every path ``//v1/...``)."""
    if not text.startswith(("http://", "https://")):
        raise argparse.ArgumentTypeError(f"{text!r} is not an http:// or https:// URL")
    return text.rstrip("/")


def parser() -> argparse.ArgumentParser:
    """The command line of ``run.py`` (``sweep.py`` builds its steps' arguments with it too)."""
    p = argparse.ArgumentParser(description="Run tracker's locust scenarios headless and summarise.")
    p.add_argument("--server", type=_url, help="target an existing server (default: start one with an embedded Redis)")
    p.add_argument("--secret", help="with --server: the server's TRACKER_SECRET (default: $TRACKER_SECRET, else the "
                                    "development secret in TRACKER_DATA_DIR, default ./.tracker, as `tracker token`)")
    p.add_argument("--port", type=port, help="port of the server it starts (default: a free one)")
    p.add_argument("--master-port", type=port, help="port of the locust master with --processes (default: a free one)")
    p.add_argument("--riders", type=count, default=100,
                   help="simulated riders, each on a rider socket: a fix a second, offers accepted (default %(default)s)")
    p.add_argument("--customers", type=count, default=10,
                   help="simulated customers, each placing an order and watching it on a customer socket (default %(default)s)")
    p.add_argument("--merchants", type=count, default=5,
                   help="simulated kitchen tablets, confirming and readying their orders (default %(default)s)")
    p.add_argument("--operators", type=count, default=1,
                   help="simulated ordering platforms, each creating an order every 2 s over HTTP (default %(default)s)")
    p.add_argument("--time", type=_run_time, default="30s",
                   help="run time as locust takes it, e.g. 30s, 5m, 1h30m (default %(default)s)")
    p.add_argument("--spawn-rate", type=positive_float, default=100, help="users started a second (default %(default)s)")
    p.add_argument("--processes", type=positive_int, default=1, help="locust worker processes (default %(default)s)")
    p.add_argument("--csv", help="folder for locust's CSV files (an earlier run's there are removed; default: a "
                                 "temporary folder, removed after a run that passed)")
    checks = p.add_mutually_exclusive_group()
    checks.add_argument("--ca-file", type=_ca_file, help="an https --server's CA (or self-signed) certificate, PEM "
                                                       "(default: the system's CAs)")
    checks.add_argument("--insecure", action="store_true", help="do not check an https --server's certificate (default: checked)")
    p.add_argument("--quiet", action="store_true", help="hide locust's own output (default: shown)")
    return p


def main() -> None:
    """Run with the command-line flags and print the summary, one ``key  value`` line each, then the
    result; exit 1 when the run failed."""
    p = parser()
    args = p.parse_args()
    require_locust()
    if args.server and not args.secret:  # as `tracker token` and `tracker replay --live --server` sign
        try:
            args.secret = local_secret()
        except StartupError as exc:
            p.error(f"--server needs that server's secret: {exc}")
        if not args.secret:
            p.error(f"--server needs that server's secret: --secret S or TRACKER_SECRET=S (both unset), or its "
                    f"development secret, which is not in {secret_path(local_data_dir()).resolve()} (TRACKER_DATA_DIR "
                    "names the server's data folder, default ./.tracker)")
    if (args.ca_file or args.insecure) and not (args.server or "").startswith("https://"):
        p.error(f"{'--ca-file' if args.ca_file else '--insecure'} is for an https:// --server")
    try:
        with stop_signals_as_ctrl_c():  # SIGTERM, SIGHUP: locust stopped and the orders ended, as on Ctrl-C
            summary = run(args)
    except CannotRun as exc:
        sys.exit(f"loadtests/run.py: {exc}")
    except KeyboardInterrupt:  # (before the run began, or again while it ended: no summary to print)
        print("loadtests/run.py: interrupted before the run's summary (its orders may not all be ended)",
              file=sys.stderr)
        sys.exit(interrupted_status())
    failed = summary.pop("problems")
    interrupted = summary.pop("interrupted")
    summary["result"] = "interrupted" if interrupted else "FAILED" if failed else "ok"
    width = max(len(k) for k in summary)
    for key, value in summary.items():
        print(f"{key:<{width}}  {'not measured' if value is None else value}")
    for line in failed:  # type: ignore[union-attr]
        print(f"FAILED: {line}")
    sys.exit(interrupted_status() if interrupted else 1 if failed else 0)


if __name__ == "__main__":
    main()
