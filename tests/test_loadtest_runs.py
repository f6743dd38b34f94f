"""loadtests/run.py and sweep.py against real servers: a run that measured nothing or was refused
says so and fails, runs against one deployment do not meet and leave no unfinished order behind,
a sweep says when it found no knee."""
from __future__ import annotations

import asyncio
import contextlib
import csv
import os
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path

import httpx
import pytest
import redis

from loadtests.cleanup import REASON, end_run_orders
from tests.front_proxy import FrontProxy
from tests.orders_helpers import Ops, platform_kitchen, rider
from tracker.launcher import ServerProcess
from tracker.orders.machine import FINAL

ROOT = Path(__file__).resolve().parents[1]
SECRET = "loadtest-secret-0123456789abcdef0123456789ab"
SMALL = ["--riders", "4", "--customers", "2", "--merchants", "2", "--time", "6s", "--quiet"]


@pytest.fixture(scope="module")
def server():  # type: ignore[no-untyped-def]
    """One server (embedded Redis) for several runs, as a deployment a load test is pointed at."""
    srv = ServerProcess(secret=SECRET, env={"TRACKER_DISPATCH_INTERVAL_S": "2", "TRACKER_LOG_LEVEL": "warning"}).start()
    yield srv
    srv.cleanup()


def run_py(args: list[str], secret: str | None, tmp: Path | None = None,
           data_dir: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``loadtests/run.py ARGS`` with ``TRACKER_SECRET`` set to ``secret`` (unset for ``None``), its
    temporary files in ``tmp`` (default: the system's), ``TRACKER_DATA_DIR`` set to ``data_dir``
    (unset for ``None``)."""
    env = {k: v for k, v in os.environ.items() if k not in ("TRACKER_SECRET", "TRACKER_DATA_DIR")}
    if secret is not None:
        env["TRACKER_SECRET"] = secret
    if data_dir is not None:
        env["TRACKER_DATA_DIR"] = str(data_dir)
    if tmp is not None:
        tmp.mkdir(exist_ok=True)
        env["TMPDIR"] = str(tmp)
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
    # its creates were refused (401), each noted so: it placed nothing, and there was nothing to end
    assert value(done.stdout, "orders_placed") == "0", done.stdout
    assert value(done.stdout, "orders_ended") == "0", done.stdout
    assert not any("could not check" in line for line in lines), done.stdout
    listed = (tmp_path / "run_orders.txt").read_text().splitlines()
    tried = {line for line in listed if " " not in line}
    assert tried and {line.split()[0] for line in listed if line.endswith(" refused 401")} == tried, listed
    closed = rows(tmp_path / "run_stats.csv")["WS closed:1008 unauthorized"]
    assert int(closed["Failure Count"]) == int(closed["Request Count"]) > 0


def test_orders_placed_is_not_a_number_too_low_when_the_cleanup_cannot_reach_the_server(
        server: ServerProcess, tmp_path: Path) -> None:
    """Only the cleanup (httpx) is refused, 503: it can check none of the customers' orders. Before,
    run.py fell back on locust's count of answered creates, which leaves the customers' out:
    ``orders_placed 0`` and "it placed none" for a run that left 3 orders open."""
    with FrontProxy(server.port, refuse=b"user-agent: python-httpx") as proxy:
        done = run_py([f"--server=http://127.0.0.1:{proxy.port}", "--csv", str(tmp_path), "--riders", "0",
                       "--customers", "3", "--merchants", "1", "--operators", "0", "--time", "6s", "--quiet"], SECRET)
        assert proxy.refused > 0
    run = value(done.stdout, "run_id")
    try:
        orders = orders_of_run(server, run)
        assert len(orders) == 3, [o["id"] for o in orders]
        assert done.returncode == 1, done.stdout + done.stderr[-2000:]
        assert value(done.stdout, "orders_placed") == ("unknown, 0 to 3 (3 of the 3 it tried could not be checked; "
                                                       "see run_orders.txt)"), done.stdout
        failed = [line for line in done.stdout.splitlines() if line.startswith("FAILED: could not check")]
        assert failed and "503" in failed[0] and failed[0].endswith(
            "; up to 3 of them may still be open (see run_orders.txt)"), done.stdout
    finally:  # (ended here: not offered to the riders of the runs after this one)
        end_run_orders(server.base_url, SECRET, tmp_path / "run_orders.txt", run)


def test_server_without_a_secret_is_refused_before_the_run(tmp_path: Path) -> None:
    """It says where it looked for a development secret, as ``tracker token`` would."""
    done = run_py(["--server", "http://127.0.0.1:9", *SMALL], None, data_dir=tmp_path / "data")
    assert done.returncode == 2 and "TRACKER_SECRET" in done.stderr, done.stderr
    assert f"not in {tmp_path / 'data' / 'secret'} (TRACKER_DATA_DIR" in done.stderr, done.stderr


def test_a_run_against_a_server_signs_with_the_development_secret_of_its_data_folder(
        server: ServerProcess, tmp_path: Path) -> None:
    """Neither --secret nor TRACKER_SECRET: the secret in TRACKER_DATA_DIR, as ``tracker token`` and
    ``tracker replay --live --server`` take it (it had refused to start)."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "secret").write_text(SECRET + "\n")
    done = run_py(["--server", server.base_url, "--csv", str(tmp_path / "csv"), *SMALL], None, data_dir=tmp_path / "data")
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    assert value(done.stdout, "result") == "ok", done.stdout


def value(stdout: str, key: str) -> str:
    """The value printed on run.py's ``key`` line."""
    return next(line for line in stdout.splitlines() if line.split()[:1] == [key]).split(None, 1)[1]


def orders_of_run(server: ServerProcess, run: str) -> list[dict]:
    """Every order on ``server`` whose id carries run id ``run``, read from its Redis and over HTTP."""
    db = redis.Redis.from_url(server.effective_redis_url, decode_responses=True)
    ids = [key[len("orderidx:{"):-1] for key in db.scan_iter(match=f"orderidx:{{lt-?{run}-*}}", count=1000)]
    db.close()
    headers = {"Authorization": "Bearer " + server.token("operator", "test")}
    return [httpx.get(f"{server.base_url}/v1/orders/{oid}", headers=headers).json() for oid in ids]


def test_a_run_against_a_server_takes_its_secret_from_the_environment_and_ends_its_orders(
        server: ServerProcess, tmp_path: Path) -> None:
    # two locust worker processes: the orders of both are ended (one merchant: one tablet)
    small = ["--riders", "4", "--customers", "2", "--merchants", "1", "--time", "6s", "--quiet", "--processes", "2"]
    # (with a trailing /, as a URL copied from a browser: not //v1/orders)
    done = run_py(["--server", server.base_url + "/", "--csv", str(tmp_path), *small], SECRET)
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    assert value(done.stdout, "result") == "ok", done.stdout
    assert float(value(done.stdout, "fix_to_visibility_p99_ms")) > 0
    orders = orders_of_run(server, value(done.stdout, "run_id"))
    assert len(orders) == int(value(done.stdout, "orders_placed")) > 0, done.stdout
    assert len({o["id"].split("-")[2] for o in orders}) == 2, [o["id"] for o in orders]  # both workers' pids
    assert all(o["status"] in FINAL for o in orders), [(o["id"], o["status"]) for o in orders]
    ended = [o for o in orders if o["events"][-1].get("reason") == REASON]
    assert ended, "a 6 s run leaves orders unfinished: the riders take 8 s to deliver one"
    assert {o["status"] for o in ended} <= {"cancelled", "failed"}
    assert value(done.stdout, "orders_ended").startswith(f"{len(ended)} ("), done.stdout


async def test_the_end_of_a_run_ends_its_unfinished_orders_and_no_others(server: ServerProcess, tmp_path: Path) -> None:
    run, other = uuid.uuid4().hex[:6], uuid.uuid4().hex[:6]
    ids = {s: f"lt-o{run}-7-{i}" for i, s in enumerate(("placed", "assigned", "picked_up", "delivered", "missing"))}
    ids["other run"] = f"lt-o{other}-7-0"
    mid, rid = f"lt-m{run}-0", f"lt-r{run}-7-9"
    ops = Ops(server)
    kitchen, courier = await platform_kitchen(server, mid), await rider(server, rid)
    steps = {"assigned": (), "picked_up": ("at_pickup", "picked_up"),
             "delivered": ("at_pickup", "picked_up", "at_dropoff", "delivered")}
    try:
        for state in ("placed", "other run", *steps):
            assert (await ops.create(ids[state], mid)).status_code == 201
        for state, walk in steps.items():
            await kitchen.confirm(ids[state])
            await kitchen.event(ids[state], "confirmed")
            assert (await ops.assign(ids[state], rid)).status_code == 200
            for step in walk:
                await courier.progress(ids[state], step)
                await kitchen.event(ids[state], step)
        listed = tmp_path / "orders.txt"
        listed.write_text("".join(oid + "\n" for oid in [*ids.values(), ids["placed"], "not-an-order-id"]))
        ending = await asyncio.to_thread(end_run_orders, server.base_url, SECRET, listed, run)
        assert (ending.listed, ending.errors) == (5, [])
        assert ending.outcomes == Counter(cancelled=2, failed=1, finished=1, missing=1)
        after = {state: await ops.get(oid) for state, oid in ids.items() if state != "missing"}
        assert {s: o["status"] for s, o in after.items()} == {
            "placed": "cancelled", "assigned": "cancelled", "picked_up": "failed", "delivered": "delivered",
            "other run": "placed"}
        for state in ("placed", "assigned", "picked_up"):
            assert (after[state]["events"][-1]["by"], after[state]["events"][-1]["reason"]) == ("operator", REASON)
    finally:
        await courier.close()
        await kitchen.close()
        await ops.close()


def test_a_second_run_against_one_server_meets_nothing_of_the_first(server: ServerProcess, tmp_path: Path) -> None:
    # the first without --csv: its folder in /tmp is removed, as the run passed
    done = run_py(["--server", server.base_url, "--secret", SECRET, *SMALL], None, tmp=tmp_path / "tmp")
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    assert value(done.stdout, "csv") == "not kept (--csv DIR keeps locust's files)", done.stdout
    assert not list((tmp_path / "tmp").iterdir()), list((tmp_path / "tmp").iterdir())
    done = run_py(["--server", server.base_url, "--secret", SECRET, "--csv", str(tmp_path / "2"), *SMALL], None)
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    second = rows(tmp_path / "2" / "run_stats.csv")
    failures = {k: r["Failure Count"] for k, r in second.items() if k != " Aggregated" and int(r["Failure Count"])}
    assert not failures, failures  # (the first run's orders confirmed again: invalid_transition)
    feed = {k: float(r["Max Response Time"]) for k, r in second.items() if k.startswith("WS feed:")}
    assert feed.get("WS feed:placed") is not None, sorted(second)
    assert max(feed.values()) < 3000, feed  # the first run's orders, 10 s older, are history, not latency


def test_a_sweep_where_no_step_breaks_says_it_found_no_knee(tmp_path: Path) -> None:
    (tmp_path / "tmp").mkdir()
    done = subprocess.run(
        [sys.executable, str(ROOT / "loadtests" / "sweep.py"), "--start", "3", "--step", "3", "--max", "3",
         "--seconds", "20", "--idle", "0", "--processes", "2", "--limit-ms", "5000", "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=240, cwd=ROOT, env={**os.environ, "TMPDIR": str(tmp_path / "tmp")},
    )
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    assert not list((tmp_path / "tmp").iterdir()), list((tmp_path / "tmp").iterdir())  # (each step's locust files)
    assert {p.name for p in (tmp_path / "out").iterdir()} == {"capacity.csv", "capacity.png"}
    assert "verdict=holds" in done.stdout, done.stdout
    assert "no knee found up to 3 riders, every step held" in done.stdout, done.stdout
    assert "knee: 3 riders" not in done.stdout


def test_ending_a_runs_orders_gives_up_soon_on_a_server_whose_redis_hangs(tmp_path: Path) -> None:
    """Every request would wait out Redis's timeout: after a few failures in a row the rest are
    not tried (and counted as possibly open), instead of minutes of timeouts."""
    import os
    import signal
    import time

    import httpx as sync_http

    from tracker.commands.leftovers import GIVE_UP_AFTER, end_orders
    from tracker.embedded_redis import EmbeddedRedis, free_port

    external = EmbeddedRedis(tmp_path / "redis", port=free_port())
    with external, ServerProcess(secret=SECRET, redis_url=external.url, data_dir=tmp_path / "data") as srv:
        op = {"Authorization": "Bearer " + srv.token("operator", "ops")}
        ids = [f"hang-{i}" for i in range(60)]
        for oid in ids:
            body = {"id": oid, "merchant_id": "m-hang", "pickup": {"lat": 52.52, "lng": 13.405},
                    "dropoff": {"lat": 52.53, "lng": 13.42}}
            assert sync_http.post(srv.base_url + "/v1/orders", json=body, headers=op).status_code == 201
        assert external.pid is not None
        os.kill(external.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            ending = end_orders(srv.base_url, SECRET, ids, REASON)
            took = time.monotonic() - started
        finally:
            os.kill(external.pid, signal.SIGCONT)
    assert took < 20, took  # (60 orders at 5 s each, 8 at a time: 40 s and more)
    assert ending.outcomes["not ended"] >= GIVE_UP_AFTER and ending.outcomes["not tried"] > 0, ending
    assert ending.unresolved == len(ids) and "redis_unavailable" in ending.errors[0], ending.errors[:1]


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_a_run_stopped_by_ctrl_c_or_sigterm_stops_locust_ends_its_orders_and_prints_its_summary(
        server: ServerProcess, tmp_path: Path, how: str) -> None:
    """As the docs promise, an interrupted run still ends its orders; SIGTERM (a service manager,
    ``timeout``) takes the path of Ctrl-C instead of leaving locust firing at the server."""
    import signal
    import time

    import psutil

    env = {**os.environ, "TRACKER_SECRET": SECRET}
    cmd = [sys.executable, str(ROOT / "loadtests" / "run.py"), "--server", server.base_url, "--csv", str(tmp_path),
           "--riders", "2", "--customers", "2", "--merchants", "1", "--time", "120s", "--quiet",
           *(["--processes", "2"] if how == "sigterm" else [])]  # (a master and its workers, all to stop)
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # a group of its own, as a terminal's foreground job
    locusts: list[psutil.Process] = []
    try:
        placed = tmp_path / "run_orders.txt"
        deadline = time.monotonic() + 90
        while not (placed.exists() and placed.read_text().strip()) and proc.poll() is None:
            assert time.monotonic() < deadline, "no order placed"
            time.sleep(0.2)
        locusts = psutil.Process(proc.pid).children(recursive=True)
        assert len(locusts) == (3 if how == "sigterm" else 1), locusts
        if how == "ctrl-c":
            os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole foreground group
        else:
            proc.send_signal(signal.SIGTERM)  # run.py alone, as `kill` does
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
        for p in locusts:  # (left running before the fix: not left behind by the test)
            with contextlib.suppress(psutil.Error):
                p.kill()
    assert proc.returncode == (130 if how == "ctrl-c" else 143), out + err[-2000:]
    assert "Traceback" not in err and value(out, "result") == "interrupted", out + err[-2000:]
    assert not [p for p in locusts if p.is_running() and p.status() != psutil.STATUS_ZOMBIE], locusts
    orders = orders_of_run(server, value(out, "run_id"))
    assert orders and all(o["status"] in FINAL for o in orders), [(o["id"], o["status"]) for o in orders]
    assert len(orders) == int(value(out, "orders_placed")), out
    assert value(out, "orders_ended").startswith(f"{sum(o['events'][-1].get('reason') == REASON for o in orders)} (")


def test_a_sweep_stopped_by_sigterm_stops_there_and_writes_nothing(tmp_path: Path) -> None:
    """Its step's run.py ends the step; the sweep must not carry on, nor write a half table as the capacity."""
    import signal
    import time

    import psutil

    proc = subprocess.Popen([sys.executable, str(ROOT / "loadtests" / "sweep.py"), "--start", "2", "--step", "2",
                             "--max", "4", "--seconds", "60", "--idle", "0", "--processes", "1", "--out", str(tmp_path)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        def locust_running() -> bool:
            with contextlib.suppress(psutil.Error):  # (a process gone between the listing and its command line)
                return any("locust" in " ".join(p.cmdline()) for p in psutil.Process(proc.pid).children(recursive=True))
            return False

        while not locust_running():
            assert time.monotonic() < deadline and proc.poll() is None, "no step started"
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 143, out + err[-2000:]
    assert err.strip() == "loadtests/sweep.py: interrupted, nothing written", err[-2000:]
    assert not list(tmp_path.iterdir()) and "riders=" not in out, out
