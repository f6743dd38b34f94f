"""Every benchmark script in loadtests/ run as a user runs it, at its tiniest settings, so a
change to the code it drives (a new required argument, a renamed function) cannot break one
unnoticed until the next time someone measures."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_replay import SMALL, instances_root

ROOT = Path(__file__).resolve().parents[1]

# script -> its tiniest run (a few seconds each); the MDRP scripts take an instance
TINY = {
    "bench_ops_snapshot.py": ["--riders", "10", "--repeat", "2", "--late", "2"],
    "bench_order_steps.py": ["--orders", "2"],
    "bench_fix_write.py": ["--riders", "2", "--batches", "2"],
    "bench_fanout.py": ["--subscribers", "2", "--events", "2"],
    "bench_locations.py": ["--riders", "2", "--rate", "2", "--seconds", "2", "--generators", "1"],
    "eta_error.py": ["INSTANCE", "--jobs", "1"],
}
# scripts run elsewhere, or too costly to run here
ELSEWHERE = {
    "bench_kernel.py": "fixed sizes up to 2000x2000 and a 1000x3000 round on the pure-Python twin: minutes",
    "r2p_breakdown.py": "tests/test_replay.py runs it on one instance and checks its figures",
    "run.py": "tests/test_loadtest_smoke.py and tests/test_loadtest_runs.py",
    "sweep.py": "tests/test_loadtest_runs.py",
}


def test_every_benchmark_script_is_run_here_or_elsewhere() -> None:
    """A new script in loadtests/ with a command line joins TINY (or says in ELSEWHERE why not)."""
    scripts = {p.name for p in (ROOT / "loadtests").glob("*.py") if 'if __name__ == "__main__"' in p.read_text()}
    library = {"checkout.py", "cleanup.py"}  # (their __main__ only says they are not commands)
    assert scripts - library == set(TINY) | set(ELSEWHERE), sorted(scripts)


@pytest.mark.parametrize("script", sorted(TINY))
def test_a_benchmark_runs_at_its_tiniest_settings(script: str) -> None:
    args = [str(instances_root() / SMALL) if a == "INSTANCE" else a for a in TINY[script]]
    done = subprocess.run([sys.executable, str(ROOT / "loadtests" / script), *args],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert done.stdout.strip() and "Traceback" not in done.stderr, done.stdout + done.stderr[-3000:]


@pytest.mark.parametrize("script", ["bench_order_steps.py", "bench_fix_write.py", "bench_ops_snapshot.py"])
def test_a_code_folder_that_is_no_checkout_is_refused_instead_of_measuring_this_one(script: str, tmp_path: Path) -> None:
    """The installed tracker would fill in, and its figures be printed under that folder's name."""
    done = subprocess.run([sys.executable, str(ROOT / "loadtests" / script), "--code", str(tmp_path / "nonexistent")],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 2 and not done.stdout, done.stdout + done.stderr
    assert "is not a tracker checkout (no tracker/__init__.py in it)" in done.stderr.splitlines()[-1], done.stderr


def checkout_copy(root: Path, kernel: bool) -> Path:
    """A checkout of this code in ``root``: its tracker package, and its dispatch kernel's sources,
    with the compiled kernel beside them (built in place) or without (not built)."""
    skip = shutil.ignore_patterns("__pycache__", "*.so", "*.c")
    shutil.copytree(ROOT / "tracker", root / "tracker", ignore=skip)
    shutil.copytree(ROOT / "dispatch_ext", root / "dispatch_ext", ignore=skip)
    if kernel:
        for built in (ROOT / "dispatch_ext").glob("_kernel*.so"):
            shutil.copy(built, root / "dispatch_ext")
    return root


@pytest.mark.parametrize("script", ["bench_order_steps.py", "bench_ops_snapshot.py"])
def test_a_code_checkout_whose_kernel_is_not_built_in_it_is_refused(script: str, tmp_path: Path) -> None:
    """Before: the installed tree's kernel (an editable install's finder fills it in) was measured
    under that checkout's name, or a KeyError traceback."""
    code = checkout_copy(tmp_path / "other", kernel=False)
    done = subprocess.run([sys.executable, str(ROOT / "loadtests" / script), "--code", str(code)],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 1 and not done.stdout, done.stdout + done.stderr[-2000:]
    assert done.stderr.count("\n") == 1 and f"--code {code}: its compiled kernel (dispatch_ext._kernel) " in done.stderr
    assert f"(cd {code} && python setup.py build_ext --inplace)" in done.stderr, done.stderr


@pytest.mark.parametrize("script", ["bench_order_steps.py", "bench_ops_snapshot.py"])
def test_a_benchmark_whose_server_does_not_start_says_so_in_one_line(script: str, tmp_path: Path) -> None:
    """Before: a RuntimeError traceback with the server's log."""
    code = checkout_copy(tmp_path / "broken", kernel=True)
    (code / "tracker" / "__main__.py").write_text("raise SystemExit('this server cannot start')\n")
    done = subprocess.run([sys.executable, str(ROOT / "loadtests" / script), "--code", str(code)],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 1 and not done.stdout, done.stdout + done.stderr[-2000:]
    assert done.stderr == f"{script}: could not start a server: tracker serve exited with 1: this server cannot start\n", \
        done.stderr[-2000:]


def test_fanout_posts_more_events_than_a_kitchen_may_delay_one_order_and_all_arrive() -> None:
    """Before: the 11th delay of its one order was refused (too_many_delays), unread, and the run
    reported the deliveries it missed with exit status 0."""
    done = subprocess.run([sys.executable, str(ROOT / "loadtests" / "bench_fanout.py"), "--subscribers", "2",
                           "--events", "12"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    assert done.stdout.startswith("2 subscribers x 12 events (2 orders, at most 10 delays each) = 24 deliveries, "
                                  "0 missed\n"), done.stdout


def test_fanout_reads_a_refused_event_and_fails() -> None:
    """Its events as if the server's cap were higher than it is: the refusals are named, and the exit is 1."""
    run = ("import runpy, sys; sys.argv = ['bench_fanout.py', '--subscribers', '2', '--events', '12']; "
           "sys.path.insert(0, '.'); import loadtests.bench_fanout as bench; bench.MAX_DELAYS = 12; bench.main()")
    done = subprocess.run([sys.executable, "-c", run], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 1, done.stdout + done.stderr[-2000:]
    assert "= 20 deliveries, 0 missed" in done.stdout and "refused: fan-0: too_many_delays: " in done.stdout, done.stdout
    assert done.stderr == "bench_fanout.py: 2 event(s) refused, 0 deliveries missed\n", done.stderr
