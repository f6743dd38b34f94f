"""Capacity sweep: raise the rider count until fix-to-visibility p99 passes 100 ms or errors appear.

Run on demand (not in CI), from the repository root:

    python loadtests/sweep.py --start 500 --step 500 --max 6000 --out docs/benchmarks

Each step starts a fresh server (embedded Redis) and runs the locust scenarios headless
through ``loadtests/run.py`` with N riders streaming a fix a second, plus the probe that times
fix-to-visibility. A step "holds" when every rider stayed connected, fixes/s reached 95 % of
N, the probe's p99 stayed under the limit and no request failed; the knee is the last step
that held ("no knee up to N riders" when none broke). Before the sweep it measures the
server's memory per idle rider connection.

Writes ``capacity.csv`` and ``capacity.png`` into ``--out`` and prints a Markdown table.
The load generator shares the machine with the server, so the knee is a lower bound for a
server process with the cores to itself. An ``--out`` it cannot write, or a server that does not
start, is one line and exit status 1 (the former before anything starts).
"""
from __future__ import annotations

import argparse
import asyncio
import csv
import secrets
import sys
import tempfile
from pathlib import Path
from typing import NoReturn

import psutil
import websockets

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loadtests import run as runner  # noqa: E402
from loadtests.arguments import count, one_line, port, positive_float, positive_int  # noqa: E402
from tracker.interrupts import interrupted_status, stop_signals_as_ctrl_c  # noqa: E402
from tracker.launcher import ServerProcess  # noqa: E402

PROG = "loadtests/sweep.py"
FIELDS = ["riders", "held", "fixes_per_s", "fix_to_visibility_p50_ms", "fix_to_visibility_p99_ms", "errors",
          "server_cpu_pct_mean", "server_rss_mb_max", "verdict"]


async def _hold_idle(url: str, tokens: list[str], settle_s: float, measure) -> float:  # type: ignore[no-untyped-def]
    sockets = []
    try:
        for t in tokens:
            sockets.append(await websockets.connect(f"{url}?token={t}", max_queue=4))
        await asyncio.sleep(settle_s)
        return measure()
    finally:
        await asyncio.gather(*(s.close() for s in sockets), return_exceptions=True)


def idle_memory(connections: int, port: int | None = None) -> dict[str, float]:
    """Server RSS growth per idle rider connection (authenticated, no fixes), in KiB; the server
    on ``port`` (default a free one). A server that does not start ends the sweep with one line."""
    secret = secrets.token_urlsafe(32)
    server = ServerProcess(secret=secret, env={"TRACKER_LOG_LEVEL": "warning"}, port=port, port_flag="--port")
    try:
        server.start()
    except RuntimeError as exc:
        server.cleanup()
        fail(f"could not start a server: {one_line(exc)}")
    try:
        proc = psutil.Process(server.proc.pid)  # type: ignore[union-attr]
        # Warm the server up with a few connections so one-off allocations are not counted.
        tokens = [server.token("rider", f"idle-{i}", 3600) for i in range(connections)]
        asyncio.run(_hold_idle(server.ws_url + "/v1/ws/rider", tokens[:50], 1.0, lambda: 0.0))
        before = proc.memory_info().rss
        after = asyncio.run(_hold_idle(server.ws_url + "/v1/ws/rider", tokens, 3.0, lambda: proc.memory_info().rss))
        return {"connections": connections, "rss_before_mb": round(before / 2**20, 1),
                "rss_after_mb": round(after / 2**20, 1), "kib_per_connection": round((after - before) / 1024 / connections, 1)}
    finally:
        server.cleanup()


def step(riders: int, seconds: float, processes: int, spawn_rate: float, limit_ms: float,
         ports: list[str] | None = None) -> dict[str, object]:
    """One sweep step: a fresh server, ``riders`` riders for the spawn time plus ``seconds``
    (``ports``: run.py's ``--port``/``--master-port`` flags, if any)."""
    ramp = riders / spawn_rate
    with tempfile.TemporaryDirectory(prefix="tracker-sweep-") as csv_dir:  # (what the sweep keeps is the step's row)
        args = runner.parser().parse_args([
            "--riders", str(riders), "--customers", "0", "--merchants", "1", "--operators", "0",
            "--time", f"{int(ramp + seconds)}s", "--spawn-rate", str(spawn_rate), "--processes", str(processes),
            "--quiet", "--csv", csv_dir, *(ports or []),
        ])
        try:
            summary = runner.run(args)
        except runner.CannotRun as exc:  # (its server did not start: one line, the sweep's)
            fail(str(exc))
    if summary["interrupted"]:  # (run.py stopped locust and ended the step's orders: stop the sweep too)
        raise KeyboardInterrupt
    row = {k: summary.get(k) for k in FIELDS if k in summary}
    row["riders"] = riders
    held = summary.get("connections_held_max")
    row["held"] = held
    for line in summary["problems"]:  # type: ignore[attr-defined]
        print(f"  {riders} riders: {line}", flush=True)
    ok = (
        not summary["problems"]
        and summary["fix_to_visibility_p99_ms"] is not None
        and float(summary["fix_to_visibility_p99_ms"]) <= limit_ms  # type: ignore[arg-type]
        # (the count, not the rate printed to one decimal: 2.849/s would read as 2.8)
        and int(summary["fixes_sent"]) >= 0.95 * riders * seconds  # type: ignore[call-overload]
        and (held is None or float(held) >= riders)  # type: ignore[arg-type]
    )
    row["verdict"] = "holds" if ok else "breaks"
    return row


