"""``tracker replay --live`` against a server that is missing, refuses the secret, dies or crawls:
one clear line and a prompt stop, never a traceback or a silent simulated day."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import httpx
import psutil
import pytest

from tests.test_replay import SMALL, instances_root
from tracker.auth import issue_token
from tracker.embedded_redis import free_port
from tracker.launcher import ServerProcess
from tracker.mdrp.instance import load_instance
from tracker.commands.replay_live import server_env

REPO = Path(__file__).resolve().parents[1]


def replay(*args: str, timeout: float = 60, env: dict[str, str] | None = None,
           cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tracker", "replay", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=cwd)


def without_secret(root: Path) -> dict[str, str]:
    """This environment without TRACKER_SECRET, the package importable from any folder."""
    env = {k: v for k, v in os.environ.items() if k not in ("TRACKER_SECRET", "TRACKER_DATA_DIR")}
    env["PYTHONPATH"] = os.pathsep.join([str(root), *filter(None, [env.get("PYTHONPATH")])])
    return env


def tiny_instance(dst: Path, minutes: float = 15, shift_end: float = 60) -> Path:
    """The orders of the first ``minutes`` of the small day and its first courier, off at ``shift_end``:
    a live day of about 90 simulated minutes."""
    src = instances_root() / SMALL
    dst.mkdir(parents=True)
    for name in ("restaurants.txt", "instance_parameters.txt"):
        (dst / name).write_text((src / name).read_text())
    head, *orders = (src / "orders.txt").read_text().splitlines()
    start = min(float(line.split("\t")[3]) for line in orders)
    kept = [line for line in orders if float(line.split("\t")[3]) < start + minutes]
    (dst / "orders.txt").write_text("\n".join([head, *kept]) + "\n")
    head, first, *_ = (src / "couriers.txt").read_text().splitlines()
    cid, x, y, on, _off = first.split("\t")
    (dst / "couriers.txt").write_text(f"{head}\n{cid}\t{x}\t{y}\t{on}\t{shift_end:g}\n")
    return dst


def test_live_replay_with_nothing_listening_is_one_line() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    run = replay(str(instances_root() / SMALL), "--live", "--server", url, "--secret", "x")
    assert run.returncode == 1, run.stdout + run.stderr
    assert run.stderr.startswith(f"tracker replay --live: cannot reach the server at {url}: "), run.stderr
    assert run.stderr.count("\n") == 1 and "Traceback" not in run.stderr and "Warning" not in run.stderr, run.stderr
    assert time.monotonic() - started < 30


def test_live_replay_with_a_wrong_secret_stops_before_the_day(server: ServerProcess) -> None:
    started = time.monotonic()
    run = replay(str(instances_root() / SMALL), "--live", "--server", server.base_url,
                 "--secret", "not-the-servers-secret-0123456789abcdef")
    assert run.returncode == 1, run.stdout + run.stderr
    assert "refused our operator token" in run.stderr and "TRACKER_SECRET" in run.stderr, run.stderr
    assert run.stderr.count("\n") == 1 and "Traceback" not in run.stderr
    assert time.monotonic() - started < 30  # not the simulated day


def progress_begun(proc: subprocess.Popen[str]) -> list[str]:
    """A live replay's stderr lines up to its first progress line (the first simulated hour's):
    the day is under way. Fails if its stderr ends first."""
    seen: list[str] = []
    while not any(line.startswith("  minute ") for line in seen):
        seen.append(proc.stderr.readline())  # type: ignore[union-attr]
        assert seen[-1], seen
    return seen


def test_live_replay_stops_when_the_server_goes_away(start_server: Callable[..., ServerProcess]) -> None:
    inst = load_instance(instances_root() / SMALL)
    srv = start_server(server_env(inst, 300, 0.5), shared_redis=False)  # (a scaled clock: a Redis of its own)
    proc = subprocess.Popen([sys.executable, "-m", "tracker", "replay", str(instances_root() / SMALL), "--live",
                             "--server", srv.base_url, "--secret", srv.secret, "--out", "/nonexistent/never-written"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killer = threading.Timer(60, proc.kill)  # readline must not wait forever
    killer.start()
    try:
        seen = progress_begun(proc)
        killer.cancel()
        assert proc.poll() is None and open_orders(srv) > 0, seen  # the server goes away with orders in hand
        srv.stop()
        stopped = time.monotonic()
        out, err = proc.communicate(timeout=45)  # the day would take three minutes more
    finally:
        killer.cancel()
        proc.kill()
    assert time.monotonic() - stopped < 30
    assert proc.returncode == 1, out + err
    last = err.strip().splitlines()[-1]
    assert last.startswith("tracker replay --live: ") and srv.base_url.split("//")[1] in last, err
    assert "Traceback" not in err


def test_live_replay_warns_that_time_scale_1_takes_the_real_day(server: ServerProcess, tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "tracker", "replay", str(instances_root() / SMALL), "--live",
                             "--server", server.base_url, "--secret", server.secret, "--out", str(tmp_path / "out")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killer = threading.Timer(30, proc.kill)  # readline must not wait forever
    killer.start()
    try:
        lines = [proc.stderr.readline() for _ in range(3)]  # type: ignore[union-attr]
    finally:
        killer.cancel()
        proc.kill()
        proc.communicate()
    settings, warning, playing = lines
    assert settings.startswith(f"tracker replay: warning: {server.base_url} plays with settings of its own: "
                               "TRACKER_DISPATCH_INTERVAL_S=10.0 (this day wants 30)"), lines  # the defaults, each named
    assert f"`tracker replay {instances_root() / SMALL} --print-server-env` prints" in settings, settings
    assert warning.startswith("tracker replay: warning: the server runs at time scale 1,"), lines
    assert "about 14.5 h of real time" in warning and "tracker serve --time-scale 300" in warning, warning
    assert "at x1:" in playing and str(tmp_path / "out") in playing, playing


def test_live_replay_reports_the_servers_own_time_scale(start_server: Callable[..., ServerProcess],
                                                        tmp_path: Path) -> None:
    """Played at the server's pace; signed, without --secret, with TRACKER_SECRET (as `tracker token`)."""
    instance = tiny_instance(tmp_path / "tiny")
    srv = start_server(server_env(load_instance(instance), 600, 0.5), shared_redis=False)
    env = {**without_secret(REPO), "TRACKER_SECRET": srv.secret}
    run = replay(str(instance), "--live", "--server", srv.base_url, "--out", str(tmp_path / "live"), timeout=90,
                 env=env, cwd=tmp_path)
    assert "(live, x600," in run.stdout, run.stdout + run.stderr  # not the x300 it would have started itself
    assert f"solution written to {tmp_path / 'live'}" in run.stdout
    assert "playing tiny live through" in run.stderr and " minute " in run.stderr, run.stderr  # start and progress
    assert run.returncode == 0, run.stdout + run.stderr


