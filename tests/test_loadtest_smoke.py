"""A short locust run against a real server, so the load-test scenarios never rot."""
from __future__ import annotations

import csv
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_locust_scenarios_run_without_errors(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "loadtests" / "run.py"), "--riders", "5", "--customers", "2", "--merchants", "2",
         "--time", "12s", "--csv", str(tmp_path), "--quiet"],
        capture_output=True, text=True, timeout=180, cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    with (tmp_path / "run_stats.csv").open() as f:
        rows = {f"{r['Type']} {r['Name']}": r for r in csv.DictReader(f)}
    failures = {name: r["Failure Count"] for name, r in rows.items() if name != " Aggregated" and int(r["Failure Count"])}
    assert not failures, failures
    assert not [name for name in rows if name.split()[:2] in (["POST", "POST"], ["GET", "GET"])], sorted(rows)
    for name in ("WS connect", "WS location", "WS fix_to_visibility", "POST /v1/orders", "WS feed:placed",
                 "WS confirm", "WS offer", "WS accept", "WS assigned", "WS progress", "WS event:assigned"):
        assert name in rows and int(rows[name]["Request Count"]) > 0, (name, sorted(rows))
    lines = done.stdout.splitlines()
    assert next(line for line in lines if line.startswith("errors")).split() == ["errors", "0"], done.stdout
    assert next(line for line in lines if line.startswith("result")).split() == ["result", "ok"], done.stdout
    assert int(next(line for line in lines if line.startswith("orders_placed")).split()[1]) > 0, done.stdout
    assert next(line for line in lines if line.startswith("orders_ended")), done.stdout


@pytest.mark.parametrize("script", ["run.py", "sweep.py"])
def test_a_load_test_without_locust_says_how_to_get_it_before_starting_anything(script: str) -> None:
    hide_locust = ("import runpy, sys; sys.modules['locust'] = None; "  # as if locust were not installed
                   f"sys.argv = ['{script}', '--port', '9']; runpy.run_path('loadtests/{script}', run_name='__main__')")
    done = subprocess.run([sys.executable, "-c", hide_locust], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode != 0 and not done.stdout, done.stdout + done.stderr  # no table of zeros, no idle memory
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert "locust is not installed" in done.stderr and "pip install -e '.[bench]'" in done.stderr, done.stderr


def test_bench_kernel_without_the_bench_extras_says_how_to_get_them() -> None:
    hide_lap = ("import runpy, sys; sys.modules['lap'] = None; sys.argv = ['bench_kernel.py']; "
                "runpy.run_path('loadtests/bench_kernel.py', run_name='__main__')")  # as if lap were not installed
    done = subprocess.run([sys.executable, "-c", hide_lap], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode != 0 and not done.stdout, done.stdout + done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert "lap" in done.stderr and "pip install -e '.[bench]'" in done.stderr, done.stderr


def test_a_load_test_on_a_port_another_server_holds_refuses_instead_of_loading_that_server() -> None:
    """Its own server could not start there; the other one's /readyz must not pass for it."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        done = subprocess.run([sys.executable, str(ROOT / "loadtests" / "run.py"), "--port", str(port), "--time", "5s"],
                              capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"could not start a server: port {port} is in use by another process" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and "result" not in done.stdout