def fail(why: str) -> NoReturn:
    """End the sweep with one line saying ``why``, exit status 1."""
    sys.exit(f"{PROG}: {why}")


def writable(out: Path) -> None:
    """Make the folder ``out`` and check a file can be written there; one line and exit status 1 when not."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as exc:
        fail(f"--out {out}: cannot write there ({exc.strerror or exc})")


def _ms(value: object) -> float:
    """A figure for the plot: NaN (no point) for one that was not measured."""
    return float("nan") if value is None else float(value)  # type: ignore[arg-type]


def knee(rows: list[dict[str, object]], start: int) -> str:
    """The line saying where the knee is: the last step that held before the first that broke
    (steps after it, run with --keep-going, may hold again by chance), or that none broke."""
    first_break = next((i for i, r in enumerate(rows) if r["verdict"] != "holds"), None)
    if first_break is None:
        return f"no knee found up to {rows[-1]['riders']} riders, every step held"
    if first_break == 0:
        return f"knee: below {start} riders, the first step broke"
    return f"knee: {rows[first_break - 1]['riders']} riders held"


def plot(rows: list[dict[str, object]], limit_ms: float, path: Path) -> None:
    """Plot fix-to-visibility p50 and p99 (log scale) and fixes/s against the rider count, and save the
    figure to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = [int(r["riders"]) for r in rows]  # type: ignore[arg-type]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.plot(n, [_ms(r["fix_to_visibility_p99_ms"]) for r in rows], "o-", label="fix-to-visibility p99")
    ax.plot(n, [_ms(r["fix_to_visibility_p50_ms"]) for r in rows], "o--", label="fix-to-visibility p50")
    ax.axhline(limit_ms, color="red", linestyle=":", label=f"{limit_ms:g} ms limit")
    ax.set_xlabel("concurrent riders (1 fix/s each)")
    ax.set_ylabel("milliseconds (log scale)")
    ax.set_yscale("log")  # the knee is a jump of orders of magnitude; below it, tens of ms
    ax2 = ax.twinx()
    ax2.plot(n, [float(r["fixes_per_s"]) for r in rows], "s-", color="grey", alpha=0.6, label="fixes/s (whole run)")  # type: ignore[arg-type]
    ax2.set_ylabel("fixes/s accepted")
    lines = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    labels = ax.get_legend_handles_labels()[1] + ax2.get_legend_handles_labels()[1]
    ax.legend(lines, labels, loc="upper left")
    ax.set_title("One tracker process: rider capacity on a shared 2-core machine")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    """Run the sweep; interrupted (Ctrl-C, SIGTERM, SIGHUP), one line and nothing written."""
    try:
        with stop_signals_as_ctrl_c():
            sweep()
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted, nothing written", file=sys.stderr)
        sys.exit(interrupted_status())


def sweep() -> None:
    """Measure idle memory, then raise the riders step by step until one breaks; write the CSV and the
    plot and print the table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--start", type=positive_int, default=500)
    p.add_argument("--step", type=positive_int, default=500)
    p.add_argument("--max", type=positive_int, default=6000)
    p.add_argument("--seconds", type=positive_float, default=30, help="steady time per step after the ramp (1 or more)")
    p.add_argument("--spawn-rate", type=positive_float, default=200)
    p.add_argument("--processes", type=positive_int, default=2, help="locust worker processes")
    p.add_argument("--limit-ms", type=positive_float, default=100.0)
    p.add_argument("--idle", type=count, default=2000, help="idle connections for the memory figure (0: skip)")
    p.add_argument("--keep-going", action="store_true", help="run every step even after the knee")
    p.add_argument("--out", default="docs/benchmarks")
    p.add_argument("--port", type=port, help="port of the servers it starts (default: a free one)")
    p.add_argument("--master-port", type=port, help="port of the locust master (default: a free one)")
    args = p.parse_args()
    if args.max < args.start:  # (no step at all: nothing to measure, and an empty table over the committed one)
        p.error(f"--max {args.max} is below --start {args.start}")
    if args.seconds < 1:  # (each step's run time is whole seconds: under one, run.py's would be 0)
        p.error(f"--seconds {args.seconds:g} is under 1")
    runner.require_locust()
    ports = [*(["--port", str(args.port)] if args.port else []),
             *(["--master-port", str(args.master_port)] if args.master_port else [])]
    out = Path(args.out)
    writable(out)  # (before anything starts, not after the whole sweep)
    if args.idle:
        mem = idle_memory(args.idle, args.port)
        print(f"idle memory: {mem['connections']} rider connections, server RSS {mem['rss_before_mb']} -> "
              f"{mem['rss_after_mb']} MB, {mem['kib_per_connection']} KiB per connection", flush=True)
    rows: list[dict[str, object]] = []
    for riders in range(args.start, args.max + 1, args.step):
        row = step(riders, args.seconds, args.processes, args.spawn_rate, args.limit_ms, ports)
        rows.append(row)
        print(" ".join(f"{k}={row.get(k)}" for k in FIELDS), flush=True)
        if row["verdict"] == "breaks" and not args.keep_going:
            break
    if not rows:  # (none measured: keep what --out holds)
        return
    with (out / "capacity.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        w.writerows(rows)
    plot(rows, args.limit_ms, out / "capacity.png")
    print(f"\n{knee(rows, args.start)} (a step holds at p99 <= {args.limit_ms:g} ms, no errors)")
    print("\n| riders | held | fixes/s | p50 ms | p99 ms | errors | server CPU % | server RSS MB | verdict |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        print("| " + " | ".join(str(r.get(k, "")) for k in FIELDS) + " |")


if __name__ == "__main__":
    main()
