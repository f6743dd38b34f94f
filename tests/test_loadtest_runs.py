"""loadtests/run.py and sweep.py against real servers: a run that measured nothing or was refused
says so and fails, runs against one deployment do not meet, a sweep says when it found no knee."""
from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tracker.launcher import ServerProcess

ROOT = Path(__file__).resolve().parents[1]
SECRET = "loadtest-secret-0123456789abcdef0123456789ab"
SMALL = ["--riders", "4", "--customers", "2", "--merchants", "2", "--time", "6s", "--quiet"]


@pytest.fixture(scope="module")
def server():  # type: ignore[no-untyped-def]
    """One server (embedded Redis) for several runs, as a deployment a load test is pointed at."""
    srv = ServerProcess(secret=SECRET, env={"TRACKER_DISPATCH_INTERVAL_S": "2", "TRACKER_LOG_LEVEL": "warning"}).start()
    yield srv
    srv.cleanup()


def run_py(args: list[str], secret: str | None) -> subprocess.CompletedProcess[str]:
    """``loadtests/run.py ARGS`` with ``TRACKER_SECRET`` set to ``secret`` (unset for ``None``)."""
    env = {k: v for k, v in os.environ.items() if k != "TRACKER_SECRET"}
    if secret is not None:
        env["TRACKER_SECRET"] = secret
    return subprocess.run([sys.executable, str(ROOT / "loadtests" / "run.py"), *args],
                          capture_output=True, text=True, timeout=240, cwd=ROOT, env=env)


def rows(path: Path) -> dict[str, dict[str, str]]:
    """locust's stats CSV by ``"Type Name"``."""
    with path.open() as f:
        return {f"{r['Type']} {r['Name']}": r for r in csv.DictReader(f)}


def test_a_run_whose_sockets_are_all_refused_fails_and_says_why(server: ServerProcess, tmp_path: Path) -> None:
    done = run_py(["--server", server.base_url, "--csv", str(tmp_path), *SMALL], "not-the-servers-secret-0123456789abcdef")
    assert done.returncode == 1, done.stdout + done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert "FAILED" in next(line for line in lines if line.startswith("result"))
    refused = [line for line in lines if line.startswith("FAILED: every socket was closed by the server")]
    assert refused and "1008 unauthorized" in refused[0], done.stdout
    assert any(line.startswith("FAILED: nothing measured") for line in lines), done.stdout
    assert next(line for line in lines if line.startswith("fix_to_visibility_p99_ms")).endswith("not measured")
    # the operator's refused orders, named once with their method (not "POST POST /v1/orders")
    assert any(" x POST /v1/orders: " in line and "401" in line for line in lines), done.stdout
    assert "POST POST" not in done.stdout and "GET GET" not in done.stdout, done.stdout
    closed = rows(tmp_path / "run_stats.csv")["WS closed:1008 unauthorized"]
    assert int(closed["Failure Count"]) == int(closed["Request Count"]) > 0


def test_server_without_a_secret_is_refused_before_the_run() -> None:
    done = run_py(["--server", "http://127.0.0.1:9", *SMALL], None)
    assert done.returncode == 2 and "TRACKER_SECRET" in done.stderr, done.stderr


def test_a_run_against_a_server_takes_its_secret_from_the_environment(server: ServerProcess, tmp_path: Path) -> None:
    done = run_py(["--server", server.base_url, "--csv", str(tmp_path), *SMALL], SECRET)
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert next(line for line in lines if line.startswith("result")).split() == ["result", "ok"], done.stdout
    assert float(next(line for line in lines if line.startswith("fix_to_visibility_p99_ms")).split()[1]) > 0


def test_a_second_run_against_one_server_meets_nothing_of_the_first(server: ServerProcess, tmp_path: Path) -> None:
    for n in (1, 2):
        done = run_py(["--server", server.base_url, "--secret", SECRET, "--csv", str(tmp_path / str(n)), *SMALL], None)
        assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    second = rows(tmp_path / "2" / "run_stats.csv")
    failures = {k: r["Failure Count"] for k, r in second.items() if k != " Aggregated" and int(r["Failure Count"])}
    assert not failures, failures  # (the first run's orders confirmed again: invalid_transition)
    feed = {k: float(r["Max Response Time"]) for k, r in second.items() if k.startswith("WS feed:")}
    assert feed.get("WS feed:placed") is not None, sorted(second)
    assert max(feed.values()) < 3000, feed  # the first run's orders, 10 s older, are history, not latency


def test_a_sweep_where_no_step_breaks_says_it_found_no_knee(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "loadtests" / "sweep.py"), "--start", "3", "--step", "3", "--max", "3",
         "--seconds", "10", "--idle", "0", "--processes", "2", "--limit-ms", "5000", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=240, cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    assert "verdict=holds" in done.stdout, done.stdout
    assert "no knee found up to 3 riders, every step held" in done.stdout, done.stdout
    assert "knee: 3 riders" not in done.stdout