def test_live_replay_refuses_a_time_scale_the_server_does_not_run(server: ServerProcess) -> None:
    """--time-scale 600 against a server at x1 is refused at once (not played for 14 hours), naming
    the command that prints a matching server's settings."""
    started = time.monotonic()
    run = replay(str(instances_root() / SMALL), "--live", "--server", server.base_url, "--secret", server.secret,
                 "--time-scale", "600")
    assert run.returncode == 2, run.stdout + run.stderr
    refusal = run.stderr.strip().splitlines()[-1]
    assert refusal.startswith(f"tracker replay --live: the server at {server.base_url} runs at x1, not the "
                              "--time-scale 600 asked for"), run.stderr
    assert "--print-server-env --time-scale 600` prints" in refusal and "Traceback" not in run.stderr
    assert not run.stdout and time.monotonic() - started < 30


def test_live_replay_without_any_secret_says_where_it_looked(server: ServerProcess, tmp_path: Path) -> None:
    run = replay(str(instances_root() / SMALL), "--live", "--server", server.base_url,
                 env=without_secret(REPO), cwd=tmp_path)  # (no .tracker/ in tmp_path)
    assert run.returncode == 2, run.stdout + run.stderr
    assert run.stderr.startswith("tracker replay --live --server: give --secret"), run.stderr
    assert "TRACKER_SECRET is unset" in run.stderr and run.stderr.count("\n") == 1
    assert str(tmp_path.resolve() / ".tracker" / "secret") in run.stderr, run.stderr  # (where it looked)
    elsewhere = tmp_path / "data"  # a server whose data folder is elsewhere: that folder is where it looks
    run = replay(str(instances_root() / SMALL), "--live", "--server", server.base_url,
                 env={**without_secret(REPO), "TRACKER_DATA_DIR": str(elsewhere)}, cwd=tmp_path)
    assert run.returncode == 2 and str(elsewhere.resolve() / "secret") in run.stderr, run.stderr


