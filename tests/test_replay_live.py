"""``tracker replay --live``: a slice of a real MDRP day through a real server and Redis."""
from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import psutil

from tests.test_replay import SMALL, instances_root
from tests.test_server_process import _gone
from tracker.commands.replay_live import server_env
from tracker.launcher import ServerProcess
from tracker.mdrp.instance import load_instance


def slice_instance(src: Path, dst: Path, minutes: float) -> int:
    """The first ``minutes`` of orders of ``src`` with the couriers on shift then."""
    dst.mkdir(parents=True)
    for name in ("restaurants.txt", "instance_parameters.txt"):
        (dst / name).write_text((src / name).read_text())
    head, *orders = (src / "orders.txt").read_text().splitlines()
    start = min(float(line.split("\t")[3]) for line in orders)
    kept = [line for line in orders if float(line.split("\t")[3]) < start + minutes]
    (dst / "orders.txt").write_text("\n".join([head, *kept]) + "\n")
    head, *couriers = (src / "couriers.txt").read_text().splitlines()
    on_shift = [line for line in couriers if float(line.split("\t")[3]) < start + minutes and float(line.split("\t")[4]) > start]
    (dst / "couriers.txt").write_text("\n".join([head, *on_shift]) + "\n")
    return len(kept)


def delivered(stdout: str) -> int:
    return int(stdout.split("delivered=")[1].split()[0].split("/")[0])


def figures_named(stdout: str) -> list[str]:
    """The names of the figures on a replay's summary line (``name=value`` after the day's name)."""
    line = next(line for line in stdout.splitlines() if "delivered=" in line)
    return [part.split("=")[0] for part in line.split(": ", 1)[1].split()]


