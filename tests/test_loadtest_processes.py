"""loadtests/run.py and the processes it starts: a locust that never started is not reported with
an earlier run's figures, no locust worker outlives the run, and a terminal's Ctrl-C does not stop
the run's own server before the run has ended its orders on it."""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil

from tracker.embedded_redis import free_port

ROOT = Path(__file__).resolve().parents[1]
# the statistics of an earlier run that passed, left in the folder by it
EARLIER = ("Type,Name,Request Count,Failure Count,50%,99%,Requests/s\n"
           "WS,connect,5,0,1,1,1\nWS,location,100,0,1,1,10\nWS,fix_to_visibility,100,0,5,9,4\n")


def value(stdout: str, key: str) -> str:
    """The value printed on run.py's ``key`` line."""
    return next(line for line in stdout.splitlines() if line.split()[:1] == [key]).split(None, 1)[1]


def processes_naming(text: str) -> list[psutil.Process]:
    """The live processes (not zombies) whose command line holds ``text``."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if text in " ".join(proc.info["cmdline"] or []) and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
    return found


def test_a_run_whose_locust_never_started_fails_and_leaves_no_worker_behind(tmp_path: Path) -> None:
    """Its master's port taken: locust's master fails at once and its two forked workers were left
    retrying for five minutes, while run.py read the folder's earlier statistics as its own
    (``result ok``, exit status 0)."""
    folder = tmp_path / "csv"
    folder.mkdir()
    (folder / "run_stats.csv").write_text(EARLIER)
    with socket.socket() as master:
        master.bind(("127.0.0.1", 0))
        master.listen()
        try:
            done = subprocess.run(
                [sys.executable, str(ROOT / "loadtests" / "run.py"), "--server", f"http://127.0.0.1:{free_port()}",
                 "--secret", "s" * 40, "--processes", "2", "--master-port", str(master.getsockname()[1]),
                 "--csv", str(folder), "--riders", "1", "--customers", "0", "--merchants", "1", "--operators", "0",
                 "--time", "5s", "--quiet"], capture_output=True, text=True, timeout=120, cwd=ROOT)
            time.sleep(0.5)  # (a worker killed as run.py ended is reaped by now)
            left = processes_naming(str(folder))
        finally:
            for proc in processes_naming(str(folder)):  # (left before the fix: not left behind by the test)
                proc.kill()
    assert not left, [p.info["cmdline"] for p in left]
    assert done.returncode == 1, done.stdout + done.stderr[-2000:]
    assert value(done.stdout, "result") == "FAILED", done.stdout
    assert "FAILED: locust wrote no statistics (did it start? run without --quiet to see)" in done.stdout.splitlines()
    assert not (folder / "run_stats.csv").exists()


def test_ctrl_c_on_a_run_with_its_own_server_ends_its_orders_before_that_server_stops(tmp_path: Path) -> None:
    """A terminal's Ctrl-C goes to its whole foreground group: the run's own server stopped at once,
    and run.py, ending the run's orders, found no server (``FAILED: could not check this run's
    orders``) and kept its folder."""
    proc = subprocess.Popen([sys.executable, str(ROOT / "loadtests" / "run.py"), "--riders", "2", "--customers", "2",
                             "--merchants", "1", "--time", "120s", "--quiet"],
                            cwd=ROOT, env={**os.environ, "TMPDIR": str(tmp_path)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)  # as a terminal's foreground job
    servers: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 90
        while not any(f.read_text().strip() for f in tmp_path.glob("tracker-locust-*/run_orders.txt")):
            assert time.monotonic() < deadline and proc.poll() is None, "no order placed"
            time.sleep(0.2)
        time.sleep(4)  # (past the ramp: the probe has measured)
        servers = [p for p in psutil.Process(proc.pid).children() if "serve" in p.cmdline()]
        assert len(servers) == 1, psutil.Process(proc.pid).children()
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
        for server in servers:
            with contextlib.suppress(psutil.Error):
                server.kill()
    assert proc.returncode == 130, out + err[-2000:]
    assert value(out, "result") == "interrupted" and "FAILED" not in out, out + err[-2000:]
    placed, ended = int(value(out, "orders_placed")), int(value(out, "orders_ended").split()[0])
    assert 0 < ended <= placed, out  # (ended on the server: a rider takes 8 s to deliver one)
    assert not servers[0].is_running() or servers[0].status() == psutil.STATUS_ZOMBIE
    assert not list(tmp_path.iterdir()), list(tmp_path.iterdir())  # its locust folder and the server's data folder
