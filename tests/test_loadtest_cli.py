"""The command lines of the load-test and benchmark scripts: a value that cannot make sense is a
usage error before anything starts (not a traceback, a hang, or a run that reports 0/s), Ctrl-C
is one line, and the library modules say they are not commands."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[1]

REFUSED = [  # script, arguments, what the usage error says
    ("run.py", ["--spawn-rate", "0"], "argument --spawn-rate: '0' is not a number above 0"),
    ("run.py", ["--spawn-rate", "-5"], "argument --spawn-rate: '-5' is not a number above 0"),
    ("run.py", ["--processes", "0"], "argument --processes: '0' is not a whole number above 0"),
    ("run.py", ["--port", "99999"], "argument --port: '99999' is not a port (1 to 65535)"),
    # what locust refuses (it takes whole numbers only), refused before anything starts
    ("run.py", ["--time", "2.5s"], "argument --time: '2.5s' is not a run time above 0 as locust reads one"),
    ("run.py", ["--time", "0.5m"], "argument --time: '0.5m' is not a run time above 0 as locust reads one"),
    ("run.py", ["--time", "0s"], "argument --time: '0s' is not a run time above 0 as locust reads one"),
    ("run.py", ["--ca-file", "NOWHERE"], "argument --ca-file: 'NOWHERE' is not a PEM file of certificates"),
    ("run.py", ["--insecure"], "--insecure is for an https:// --server"),
    ("sweep.py", ["--master-port", "0"], "argument --master-port: '0' is not a port (1 to 65535)"),
    ("sweep.py", ["--start", "10", "--max", "5"], "--max 5 is below --start 10"),
    ("sweep.py", ["--step", "0"], "argument --step: '0' is not a whole number above 0"),
    ("sweep.py", ["--spawn-rate", "0"], "argument --spawn-rate: '0' is not a number above 0"),
    ("sweep.py", ["--seconds", "0.5"], "--seconds 0.5 is under 1"),
    ("bench_kernel.py", ["--repeat", "0"], "argument --repeat: '0' is not a whole number above 0"),
    ("bench_locations.py", ["--seconds", "0"], "argument --seconds: '0' is not a number above 0"),
    ("bench_locations.py", ["--rate", "-1"], "argument --rate: '-1' is not a number above 0"),
    ("bench_locations.py", ["--riders", "0"], "argument --riders: '0' is not a whole number above 0"),
    ("bench_locations.py", ["--riders", "1", "--generators", "2"], "--generators 2 is more than --riders 1"),
    ("bench_order_steps.py", ["--orders", "0"], "argument --orders: '0' is not a whole number above 0"),
    ("bench_fix_write.py", ["--riders", "0"], "argument --riders: '0' is not a whole number above 0"),
    ("bench_ops_snapshot.py", ["--repeat", "0"], "argument --repeat: '0' is not a whole number above 0"),
    ("bench_fanout.py", ["--subscribers", "0", "--events", "2"], "argument --subscribers: '0' is not a whole number"),
    ("eta_error.py", ["NOWHERE"], "NOWHERE: no MDRP instance there (folders holding orders.txt)"),
    ("eta_error.py", [".", "--jobs", "0"], "argument --jobs: '0' is not a whole number above 0"),
    ("r2p_breakdown.py", ["NOWHERE"], "NOWHERE: no MDRP instance there (folders holding orders.txt)"),
]


@pytest.mark.parametrize("script, args, said", REFUSED, ids=[f"{s} {' '.join(a)}" for s, a, _ in REFUSED])
def test_a_value_that_cannot_make_sense_is_a_usage_error_before_anything_starts(
        script: str, args: list[str], said: str, tmp_path: Path) -> None:
    args = [str(tmp_path / "nowhere") if a == "NOWHERE" else a for a in args]
    said = said.replace("NOWHERE", str(tmp_path / "nowhere"))
    out = ["--out", str(tmp_path / "out")] if script == "sweep.py" else []  # (not over the committed figures)
    done = subprocess.run([sys.executable, str(ROOT / "loadtests" / script), *args, *out],
                          capture_output=True, text=True, timeout=60, cwd=ROOT, env={**os.environ, "TMPDIR": str(tmp_path)})
    assert done.returncode == 2 and not done.stdout, done.stdout + done.stderr[-2000:]
    assert done.stderr.splitlines()[-1].startswith(f"{script}: error: ") and said in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert not list(tmp_path.iterdir()), list(tmp_path.iterdir())  # no locust folder, no capacity table


def test_every_option_of_run_py_says_what_it_does_and_its_default() -> None:
    """Before: --riders, --customers, --merchants, --operators (and --quiet) had no help line, and
    those of --time and --spawn-rate did not give their defaults."""
    done = subprocess.run([sys.executable, str(ROOT / "loadtests" / "run.py"), "--help"], capture_output=True,
                          text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    options = done.stdout.split("options:\n", 1)[1]
    blocks: dict[str, str] = {}  # option -> its help text (argparse's layout: the option two spaces in)
    for line in options.splitlines():
        if line.startswith("  -"):
            flag, _, text = line.strip().partition("  ")
            blocks[flag.split()[0].rstrip(",")] = text.strip()
        else:
            blocks[list(blocks)[-1]] += " " + line.strip()
    blocks.pop("-h")
    assert len(blocks) >= 15, blocks
    for flag, text in blocks.items():
        assert "default" in " ".join(text.split()), (flag, text)
    for flag, default in (("--riders", "100"), ("--customers", "10"), ("--merchants", "5"), ("--operators", "1"),
                          ("--time", "30s"), ("--spawn-rate", "100"), ("--processes", "1")):
        assert f"(default {default})" in blocks[flag], (flag, blocks[flag])


@pytest.mark.parametrize("command", [["loadtests/cleanup.py"], ["loadtests/checkout.py"], ["-m", "clients.deliveries"]])
def test_a_library_module_run_as_a_command_says_it_is_none(command: list[str]) -> None:
    done = subprocess.run([sys.executable, *command, "--help"], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 2 and not done.stdout, done.stdout + done.stderr
    assert done.stderr.count("\n") == 1 and "is a library module of " in done.stderr, done.stderr


def test_ctrl_c_during_a_benchmark_is_one_line_from_all_its_processes(tmp_path: Path) -> None:
    """Ctrl-C reaches the terminal's whole job: the benchmark, its generator processes (and its server)."""
    proc = subprocess.Popen([sys.executable, str(ROOT / "loadtests" / "bench_locations.py"), "--riders", "2",
                             "--rate", "2", "--seconds", "60", "--generators", "2"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while len(psutil.Process(proc.pid).children()) < 3:  # the server and both generators started
            assert time.monotonic() < deadline and proc.poll() is None, "the benchmark did not start"
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, out + err
    assert err == "bench_locations.py: interrupted\n", err


TIMES = ["20", "20s", "3m", "2h", "1h30m", "3h30m10s", "90m", "1h0m", "0", "0s", "2.5s", "0.5m", "1m1h", "1h 30m",
         "-5s", "5S", "s", "", "1d", "1.0", "1e3", " 5s", "5s "]


def test_run_times_are_read_as_locust_reads_them_without_importing_it() -> None:
    """Before: ``2.5s`` and ``0.5m`` passed run.py and locust refused them; ``1h30m`` was refused."""
    check = ("import sys; from loadtests import run, timespan\n"
             "assert 'locust' not in sys.modules and 'gevent' not in sys.modules\n"  # (locust's import monkey-patches)
             "parse = timespan._locusts_parser(); assert parse is not None\n"
             f"for text in {TIMES!r}:\n"
             "    try: theirs = parse(text)\n"
             "    except ValueError: theirs = None\n"
             "    try: ours = timespan._grammar(text)\n"
             "    except ValueError: ours = None\n"
             "    assert ours == theirs == (timespan.run_seconds(text) if theirs is not None else None), (text, ours, theirs)\n"
             "    try: taken = run.parser().parse_args(['--time', text]).time\n"
             "    except SystemExit: taken = None\n"
             "    assert (taken == text) == bool(theirs), (text, theirs, taken)\n"
             "assert 'locust' not in sys.modules and 'gevent' not in sys.modules\n"
             "print(timespan.run_seconds('1h30m'))\n")
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0 and done.stdout == "5400\n", done.stdout + done.stderr[-3000:]


def test_a_csv_folder_it_cannot_write_is_one_line_before_the_server_starts(tmp_path: Path) -> None:
    """Before: a FileNotFoundError traceback, after its server had started."""
    done = subprocess.run([sys.executable, str(ROOT / "loadtests" / "run.py"), "--csv", "/proc/nope", "--time", "5s"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT, env={**os.environ, "TMPDIR": str(tmp_path)})
    assert done.returncode == 1 and not done.stdout, done.stdout + done.stderr
    assert done.stderr == "loadtests/run.py: --csv /proc/nope: cannot write there (No such file or directory)\n", done.stderr
    assert not list(tmp_path.iterdir()), list(tmp_path.iterdir())  # no server's data folder: none started


@pytest.mark.parametrize("args, said", [
    (["--idle", "0", "--out", "/proc/x"], "loadtests/sweep.py: --out /proc/x: cannot write there (No such file or directory)"),
    (["--port", "BUSY"], "loadtests/sweep.py: could not start a server: port BUSY is in use by another process"),
    (["--port", "BUSY", "--idle", "0"], "loadtests/sweep.py: could not start a server: port BUSY is in use by another process"),
], ids=["out unwritable", "port taken, idle memory", "port taken, first step"])
def test_a_sweep_that_cannot_begin_says_why_in_one_line_of_its_own(args: list[str], said: str, tmp_path: Path) -> None:
    """Before: tracebacks (an unwritable --out; the idle memory's server), or run.py's name on the line."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        busy = str(other.getsockname()[1])
        args = [busy if a == "BUSY" else a for a in args]
        out = [] if "--out" in args else ["--out", str(tmp_path / "out")]
        done = subprocess.run([sys.executable, str(ROOT / "loadtests" / "sweep.py"), "--start", "2", "--max", "2",
                               "--seconds", "5", *args, *out], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 1 and not done.stdout, done.stdout + done.stderr[-2000:]
    assert done.stderr.count("\n") == 1 and done.stderr.startswith(said.replace("BUSY", busy)), done.stderr[-2000:]
