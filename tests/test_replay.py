"""MDRP replay through the CLI, the checker catching broken solutions, and the planner's rules."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tracker.dispatch.model import OrderView, RiderView, Snapshot
from tracker.dispatch.planner import Policy, plan
from tracker.geo import LocalProjection

INSTANCES = Path(__file__).resolve().parents[1].parent / "shared" / "mdrp" / "instances"
SMALL = "0o50t100s1p100"


def instances_root() -> Path:
    for root in (INSTANCES, Path("/work/shared/mdrp/instances")):
        if (root / SMALL).is_dir():
            return root
    pytest.fail("the MDRP instances (../shared/mdrp/instances) are missing")


def tracker(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tracker", *args], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def solved(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    out = tmp_path_factory.mktemp("solution") / SMALL
    done = tracker("replay", str(instances_root() / SMALL), "--out", str(out))
    assert done.returncode == 0, done.stderr + done.stdout
    assert "checker: OK" in done.stdout and "ctd_mean=" in done.stdout
    return instances_root() / SMALL, out


def test_replay_writes_three_files_the_checker_accepts(solved: tuple[Path, Path]) -> None:
    instance, out = solved
    for name in ("assignments", "orders", "couriers"):
        assert (out / f"solution_info_{name}.txt").is_file()
    check = tracker("replay", "--check", str(instance), str(out))
    assert check.returncode == 0 and "OK: every rule holds" in check.stdout
    delivered = len((out / "solution_info_orders.txt").read_text().splitlines()) - 1
    placed = len((instance / "orders.txt").read_text().splitlines()) - 1
    assert delivered == placed  # a well-staffed day: nothing left undelivered


def test_replay_is_the_same_on_any_cpu_and_matches_the_committed_solution(solved: tuple[Path, Path], tmp_path: Path) -> None:
    """A replay decides alike whatever BLAS kernel, SIMD level or C library exp (glibc picks one
    with FMA or one without, by CPU) the machine picks (a near tie broken by one last bit changes
    the rest of the day), so the committed solution and the figures in docs/ are what anyone
    running the same command gets."""
    instance, out = solved
    other = tmp_path / "other-cpu"
    env = {**os.environ, "OPENBLAS_CORETYPE": "Prescott", "NPY_DISABLE_CPU_FEATURES": "X86_V3 AVX2 FMA3",
           "GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX2,-FMA"}
    done = subprocess.run([sys.executable, "-m", "tracker", "replay", str(instance), "--out", str(other)],
                          capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr + done.stdout
    committed = Path(__file__).resolve().parents[1] / "solutions" / SMALL
    for name in ("assignments", "orders", "couriers"):
        ours = (out / f"solution_info_{name}.txt").read_text()
        assert (other / f"solution_info_{name}.txt").read_text() == ours, name
        assert (committed / f"solution_info_{name}.txt").read_text() == ours, name


def _broken(out: Path, tmp: Path, edit) -> Path:  # type: ignore[no-untyped-def]
    copy = tmp / "broken"
    shutil.copytree(out, copy)
    edit(copy)
    return copy


def _rewrite(path: Path, fn) -> None:  # type: ignore[no-untyped-def]
    lines = path.read_text().splitlines()
    path.write_text("\n".join(fn(lines)) + "\n")


def _first_assignment(lines: list[str]) -> list[str]:
    return lines[1].split()


def test_r2p_breakdown_splits_the_replays_ready_to_pickup(solved: tuple[Path, Path]) -> None:
    instance, out = solved
    script = Path(__file__).resolve().parents[1] / "loadtests" / "r2p_breakdown.py"
    done = subprocess.run([sys.executable, str(script), str(instance.parent), "--match", SMALL, "--jobs", "1"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    family, days, reach, actual, lost = done.stdout.splitlines()[-1].split()
    assert (family, days) == ("all", "1")
    check = tracker("replay", "--check", str(instance), str(out))
    assert f"r2p_mean={actual}" in check.stdout  # the same day, the same figure as the checker's
    assert 0 < float(reach) < float(actual) and float(lost) == pytest.approx(float(actual) - float(reach), abs=0.011)


@pytest.mark.parametrize("breakage, rule", [
    ("duplicate_assignment", "rule 1"),
    ("pickup_before_ready", "rule 3"),
    ("teleport", "rule 5"),
    ("assign_before_placement", "rule 1"),
    ("pickup_after_leaving", "rule 3: courier"),  # the courier has left the restaurant by then
    ("late_dropoff", "rule 4: order"),  # not at the arrival plus half the service
    ("linger_at_restaurant", "rule 3: courier"),  # leaves later than the pickup plus half the service
    ("detour", "with nothing to pick up or drop off there"),  # rule 6: waits only where it may
    ("order_line_twice", "is listed twice in solution_info_orders.txt (lines 2 and "),  # rule 1 to the evaluator
    # the published evaluator reads times cut to whole minutes: 12.999 is 12, before a placement at 13
    ("assign_a_moment_before_placement", "rule 1: order"),
    ("pickup_a_moment_before_ready", "rule 3: order"),
    ("depart_a_moment_before_on_time", "rule 5: courier"),
    ("set_off_before_any_order_is_placed", "before any order it picks up there is placed"),  # rule 1
])
def test_checker_reports_each_broken_rule(solved: tuple[Path, Path], tmp_path: Path, breakage: str, rule: str) -> None:
    instance, out = solved

    def shift(ls: list[str], row: int, col: int, by: float) -> list[str]:
        cols = ls[row].split()
        cols[col] = f"{float(cols[col]) + by:g}"
        return [*ls[:row], " ".join(cols), *ls[row + 1:]]

    def edit(folder: Path) -> None:
        a = folder / "solution_info_assignments.txt"
        moves = folder / "solution_info_couriers.txt"
        orders = folder / "solution_info_orders.txt"
        placed = {row.split()[0]: float(row.split()[1]) for row in orders.read_text().splitlines()[1:]}
        ready = {row.split()[0]: float(row.split()[2]) for row in orders.read_text().splitlines()[1:]}
        on_time = {row.split("\t")[0]: float(row.split("\t")[3])
                   for row in (instance / "couriers.txt").read_text().splitlines()[1:]}
        if breakage == "order_line_twice":
            _rewrite(orders, lambda ls: ls + [ls[1]])
        elif breakage == "assign_a_moment_before_placement":
            def early(ls: list[str]) -> list[str]:
                cols = ls[1].split()
                cols[0] = f"{max(placed[o] for o in cols[3:]) - 0.001:.3f}"
                return [ls[0], " ".join(cols), *ls[2:]]
            _rewrite(a, early)
        elif breakage == "pickup_a_moment_before_ready":  # a bundle whose courier waited for the food
            def early(ls: list[str]) -> list[str]:
                row = next(n for n, line in enumerate(ls[1:], 1)
                           if float(line.split()[1]) == max(ready[o] for o in line.split()[3:]))
                cols = ls[row].split()
                cols[1] = f"{float(cols[1]) - 0.001:.3f}"
                return [*ls[:row], " ".join(cols), *ls[row + 1:]]
            _rewrite(a, early)
        elif breakage == "depart_a_moment_before_on_time":
            def early(ls: list[str]) -> list[str]:
                cols = ls[1].split()
                cols[1] = f"{on_time[cols[0]] - 0.001:.3f}"
                return [ls[0], " ".join(cols), *ls[2:]]
            _rewrite(moves, early)
        elif breakage == "set_off_before_any_order_is_placed":
            def early(ls: list[str]) -> list[str]:
                # the first courier's first move: towards its first pickup, left a minute before that order is placed
                cid, _, origin, rest = ls[1].split()
                first = next(line.split()[3] for line in a.read_text().splitlines()[1:] if line.split()[2] == cid)
                assert rest.startswith("r") and on_time[cid] <= placed[first] - 1
                return [ls[0], f"{cid} {placed[first] - 1:g} {origin} {rest}", *ls[2:]]
            _rewrite(moves, early)
        elif breakage == "pickup_after_leaving":
            _rewrite(a, lambda ls: shift(ls, 1, 1, 30))
        elif breakage == "late_dropoff":
            _rewrite(folder / "solution_info_orders.txt", lambda ls: shift(ls, 1, 4, 5))
        elif breakage == "linger_at_restaurant":
            first = next(n for n, line in enumerate(moves.read_text().splitlines()) if line.split()[2].startswith("r"))
            _rewrite(moves, lambda ls: shift(ls, first, 1, 1))
        elif breakage == "detour":  # the last courier, done for the day, rides to a restaurant
            def ride(ls: list[str]) -> list[str]:
                cid, depart, _, last = ls[-1].split()
                there = next(line.split()[3] for line in ls[1:] if line.split()[3].startswith("r"))
                return [*ls, f"{cid} {float(depart) + 600:g} {last} {there}"]
            _rewrite(moves, ride)
        elif breakage == "duplicate_assignment":
            _rewrite(a, lambda ls: ls + [ls[1]])
        elif breakage == "pickup_before_ready":
            def early(ls: list[str]) -> list[str]:
                cols = ls[1].split()
                cols[1] = "0"
                return [ls[0], " ".join(cols), *ls[2:]]
            _rewrite(a, early)
        elif breakage == "assign_before_placement":
            def before(ls: list[str]) -> list[str]:
                cols = ls[1].split()
                cols[0] = "-5"
                return [ls[0], " ".join(cols), *ls[2:]]
            _rewrite(a, before)
        else:
            def jump(ls: list[str]) -> list[str]:
                # the courier of the second move leaves before it could have arrived
                cols = ls[2].split()
                cols[1] = str(float(ls[1].split()[1]) - 1)
                return [ls[0], ls[1], " ".join(cols), *ls[3:]]
            _rewrite(folder / "solution_info_couriers.txt", jump)

    broken = _broken(out, tmp_path, edit)
    check = tracker("replay", "--check", str(instance), str(broken))
    assert check.returncode == 1
    assert rule in check.stdout and "FAILED" in check.stdout


@pytest.mark.parametrize("breakage, says", [
    ("blank_line_in_assignments", "solution_info_assignments.txt line"),
    ("tabs_in_orders", "tabs"),
    ("moves_in_two_blocks", "split in two blocks"),
    ("two_spaces_on_one_orders_line", "solution_info_orders.txt line 3 has two spaces between columns"),
    ("seventh_value_on_one_orders_line", "solution_info_orders.txt line 2 has 7 values"),
    ("orders_header_missing", "solution_info_orders.txt line 1 is an order, not the header (missing header)"),
    ("assignments_header_missing", "solution_info_assignments.txt line 1 is an assignment, not the header"),
])
def test_checker_refuses_what_the_published_evaluator_cannot_read(solved: tuple[Path, Path], tmp_path: Path,
                                                                  breakage: str, says: str) -> None:
    """Solutions it would crash on or misread, though every rule holds for the rows themselves."""
    instance, out = solved

    def edit(folder: Path) -> None:
        if breakage == "blank_line_in_assignments":
            _rewrite(folder / "solution_info_assignments.txt", lambda ls: ls + [""])
        elif breakage == "tabs_in_orders":
            _rewrite(folder / "solution_info_orders.txt", lambda ls: [line.replace(" ", "\t") for line in ls])
        elif breakage == "two_spaces_on_one_orders_line":  # pandas (sep=' ') reads 7 columns there
            _rewrite(folder / "solution_info_orders.txt", lambda ls: [*ls[:2], ls[2].replace(" ", "  ", 1), *ls[3:]])
        elif breakage == "seventh_value_on_one_orders_line":
            _rewrite(folder / "solution_info_orders.txt", lambda ls: [ls[0], ls[1] + " x", *ls[2:]])
        elif breakage.endswith("_header_missing"):
            _rewrite(folder / f"solution_info_{breakage.split('_')[0]}.txt", lambda ls: ls[1:])
        else:
            def split(ls: list[str]) -> list[str]:  # the first courier's last move, moved to the end
                first = ls[1].split()[0]
                last = max(i for i, line in enumerate(ls) if line.split()[0] == first)
                assert any(line.split()[0] != first for line in ls[last + 1:]), "needs a later courier"
                return ls[:last] + ls[last + 1:] + [ls[last]]
            _rewrite(folder / "solution_info_couriers.txt", split)

    check = tracker("replay", "--check", str(instance), str(_broken(out, tmp_path, edit)))
    assert check.returncode == 1, check.stdout
    assert "rule format" in check.stdout and says in check.stdout and "FAILED" in check.stdout


def test_checker_names_a_missing_or_malformed_file(solved: tuple[Path, Path], tmp_path: Path) -> None:
    instance, out = solved
    broken = _broken(out, tmp_path, lambda f: (f / "solution_info_orders.txt").unlink())
    check = tracker("replay", "--check", str(instance), str(broken))
    assert check.returncode == 2 and "solution_info_orders.txt" in check.stderr
    garbled = tmp_path / "garbled"
    shutil.copytree(out, garbled)
    (garbled / "solution_info_assignments.txt").write_text("header\nten eleven c1 o1\n")
    check = tracker("replay", "--check", str(instance), str(garbled))
    assert check.returncode == 2 and "not a time" in check.stderr
    (garbled / "solution_info_assignments.txt").write_bytes(b"header\n\xff\xfe 1 c1 o1\n")
    check = tracker("replay", "--check", str(instance), str(garbled))
    assert check.returncode == 2 and "not UTF-8" in check.stderr and "Traceback" not in check.stderr
    on_a_file = tracker("replay", str(instance), "--out", str(instance / "orders.txt"))
    assert on_a_file.returncode == 2 and "orders.txt" in on_a_file.stderr and "Traceback" not in on_a_file.stderr


def test_bad_replay_arguments_are_one_line_errors(solved: tuple[Path, Path], tmp_path: Path) -> None:
    instance, _ = solved
    for bad in (["--interval", "0"], ["--interval", "-2"], ["--interval", "nan"], ["--jobs", "0"]):
        run = tracker("replay", str(instance), "--out", str(tmp_path / "x"), *bad)  # would loop forever unchecked
        assert run.returncode == 2 and run.stderr.count("\n") == 1 and bad[0] in run.stderr, (bad, run.stderr)
    for root in (tmp_path / "missing", instance / "orders.txt"):
        run = tracker("replay", "--all", str(root))
        assert run.returncode == 2 and "Traceback" not in run.stderr and str(root) in run.stderr


PROJ = LocalProjection(40.0, -74.0)
NOW = 1_700_000_000_000


def order(oid: str, rest: str, rest_xy: tuple[float, float], drop_xy: tuple[float, float], ready_min: float) -> OrderView:
    (plat, plng), (dlat, dlng) = PROJ.to_latlng(*rest_xy), PROJ.to_latlng(*drop_xy)
    return OrderView(oid, rest, plat, plng, dlat, dlng, NOW - 60_000, int(NOW + ready_min * 60_000))


def rider(rid: str, xy: tuple[float, float], shift_end_min: float | None = None, busy_min: float = 0) -> RiderView:
    lat, lng = PROJ.to_latlng(*xy)
    end = None if shift_end_min is None else int(NOW + shift_end_min * 60_000)
    return RiderView(rid, lat, lng, True, end, busy_until_ms=int(NOW + busy_min * 60_000))


def run(orders: list[OrderView], riders: list[RiderView], **policy: float) -> list:  # type: ignore[type-arg]
    snap = Snapshot(NOW, PROJ.origin_lat, PROJ.origin_lng, tuple(orders), tuple(riders))
    return list(plan(snap, Policy(**policy)).offers)  # type: ignore[arg-type]


def test_planner_bundles_only_one_restaurants_orders_when_riders_are_short() -> None:
    orders = [order(f"a{i}", "A", (0, 0), (300 + 50 * i, 0), 0) for i in range(3)]
    orders += [order(f"b{i}", "B", (5000, 0), (5300 + 50 * i, 0), 0) for i in range(3)]
    offers = run(orders, [rider("r1", (100, 0)), rider("r2", (5100, 0))])
    assert len(offers) == 2
    for offer in offers:
        assert len({oid[0] for oid in offer.order_ids}) == 1  # one restaurant per bundle
    assert sorted(oid for o in offers for oid in o.order_ids) == sorted(o.id for o in orders)


def test_planner_waits_for_orders_far_from_ready_and_respects_shift_ends() -> None:
    early = order("late-food", "A", (0, 0), (500, 0), ready_min=40)
    assert run([early], [rider("r1", (100, 0))], interval_min=1) == []  # commit later
    soon = order("soon", "A", (0, 0), (500, 0), ready_min=1)
    assert run([soon], [rider("leaving", (100, 0), shift_end_min=0.5)]) == []  # off before pickup
    offers = run([soon], [rider("leaving", (100, 0), shift_end_min=0.5), rider("staying", (3000, 0))])
    assert [o.rider_id for o in offers] == ["staying"]


def test_planner_never_gives_one_order_to_two_riders_and_skips_blocked_riders() -> None:
    orders = [order(f"o{i}", f"R{i}", (i * 400, 0), (i * 400, 800), 0) for i in range(5)]
    riders = [rider(f"r{i}", (i * 300, 100)) for i in range(8)]
    offers = run(orders, riders)
    ids = [oid for o in offers for oid in o.order_ids]
    assert sorted(ids) == sorted(o.id for o in orders) and len(ids) == len(set(ids))
    assert len({o.rider_id for o in offers}) == len(offers)
    blocked = [OrderView(**{**o.__dict__, "blocked_riders": frozenset({"r0", "r1"})}) for o in orders[:1]]
    offers = run(blocked, riders[:3])
    assert [o.rider_id for o in offers] == ["r2"]


def test_replay_cli_says_what_it_ignored_or_meant(solved: tuple[Path, Path], tmp_path: Path) -> None:
    instance, _ = solved
    run = tracker("replay", str(instance), "--report", str(tmp_path / "report"))
    assert run.returncode == 2 and "--report works only with --all" in run.stderr and run.stderr.count("\n") == 1
    assert not (tmp_path / "report").exists()
    run = tracker("replay", str(instance), "--server", "http://127.0.0.1:1")  # without --live
    assert run.returncode == 2 and "--server works only with --live" in run.stderr
    for args, said in (((*("--all", str(instance.parent)), "--live"), "--all and --live do not go together"),
                       (("--all", str(instance.parent), str(instance)), "--all ROOT and an INSTANCE folder do not go together"),
                       (("--check", str(instance), str(tmp_path), "--live"), "--check and --live do not go together"),
                       ((str(instance), str(tmp_path)), "is a SOLUTION to check: add --check"),
                       ((str(instance), "--live", "--time-scale", "20000"), "at most 10000")):
        run = tracker("replay", *args)  # quietly dropping one of them would replay (and write) what was not meant
        assert run.returncode == 2 and said in run.stderr and run.stderr.count("\n") == 1, (args, run.stderr)
    assert not list(tmp_path.iterdir())
    run = tracker("replay", str(instance.parent))  # the folder of all instances
    assert run.returncode == 2 and f"--all {instance.parent}" in run.stderr and "Traceback" not in run.stderr, run.stderr
    one = tracker("replay", "--all", str(instance), "--out", str(tmp_path / "all"), "--jobs", "1")  # a set of one
    assert one.returncode == 0, one.stderr
    assert "1 of 1 solutions keep every rule" in one.stdout and (tmp_path / "all" / SMALL / "solution_info_orders.txt").is_file()


def test_replay_without_out_writes_outside_the_committed_solutions(tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, "-m", "tracker", "replay", str(instances_root() / SMALL)],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert f"solution written to solutions-replay/{SMALL}" in run.stdout
    assert (tmp_path / "solutions-replay" / SMALL / "solution_info_orders.txt").is_file()
    assert not (tmp_path / "solutions").exists()  # solutions/ holds the committed --all results
    ignored = (Path(__file__).resolve().parents[1] / ".gitignore").read_text().splitlines()
    assert "/solutions-replay/" in ignored and "/solutions-live/" in ignored  # the defaults of one day, offline and live
