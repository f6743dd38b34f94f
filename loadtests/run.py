"""Run the locust scenarios headless against a server and print a capacity summary.

    python loadtests/run.py --riders 200 --customers 20 --merchants 5 --time 30s
    python loadtests/run.py --server http://host:8000 --secret S ...   # an existing server

Starts ``tracker serve`` (embedded Redis) unless ``--server`` is given, runs locust
(``--processes`` workers to use the cores), loopback only and bounded in time, collects
the CSV and prints: connections held, fixes/s accepted, fan-out and fix-to-visibility
p50/p99, errors, and the server's CPU and memory per connection.
"""
from __future__ import annotations

import argparse
import csv
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil

from tracker.launcher import ServerProcess

HERE = Path(__file__).resolve().parent


def read_stats(prefix: Path) -> dict[str, dict[str, str]]:
    """The rows of locust's ``PREFIX_stats.csv`` by ``"Type Name"`` (empty when there is no file)."""
    path = Path(f"{prefix}_stats.csv")
    if not path.exists():
        return {}
    with path.open() as f:
        return {f"{row['Type']} {row['Name']}": row for row in csv.DictReader(f)}


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
    return the run's summary."""
    secret = args.secret or secrets.token_urlsafe(32)
    server = None
    if args.server:
        host = args.server
    else:
        env = {"TRACKER_DISPATCH_INTERVAL_S": "2", "TRACKER_LOG_LEVEL": "warning"}
        server = ServerProcess(secret=secret, env=env).start()
        host = server.base_url
    sampler = None
    if server is not None and server.proc is not None:
        sampler = Sampler(server.proc.pid, server.base_url)
        idle_rss = psutil.Process(server.proc.pid).memory_info().rss
        sampler.start()
    users = args.riders + args.customers + args.merchants + args.operators + 1
    out = Path(args.csv or tempfile.mkdtemp(prefix="tracker-locust-")) / "run"
    cmd = [
        sys.executable, "-m", "locust", "-f", str(HERE / "locustfile.py"), "--headless", "--host", host,
        "-u", str(users), "-r", str(args.spawn_rate), "-t", args.time, "--csv", str(out), "--only-summary",
        "--stop-timeout", "5", "--exit-code-on-error", "0",
        "RiderUser", "CustomerUser", "MerchantUser", "OperatorUser", "ProbeUser",
    ]
    if args.processes > 1:
        cmd[3:3] = ["--processes", str(args.processes)]
    env = {**os.environ, "TRACKER_SECRET": secret, "LOADTEST_MERCHANTS": str(max(1, args.merchants))}
    env["PYTHONPATH"] = str(HERE.parent) + os.pathsep + env.get("PYTHONPATH", "")
    env.update({"LOADTEST_RIDERS": str(args.riders), "LOADTEST_CUSTOMERS": str(args.customers),
                "LOADTEST_MERCHANT_USERS": str(args.merchants), "LOADTEST_OPERATORS": str(args.operators),
                # the probe files its samples taken while users are still being spawned apart
                "LOADTEST_RAMP_S": str(users / args.spawn_rate + 2.0)})
    started = time.time()
    try:
        subprocess.run(cmd, env=env, check=False, timeout=_seconds(args.time) + 120,
                       stdout=subprocess.DEVNULL if args.quiet else None,
                       stderr=subprocess.DEVNULL if args.quiet else None)
    finally:  # (a locust that overran its time, or Ctrl-C, still stops the server)
        if sampler is not None:
            sampler.stop.set()
        if server is not None:
            server.cleanup()
    elapsed = time.time() - started
    stats = read_stats(out)
    summary = _summarise(stats, elapsed, sampler, idle_rss if sampler else None, users)
    summary["csv"] = str(out) + "_stats.csv"
    return summary


def _seconds(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600}
    return float(text[:-1]) * units[text[-1]] if text[-1] in units else float(text)


def _summarise(stats: dict[str, dict[str, str]], elapsed: float, sampler: Sampler | None, idle_rss: int | None,
               users: int) -> dict[str, object]:
    def row(name: str) -> dict[str, str]:
        return stats.get(name, {})

    def num(r: dict[str, str], key: str) -> float:
        try:
            return float(r.get(key) or 0)
        except ValueError:
            return 0.0

    loc = row("WS location")
    events = [r for k, r in stats.items() if k.startswith("WS event:")]
    errors = sum(int(num(r, "Failure Count")) for r in stats.values() if r.get("Name") != "Aggregated")  # not twice
    summary: dict[str, object] = {
        "users": users,
        "fixes_sent": int(num(loc, "Request Count")),
        "fixes_per_s": round(num(loc, "Requests/s"), 1),
        "fix_to_visibility_p50_ms": num(row("WS fix_to_visibility"), "50%"),
        "fix_to_visibility_p99_ms": num(row("WS fix_to_visibility"), "99%"),
        # order events: the step's server ts to the customer's socket (the slowest kind)
        "fanout_p50_ms": max((num(r, "50%") for r in events), default=0.0),
        "fanout_p99_ms": max((num(r, "99%") for r in events), default=0.0),
        # rider positions on the customer's socket, from the fix's own ts: each rider's are sent
        # at most once a second (the newest one), so up to a second of this is by design
        "position_p50_ms": num(row("WS rider_location"), "50%"),
        "position_p99_ms": num(row("WS rider_location"), "99%"),
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


def parser() -> argparse.ArgumentParser:
    """The command line of ``run.py`` (``sweep.py`` builds its steps' arguments with it too)."""
    p = argparse.ArgumentParser(description="Run tracker's locust scenarios headless and summarise.")
    p.add_argument("--server", help="target an existing server (default: start one with an embedded Redis)")
    p.add_argument("--secret", help="the server's TRACKER_SECRET (with --server)")
    p.add_argument("--riders", type=int, default=100)
    p.add_argument("--customers", type=int, default=10)
    p.add_argument("--merchants", type=int, default=5)
    p.add_argument("--operators", type=int, default=1)
    p.add_argument("--time", default="30s", help="run time, e.g. 30s, 5m")
    p.add_argument("--spawn-rate", type=float, default=100)
    p.add_argument("--processes", type=int, default=1, help="locust worker processes")
    p.add_argument("--csv", help="folder for locust's CSV files")
    p.add_argument("--quiet", action="store_true")
    return p


def main() -> None:
    """Run with the command-line flags and print the summary, one ``key  value`` line each."""
    summary = run(parser().parse_args())
    width = max(len(k) for k in summary)
    for key, value in summary.items():
        print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()
