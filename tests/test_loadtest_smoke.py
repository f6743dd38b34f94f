"""A short locust run against a real server, so the load-test scenarios never rot."""
from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_locust_scenarios_run_without_errors(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "loadtests" / "run.py"), "--riders", "5", "--customers", "2", "--merchants", "2",
         "--time", "12s", "--csv", str(tmp_path), "--quiet"],
        capture_output=True, text=True, timeout=180, cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    with (tmp_path / "run_stats.csv").open() as f:
        rows = {f"{r['Type']} {r['Name']}": r for r in csv.DictReader(f)}
    failures = {name: r["Failure Count"] for name, r in rows.items() if name != " Aggregated" and int(r["Failure Count"])}
    assert not failures, failures
    for name in ("WS connect", "WS location", "WS fix_to_visibility", "POST POST /v1/orders", "WS feed:placed",
                 "WS confirm", "WS offer", "WS accept", "WS assigned", "WS progress", "WS event:assigned"):
        assert name in rows and int(rows[name]["Request Count"]) > 0, (name, sorted(rows))
    assert "fixes_per_s" in done.stdout and "errors                    0" in done.stdout
