"""``tracker replay --live``: a slice of a real MDRP day through a real server and Redis."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.test_replay import SMALL, instances_root


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
    for name in ("assignments", "orders", "couriers"):
        assert (tmp_path / "live" / f"solution_info_{name}.txt").is_file()