def test_live_replay_of_an_hour_passes_the_checker(tmp_path: Path) -> None:
    instance = tmp_path / "slice"
    n = slice_instance(instances_root() / SMALL, instance, 60)
    assert n >= 5
    offline = subprocess.run([sys.executable, "-m", "tracker", "replay", str(instance), "--out", str(tmp_path / "off")],
                             capture_output=True, text=True, timeout=120)
    assert offline.returncode == 0, offline.stdout + offline.stderr
    done = subprocess.run(
        [sys.executable, "-m", "tracker", "replay", str(instance), "--live", "--time-scale", "600",
         "--out", str(tmp_path / "live")],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "checker: OK" in done.stdout
    # Couriers are few at the start of the day (two here): the live day delivers what the
    # offline one does, give or take the one order that live timing lets through or not.
    live, off = delivered(done.stdout), delivered(offline.stdout)
    assert abs(live - off) <= 1 and min(live, off) >= n - 2
    assert figures_named(done.stdout) == figures_named(offline.stdout), (done.stdout, offline.stdout)  # one format
    for name in ("assignments", "orders", "couriers"):
        assert (tmp_path / "live" / f"solution_info_{name}.txt").is_file()


def made_up_day(dst: Path) -> Path:
    """Six orders at two restaurants in the first ten minutes, two couriers on until minute 40:
    a live day of about 70 simulated minutes (7 s at x600)."""
    dst.mkdir(parents=True)
    (dst / "instance_parameters.txt").write_text(
        "meters_per_minute\tpickup service minutes\tdropoff service minutes\ttarget click-to-door\t"
        "maximum click-to-door\tpay per order\tguaranteed pay per hour\n320\t4\t4\t40\t90\t10\t15\n")
    (dst / "restaurants.txt").write_text("restaurant\tx\ty\nr1\t5000\t5000\nr2\t6000\t5600\n")
    orders = [f"o{i}\t{5000 + 300 * i}\t{4200 + 250 * i}\t{2 * (i - 1)}\tr{1 + i % 2}\t{2 * (i - 1) + 8}" for i in range(1, 7)]
    (dst / "orders.txt").write_text("order\tx\ty\tplacement_time\trestaurant\tready_time\n" + "\n".join(orders) + "\n")
    (dst / "couriers.txt").write_text("courier\tx\ty\ton_time\toff_time\nc1\t5200\t5100\t0\t40\nc2\t5800\t5500\t0\t40\n")
    return dst


def printed_env(instance: Path, *args: str) -> dict[str, str]:
    """What ``tracker replay INSTANCE --print-server-env`` prints, as a dict."""
    done = subprocess.run([sys.executable, "-m", "tracker", "replay", str(instance), "--print-server-env", *args],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and not done.stderr, done.stdout + done.stderr
    env = {}
    for line in done.stdout.splitlines():
        assert line.startswith("export "), line
        name, _, value = line.removeprefix("export ").partition("=")
        env[name] = shlex.split(value)[0]
    return env


def test_print_server_env_gives_the_settings_of_the_replays_own_server(tmp_path: Path) -> None:
    instance = made_up_day(tmp_path / "day")
    env = printed_env(instance, "--time-scale", "600", "--interval", "1")
    assert env["TRACKER_TIME_SCALE"] == "600.0" and env["TRACKER_DISPATCH_INTERVAL_S"] == "60.0"
    assert float(env["TRACKER_RIDER_SPEED_MPS"]) == 320 / 60 and env["TRACKER_PICKUP_SERVICE_S"] == "240.0"
    own = server_env(load_instance(instance), 600.0, 1.0)  # what `--live` gives the server it starts
    assert env == {k: v for k, v in own.items() if k != "TRACKER_LOG_LEVEL"}
    assert printed_env(instance)["TRACKER_TIME_SCALE"] == "300.0"  # --live's default


def test_two_live_replays_on_one_server_both_pass(start_server: Callable[..., ServerProcess], tmp_path: Path) -> None:
    """The same day played twice through one server (one Redis): each run's ids are its own. A
    server started with the printed settings plays without a warning; a replay that wants another
    dispatch interval is told which setting differs."""
    instance = made_up_day(tmp_path / "day")
    srv = start_server(printed_env(instance, "--time-scale", "600"), shared_redis=False)
    tags = []
    for run, interval in (("first", "0.5"), ("second", "1")):
        done = subprocess.run(
            [sys.executable, "-m", "tracker", "replay", str(instance), "--live", "--server", srv.base_url,
             "--secret", srv.secret, "--out", str(tmp_path / run), "--interval", interval],
            capture_output=True, text=True, timeout=120,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert "checker: OK" in done.stdout and delivered(done.stdout) >= 4, done.stdout
        warned = [line for line in done.stderr.splitlines() if "settings of its own" in line]
        if run == "first":
            assert not warned, done.stderr
        else:  # the server's 30 s rounds against the 60 this replay asks for, and only that
            assert len(warned) == 1 and "TRACKER_DISPATCH_INTERVAL_S=30.0 (this day wants 60)" in warned[0], done.stderr
            assert warned[0].count("TRACKER_") == 1 and "--print-server-env --interval 1" in warned[0]
        tags.append(done.stderr.split("its ids start ")[1].split(";")[0])
        check = subprocess.run([sys.executable, "-m", "tracker", "replay", "--check", str(instance), str(tmp_path / run)],
                               capture_output=True, text=True, timeout=60)
        assert check.returncode == 0 and "OK: every rule holds" in check.stdout, check.stdout + check.stderr
        rows = (tmp_path / run / "solution_info_orders.txt").read_text().split()
        assert "o1" in rows and not any(cell.startswith(tags[-1]) for cell in rows)  # the instance's own ids
    assert tags[0] != tags[1], tags


def test_a_killed_live_replay_leaves_no_server_redis_or_folder_behind(tmp_path: Path) -> None:
    """``tracker replay --live`` SIGKILLed while it plays through a server of its own: that server,
    its redis-server and its temporary data folder go within seconds, with no cleanup of the replay's."""
    instance = made_up_day(tmp_path / "day")
    tmp, err = tmp_path / "tmp", tmp_path / "replay.err"
    tmp.mkdir()
    with err.open("w") as stderr:
        replay = subprocess.Popen(
            [sys.executable, "-m", "tracker", "replay", str(instance), "--live", "--time-scale", "1",
             "--out", str(tmp_path / "live")],
            env={**os.environ, "TMPDIR": str(tmp)}, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        deadline = time.monotonic() + 60
        while "playing" not in err.read_text():
            assert replay.poll() is None and time.monotonic() < deadline, err.read_text()
            time.sleep(0.1)
        left = [p.pid for p in psutil.Process(replay.pid).children(recursive=True)]
        assert len(left) >= 2 and list(tmp.iterdir()), "no server and Redis of its own"
        replay.kill()
        replay.wait()
        assert _gone(left, 5), "the replay's server or its Redis outlived it"
        deadline = time.monotonic() + 5
        while list(tmp.iterdir()):
            assert time.monotonic() < deadline, f"left in the temporary folder: {list(tmp.iterdir())}"
            time.sleep(0.1)
    finally:
        replay.kill()
        replay.wait()