def _workers_started(pid: int, count: int) -> bool:
    """Whether the process ``pid`` has its ``count`` workers, each past its start (it ignores Ctrl-C,
    as a worker of ``--all`` is set up to)."""
    try:
        workers = psutil.Process(pid).children()
        masks = [Path(f"/proc/{w.pid}/status").read_text().split("SigIgn:")[1].split()[0] for w in workers]
    except (psutil.NoSuchProcess, FileNotFoundError):
        return False
    return len(masks) == count and all(int(mask, 16) & (1 << (signal.SIGINT - 1)) for mask in masks)


def test_ctrl_c_stops_a_replay_of_every_day_at_once(tmp_path: Path) -> None:
    """The days not started are dropped (not played on for minutes), with one line saying so."""
    proc = subprocess.Popen([sys.executable, "-m", "tracker", "replay", "--all", str(instances_root()),
                             "--out", str(tmp_path / "out")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True,  # (its own group: Ctrl-C reaches every process)
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # (as a terminal's shell leaves it)
    try:
        deadline = time.monotonic() + 30
        while not _workers_started(proc.pid, os.cpu_count() or 1):  # the days handed to its workers (one a core)
            assert proc.poll() is None and time.monotonic() < deadline, "no worker started"
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGINT)
        stopped = time.monotonic()
        _, err = proc.communicate(timeout=60)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # its workers too, whatever happened
        except ProcessLookupError:
            pass
    assert time.monotonic() - stopped < 20, err[-500:]  # (the whole set takes a minute or two)
    assert proc.returncode == 130 and "tracker replay: interrupted after " in err and "Traceback" not in err, err[-800:]
    written = tmp_path / "out"  # (made with the first day written: on a busy machine, none may be yet)
    assert len(list(written.iterdir()) if written.exists() else []) < 144


def open_orders(srv: ServerProcess) -> int:
    """The server's count of orders not yet delivered, cancelled or failed (the ops snapshot's)."""
    token = issue_token(srv.secret, "operator", "test", 60)
    snap = httpx.get(srv.base_url + "/v1/ops/snapshot", headers={"Authorization": "Bearer " + token}).json()
    return int(snap["totals"]["open_orders"])


def test_a_live_replay_ends_the_orders_it_could_not_deliver_on_the_server_it_was_given(
        start_server: Callable[..., ServerProcess], tmp_path: Path) -> None:
    """Its only courier goes off before any food is ready: every order stays undelivered, and the
    replay cancels them on the server (real riders would be offered them) and says so."""
    instance = tiny_instance(tmp_path / "tiny", minutes=15, shift_end=20)
    placed = len((instance / "orders.txt").read_text().splitlines()) - 1
    srv = start_server(server_env(load_instance(instance), 600, 0.5), shared_redis=False)
    run = replay(str(instance), "--live", "--server", srv.base_url, "--secret", srv.secret,
                 "--out", str(tmp_path / "live"), timeout=90)
    assert "delivered=0/" in run.stdout, run.stdout + run.stderr
    assert placed > 1 and (f"tracker replay --live: ended {placed} orders this run left unfinished on {srv.base_url} "
            f'({placed} cancelled: "replay ended")') in run.stderr, run.stderr
    assert open_orders(srv) == 0
    tag = run.stderr.split("its ids start ")[1].split(";")[0]
    order = httpx.get(f"{srv.base_url}/v1/orders/{tag}o146",
                      headers={"Authorization": "Bearer " + issue_token(srv.secret, "operator", "test", 60)}).json()
    assert order["status"] == "cancelled" and order["events"][-1]["reason"] == "replay ended", order


def test_ctrl_c_stops_a_live_replay_and_leaves_none_of_its_orders_open(
        start_server: Callable[..., ServerProcess], tmp_path: Path) -> None:
    inst = load_instance(instances_root() / SMALL)
    srv = start_server(server_env(inst, 300, 0.5), shared_redis=False)
    proc = subprocess.Popen([sys.executable, "-m", "tracker", "replay", str(instances_root() / SMALL), "--live",
                             "--server", srv.base_url, "--secret", srv.secret, "--out", str(tmp_path / "out")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    killer = threading.Timer(60, proc.kill)  # readline must not wait forever
    killer.start()
    try:
        seen = progress_begun(proc)
        assert open_orders(srv) > 0, seen  # orders in hand when Ctrl-C comes
        os.killpg(proc.pid, signal.SIGINT)
        stopped = time.monotonic()
        out, err = proc.communicate(timeout=60)
    finally:
        killer.cancel()
        proc.kill()
    assert time.monotonic() - stopped < 20 and proc.returncode == 130, out + err
    assert "tracker replay --live: interrupted; no solution written" in err and "Traceback" not in err, err
    assert " this run left unfinished on " in err and open_orders(srv) == 0, err
    assert not (tmp_path / "out").exists()


def _tracker_serve_child(replay: subprocess.Popen[str], timeout: float = 30) -> psutil.Process:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in psutil.Process(replay.pid).children():
            try:
                if "serve" in child.cmdline():
                    return child
            except psutil.NoSuchProcess:
                pass
        time.sleep(0.02)
    raise AssertionError("the live replay started no server")


@pytest.mark.parametrize(("sig", "when"), [(signal.SIGTERM, "playing"), (signal.SIGHUP, "playing"),
                                           (signal.SIGTERM, "starting its server")])
def test_sigterm_or_sighup_stop_a_live_replay_and_its_own_server_as_ctrl_c_does(tmp_path: Path, sig: signal.Signals,
                                                                                when: str) -> None:
    """The signal sent to the replay alone (a supervisor's stop, a closed terminal): the server it
    started, that server's Redis and data folder go with it (they ran on, reparented to init)."""
    proc = subprocess.Popen([sys.executable, "-m", "tracker", "replay", str(instances_root() / SMALL), "--live",
                             "--out", str(tmp_path / "out")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    killer = threading.Timer(90, lambda: os.killpg(proc.pid, signal.SIGKILL))  # readline must not wait forever
    killer.start()
    try:
        child = _tracker_serve_child(proc)
        data_dir = Path(child.environ()["TRACKER_DATA_DIR"])
        if when == "playing":
            seen = [proc.stderr.readline()]  # type: ignore[union-attr]
            assert seen[0].startswith("playing "), seen
        family = [child, *child.children(recursive=True)]
        proc.send_signal(sig)
        stopped = time.monotonic()
        out, err = proc.communicate(timeout=60)
    finally:
        killer.cancel()
    assert time.monotonic() - stopped < 20 and proc.returncode == 128 + sig, out + err
    assert "tracker replay --live: interrupted; no solution written" in err and "Traceback" not in err, err
    assert psutil.wait_procs(family, timeout=10)[1] == [], "the replay's server (or its Redis) outlived it"
    assert not data_dir.exists() and not (tmp_path / "out").exists()


def test_the_reports_ctd_bound_never_exceeds_the_mean_it_bounds(tmp_path: Path) -> None:
    """Orders no courier can serve (placed after the last shift ends) are undelivered; the
    report's CTD bound is over the orders delivered, as the CTD mean is, so it stays below it.
    A day with no deliveries has neither (``–``)."""
    root = tmp_path / "days"
    day = tiny_instance(root / "late_orders", minutes=15, shift_end=60)
    lines = (day / "orders.txt").read_text().splitlines()
    late = []
    for k, line in enumerate(lines[1:6]):  # five more, placed at minute 2000 and ready at 2300
        cells = line.split("\t")
        cells[0], cells[3], cells[5] = f"late{k}", "2000", "2300"
        late.append("\t".join(cells))
    (day / "orders.txt").write_text("\n".join([*lines, *late]) + "\n")
    tiny_instance(root / "no_shift", minutes=15, shift_end=0)  # (its courier never works)
    run = replay("--all", str(root), "--out", str(tmp_path / "out"), "--report", str(tmp_path / "report"), "--jobs", "1",
                 timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    report = (tmp_path / "report" / "report.md").read_text()
    head = next(line for line in report.splitlines() if line.startswith("| instance |"))
    columns = [c.strip() for c in head.strip("|").split("|")]
    rows = {cells[0]: dict(zip(columns, cells)) for line in report.splitlines() if line.startswith("| ")
            for cells in [[c.strip() for c in line.strip("|").split("|")]]}
    late_row, none_row = rows["late_orders"], rows["no_shift"]
    assert float(late_row["undelivered %"]) > 0
    assert float(late_row["CTD bound"]) <= float(late_row["CTD mean"]), late_row
    assert none_row["CTD mean"] == none_row["CTD bound"] == "–", none_row
    assert "## By size" not in report  # (no mdrplib names: no families, no empty tables)


def test_live_replay_starts_its_server_on_the_port_given(tmp_path: Path) -> None:
    """``--port``: the server ``--live`` starts listens there (it had only a random free port)."""
    instance = tiny_instance(tmp_path / "tiny")
    port = free_port()
    run = replay(str(instance), "--live", "--port", str(port), "--time-scale", "600", "--out", str(tmp_path / "live"),
                 timeout=90)
    assert f"playing tiny live through a server of its own at http://127.0.0.1:{port} " in run.stderr, run.stderr
    assert run.returncode == 0, run.stdout + run.stderr


def test_live_replay_on_a_taken_port_names_the_flag_to_change(tmp_path: Path) -> None:
    """One line naming --port, a flag replay has (it had none, and the line named it all the same)."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        run = replay(str(instances_root() / SMALL), "--live", "--port", str(port), "--out", str(tmp_path / "live"))
    assert run.returncode == 1, run.stdout + run.stderr
    assert run.stderr == (f"tracker replay --live: could not start a server: port {port} is in use by another "
                          "process: pick another --port\n"), run.stderr
    assert not (tmp_path / "live").exists()


@pytest.mark.parametrize("args, said", [
    (("--port", "8700"), "tracker replay: --port works only with --live"),
    (("--live", "--server", "http://127.0.0.1:1", "--port", "8700"), "tracker replay: --server and --port do not go together"),
    (("--live", "--port", "70000"), "tracker replay: --port must be a TCP port, 1 to 65535, not 70000"),
], ids=["without --live", "with --server", "not a port"])
def test_live_replay_port_misuse_is_one_line(args: tuple[str, ...], said: str, tmp_path: Path) -> None:
    run = replay(str(instances_root() / SMALL), *args, "--out", str(tmp_path / "out"))
    assert run.returncode == 2 and run.stderr == said + "\n", run.stderr
    assert not (tmp_path / "out").exists()
