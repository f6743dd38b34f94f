"""``tracker replay`` on malformed instances and solutions: one clear line and a fitting exit status,
never a traceback, a silent wrong figure or an endless day; ``--all`` goes on past a bad instance."""
from __future__ import annotations

import pickle
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.test_replay import SMALL, instances_root, tracker
from tracker.mdrp.instance import load_instance
from tracker.mdrp.tables import InputError

Edit = Callable[[list[str]], list[str]]


def instance_copy(dst: Path, **edits: Edit) -> Path:
    """The small day copied to ``dst``, each ``FILE=fn`` rewriting that file's lines (``FILE`` without .txt)."""
    shutil.copytree(instances_root() / SMALL, dst)
    for stem, fn in edits.items():
        path = dst / f"{stem}.txt"
        path.write_text("\n".join(fn(path.read_text().splitlines())) + "\n")
    return dst


def cell(row: int, col: int, value: str) -> Edit:
    """Set one tab-separated cell (row 0 is the header)."""
    def edit(lines: list[str]) -> list[str]:
        cells = lines[row].split("\t")
        cells[col] = value
        return [*lines[:row], "\t".join(cells), *lines[row + 1:]]
    return edit


def params(values: str) -> Edit:
    return lambda lines: [lines[0], values]


def one_line_error(run: subprocess.CompletedProcess[str]) -> str:
    err = run.stderr
    assert "Traceback" not in err and err.count("\n") == 1, err
    return err


@pytest.fixture(scope="module")
def solution(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("inputs") / SMALL
    done = tracker("replay", str(instances_root() / SMALL), "--out", str(out))
    assert done.returncode == 0, done.stderr
    return out


BAD_INSTANCES: dict[str, tuple[dict[str, Edit], str, str]] = {
    # name: (edits, file named in the message, what it says)
    "zero_speed": ({"instance_parameters": params("0\t4\t4\t40\t90\t10\t15")}, "instance_parameters.txt: line 2",
                   "meters_per_minute 0"),
    "negative_speed": ({"instance_parameters": params("-320\t4\t4\t40\t90\t10\t15")},
                       "instance_parameters.txt: line 2", "meters_per_minute -320"),
    "too_few_params": ({"instance_parameters": params("320\t4\t4")}, "instance_parameters.txt: line 2",
                       "expected 7 values"),
    "no_params": ({"instance_parameters": lambda ls: ls[:1]}, "instance_parameters.txt: line 2", "no values"),
    "unknown_restaurant": ({"orders": cell(1, 4, "r9999")}, "orders.txt: line 2", "restaurant r9999"),
    "nan_coordinate": ({"orders": cell(1, 1, "nan")}, "orders.txt: line 2", "not a finite number"),
    "huge_coordinate": ({"restaurants": cell(1, 1, "1e12")}, "restaurants.txt: line 2", "x 1e12"),
    "nan_placement": ({"orders": cell(1, 3, "nan")}, "orders.txt: line 2", "placement_time 'nan'"),
    "inf_off_time": ({"couriers": cell(1, 4, "inf")}, "couriers.txt: line 2", "off_time 'inf'"),
    "far_future": ({"orders": cell(1, 5, "10000000"), "couriers": cell(1, 4, "10000100")}, "orders.txt: line 2",
                   "within 3 days"),
    "no_header": ({"orders": lambda ls: ls[1:]}, "orders.txt: line 1", "expected a header line"),
    "duplicate_order": ({"orders": lambda ls: [*ls[:2], ls[1], *ls[2:]]}, "orders.txt: line 3", "order o1 is listed twice"),
    "duplicate_courier": ({"couriers": lambda ls: [*ls[:2], ls[1], *ls[2:]]}, "couriers.txt: line 3",
                          "courier c1 is listed twice"),
    "off_before_on": ({"couriers": cell(1, 4, "-5")}, "couriers.txt: line 2", "goes off shift"),
    "courier_named_like_an_order": ({"couriers": cell(1, 0, "o1")}, "couriers.txt: line 2", "also an order id"),
    "space_in_id": ({"orders": cell(1, 0, "o 1")}, "orders.txt: line 2", "whitespace"),
    "empty_id": ({"orders": cell(1, 0, "")}, "orders.txt: line 2", "order id is empty"),
}


@pytest.mark.parametrize("name", sorted(BAD_INSTANCES))
def test_a_malformed_instance_is_refused_naming_file_and_line(tmp_path: Path, name: str) -> None:
    edits, where, what = BAD_INSTANCES[name]
    folder = instance_copy(tmp_path / name, **edits)
    with pytest.raises(InputError) as caught:
        load_instance(folder)
    message = caught.value.message
    assert message.startswith(f"malformed instance {folder}: {where}: ") and what in message, message
    assert pickle.loads(pickle.dumps(caught.value)).message == message  # survives a worker process


def test_replay_and_check_of_a_malformed_instance_are_one_line(tmp_path: Path, solution: Path) -> None:
    edits, where, _ = BAD_INSTANCES["zero_speed"]
    folder = instance_copy(tmp_path / "zero_speed", **edits)
    for args in ([str(folder), "--out", str(tmp_path / "out")], ["--check", str(folder), str(solution)]):
        run = tracker("replay", *args)
        assert run.returncode == 2, run.stdout + run.stderr
        err = one_line_error(run)
        assert err.startswith(f"tracker replay: malformed instance {folder}: {where}: meters_per_minute 0 "), err


def test_far_future_times_are_refused_not_played(tmp_path: Path) -> None:
    edits, _, _ = BAD_INSTANCES["far_future"]
    run = tracker("replay", str(instance_copy(tmp_path / "far", **edits)), "--out", str(tmp_path / "out"))
    assert run.returncode == 2 and "refused, not shortened" in one_line_error(run), run.stderr


def test_layout_variants_read_the_same_instance(tmp_path: Path) -> None:
    original = load_instance(instances_root() / SMALL)

    def swap(lines: list[str]) -> list[str]:  # placement_time and ready_time change places, header included
        rows = [ln.split("\t") for ln in lines]
        return ["\t".join([*r[:3], r[5], r[4], r[3]]) for r in rows]

    variants = {
        "trailing_tab": {"instance_parameters": lambda ls: [ln + "\t" for ln in ls]},
        "trailing_space": {stem: (lambda ls: [ln + "  \t " for ln in ls])
                           for stem in ("orders", "couriers", "restaurants", "instance_parameters")},
        "reordered": {"orders": swap},
        "upper_case_header": {"couriers": lambda ls: [ls[0].upper(), *ls[1:]]},
        "spaces": {stem: (lambda ls: [ln.replace("\t", " ") for ln in ls])
                   for stem in ("orders", "couriers", "restaurants", "instance_parameters")},
    }
    variants["other_header_names"] = {"orders": cell(0, 3, "PlacementTime")}  # read by position, with a note
    for name, edits in variants.items():
        got = load_instance(instance_copy(tmp_path / name, **edits))
        assert (got.params, got.restaurants, got.orders, got.couriers) == (
            original.params, original.restaurants, original.orders, original.couriers), name
        assert any("reading them by position" in n for n in got.notes) == (name == "other_header_names"), got.notes


def test_an_empty_shift_loads_with_a_warning(tmp_path: Path) -> None:
    folder = instance_copy(tmp_path / "empty_shift", couriers=cell(1, 4, "0"))  # c1: on 0, off 0
    assert any("courier c1 has an empty shift" in note for note in load_instance(folder).notes)
    run = tracker("replay", str(folder), "--out", str(tmp_path / "out"))
    assert run.returncode == 0, run.stderr
    assert "tracker replay: warning: couriers.txt: line 2: courier c1 has an empty shift" in run.stderr


@pytest.mark.parametrize("services, warned", [("1\t4", True), ("4\t0", True), ("2\t2", False), ("4\t4", False)])
def test_a_service_time_under_two_minutes_warns_of_the_published_evaluators_whole_minutes(
        tmp_path: Path, services: str, warned: bool) -> None:
    folder = instance_copy(tmp_path / "services", instance_parameters=params(f"320\t{services}\t40\t90\t10\t15"))
    notes = load_instance(folder).notes
    assert any("a service time under 2 minutes" in note for note in notes) == warned, notes
    if warned:  # with no service there are no half minutes to cut: the courier is not there yet at its arrival
        assert any("finds a courier at a place only strictly after its arrival" in note for note in notes), notes


def test_times_between_whole_minutes_load_with_a_warning(tmp_path: Path) -> None:
    """The published evaluator cuts assignment, pickup and departure times to whole minutes: an
    assignment at a placement of 13.5 reads as 13, too early."""
    folder = instance_copy(tmp_path / "halves", orders=lambda ls: [ls[0], *(
        "\t".join([*c[:3], f"{float(c[3]) + 0.5:g}", *c[4:]]) for c in (line.split("\t") for line in ls[1:3])), *ls[3:]],
        couriers=cell(2, 3, "30.25"))
    notes = load_instance(folder).notes
    placed = float((folder / "orders.txt").read_text().splitlines()[1].split("\t")[3])
    assert f"orders.txt: line 2: order o1 is placed at {placed:g}, not on a whole minute, and 1 other order(s)" in \
        " ".join(notes), notes
    assert "couriers.txt: line 3: courier c2 comes on at 30.25, not on a whole minute, and 0 other" in " ".join(notes)


def test_food_ready_before_its_order_is_placed_loads_with_a_warning(tmp_path: Path) -> None:
    lines = (instances_root() / SMALL / "orders.txt").read_text().splitlines()
    placed = float(lines[1].split("\t")[3])
    folder = instance_copy(tmp_path / "early_food", orders=cell(1, 5, f"{placed - 5:g}"))
    [note] = load_instance(folder).notes
    assert note.startswith(f"orders.txt: line 2: order o1 is ready ({placed - 5:g}) before it is placed ({placed:g})")
    run = tracker("replay", str(folder), "--out", str(tmp_path / "out"))
    assert run.returncode == 0, run.stderr
    assert "tracker replay: warning: orders.txt: line 2: order o1 is ready" in run.stderr
    assert load_instance(instances_root() / SMALL).notes == ()  # the real day has no such order


def _edit_solution(solution: Path, dst: Path, name: str, fn: Edit) -> Path:
    shutil.copytree(solution, dst)
    path = dst / f"solution_info_{name}.txt"
    path.write_text("\n".join(fn(path.read_text().splitlines())) + "\n")
    return dst


def _first(col: int, value: str) -> Edit:
    def edit(lines: list[str]) -> list[str]:
        cols = lines[1].split()
        cols[col] = value
        return [lines[0], " ".join(cols), *lines[2:]]
    return edit


def test_check_of_a_move_to_an_unknown_place_fails_without_a_traceback(tmp_path: Path, solution: Path) -> None:
    broken = _edit_solution(solution, tmp_path / "zzz", "couriers", _first(3, "zzz"))
    run = tracker("replay", "--check", str(instances_root() / SMALL), str(broken))
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr
    assert "unknown place 'zzz'" in run.stdout and "FAILED" in run.stdout, run.stdout


def test_check_flags_a_pickup_before_its_assignment_and_refuses_infinite_times(tmp_path: Path,
                                                                                solution: Path) -> None:
    instance = str(instances_root() / SMALL)
    late = _edit_solution(solution, tmp_path / "late", "assignments", _first(0, "900"))
    run = tracker("replay", "--check", instance, str(late))
    assert run.returncode == 1 and "rule 1: " in run.stdout and "before it is made" in run.stdout, run.stdout
    for value in ("inf", "nan", "-inf"):
        bad = _edit_solution(solution, tmp_path / value, "assignments", _first(1, value))
        run = tracker("replay", "--check", instance, str(bad))
        assert run.returncode == 2, run.stdout
        err = one_line_error(run)
        assert "solution_info_assignments.txt line 2" in err and "not a time" in err, err


def _tables(folder: Path, tables: dict[str, list[str]], sep: str = "\t") -> Path:
    folder.mkdir()
    for name, rows in tables.items():
        (folder / f"{name}.txt").write_text("\n".join(sep.join(row.split()) for row in rows) + "\n")
    return folder


def test_check_matches_each_pickup_to_its_own_stay_when_a_courier_comes_back_at_once(tmp_path: Path) -> None:
    """No service time: a courier picks up at r1, drops at a diner on the same spot, is back at
    r1 for a second pickup, all at minute 10. Each pickup has a stay of its own; a detour to r2
    with nothing to do there is rule 6."""
    instance = _tables(tmp_path / "day", {
        "instance_parameters": ["meters_per_minute pickup_service_minutes dropoff_service_minutes target_ctd max_ctd "
                                "pay_per_order pay_per_hour", "100 0 0 40 90 10 15"],
        "restaurants": ["restaurant x y", "r1 0 0", "r2 1000 0"],
        "orders": ["order x y placement_time restaurant ready_time", "o1 0 0 0 r1 10", "o2 0 1000 0 r1 10"],
        "couriers": ["courier x y on_time off_time", "c1 0 0 0 100"]})
    moves = ["courier departure_time origin destination", "c1 0 0 r1", "c1 10 r1 o1", "c1 10 o1 r1", "c1 10 r1 o2"]
    solution = {"assignments": ["assignment_time pickup_time courier orders", "0 10 c1 o1", "0 10 c1 o2"],
                "orders": ["order placement_time ready_time pickup_time dropoff_time courier",
                           "o1 0 10 10 10 c1", "o2 0 10 10 20 c1"]}
    good = _tables(tmp_path / "good", {f"solution_info_{k}": v for k, v in {**solution, "couriers": moves}.items()}, " ")
    run = tracker("replay", "--check", str(instance), str(good))
    assert run.returncode == 0 and "every rule holds" in run.stdout, run.stdout
    detour = moves + ["c1 20 o2 r2"]
    bad = _tables(tmp_path / "bad", {f"solution_info_{k}": v for k, v in {**solution, "couriers": detour}.items()}, " ")
    run = tracker("replay", "--check", str(instance), str(bad))
    assert run.returncode == 1 and "rule 6: courier c1 goes to r2" in run.stdout, run.stdout


def test_all_goes_on_past_bad_instances_and_averages_what_it_has(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    instance_copy(root / "good")
    instance_copy(root / "unknown_rest", orders=cell(1, 4, "r9999"))  # was a KeyError in the worker
    instance_copy(root / "word_time", orders=cell(1, 3, "abc"))  # was an ApiError that could not come back
    instance_copy(root / "no_orders", orders=lambda ls: ls[:1])  # nothing delivered: was NaN averages
    run = tracker("replay", "--all", str(root), "--out", str(tmp_path / "out"), "--report", str(tmp_path / "rep"),
                  "--jobs", "2")
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr
    assert "unknown_rest: error: malformed instance" in run.stdout and "orders.txt: line 2" in run.stdout, run.stdout
    assert "word_time: error: malformed instance" in run.stdout, run.stdout
    assert "2 of 4 instances failed to replay" in run.stdout, run.stdout
    assert "tracker (2 instances)" in run.stdout and "1 of 2 instances had no deliveries (no_orders)" in run.stdout
    report = (tmp_path / "rep" / "report.md").read_text()
    assert "nan" not in run.stdout.lower() and "nan" not in report.lower(), report
    alone = tracker("replay", "--all", str(root / "good"), "--out", str(tmp_path / "alone"), "--jobs", "1")
    row = [ln for ln in alone.stdout.splitlines() if ln.startswith("| tracker (1 instance)")][0]
    assert row.replace("(1 instance)", "(2 instances)").split("|")[2:5] == [
        ln for ln in run.stdout.splitlines() if ln.startswith("| tracker (2 instances)")][0].split("|")[2:5]


def test_output_folders_are_checked_before_the_run(tmp_path: Path) -> None:
    instance = instances_root() / SMALL
    (tmp_path / "taken").write_text("a file")
    run = tracker("replay", "--all", str(instance), "--out", str(tmp_path / "out"), "--report", str(tmp_path / "taken"))
    assert run.returncode == 2 and "--report" in one_line_error(run) and not (tmp_path / "out").exists(), run.stderr
    copy = instance_copy(tmp_path / "inst")
    before = sorted(p.name for p in copy.iterdir())
    for args in ([str(copy), "--out", str(copy)], ["--all", str(tmp_path), "--out", str(tmp_path)]):
        run = tracker("replay", *args)
        assert run.returncode == 2 and "holds an instance" in one_line_error(run), run.stderr
    assert sorted(p.name for p in copy.iterdir()) == before  # no solution files mixed in


def test_an_out_folder_that_cannot_be_written_is_refused_before_the_day_is_played(tmp_path: Path) -> None:
    """It was found only when the solution was written, after simulating the whole day (every day, with --all)."""
    for args in ([str(instances_root() / SMALL)], ["--all", str(instances_root())]):
        started = time.monotonic()
        run = tracker("replay", *args, "--out", "/proc/tracker-replay-out")  # (even root may not write there)
        assert run.returncode == 2 and "cannot write in /proc" in one_line_error(run) and not run.stdout, run.stdout
        assert time.monotonic() - started < 10


def test_all_says_no_solution_was_written_when_every_instance_failed(tmp_path: Path) -> None:
    instance_copy(tmp_path / "root" / "word_time", orders=cell(1, 3, "abc"))
    run = tracker("replay", "--all", str(tmp_path / "root"), "--out", str(tmp_path / "out"), "--jobs", "1")
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr
    assert "solutions written" not in run.stdout, run.stdout
    assert run.stdout.strip().splitlines()[-1] == "no solution written: 1 of 1 instances failed to replay (no solution, " \
                                                  "no figures)", run.stdout
    assert not list((tmp_path / "out").glob("*/solution_info_*"))


def test_check_takes_the_solution_after_the_flag_too(solution: Path) -> None:
    run = tracker("replay", str(instances_root() / SMALL), "--check", str(solution))
    assert run.returncode == 0 and "OK: every rule holds" in run.stdout, run.stdout + run.stderr
    run = tracker("replay", str(instances_root() / SMALL), "--check", str(solution), "more")
    assert run.returncode == 2 and "unrecognized arguments:" in run.stderr and run.stderr.endswith(" more\n"), run.stderr


def test_a_missing_folder_or_a_file_given_as_instance_or_solution_says_so(tmp_path: Path, solution: Path) -> None:
    instance = instances_root() / SMALL
    missing, a_file = tmp_path / "no" / "such", instance / "orders.txt"
    cases = [
        ([str(missing), "--out", str(tmp_path / "out")], f"no such folder: {missing}"),
        ([str(a_file), "--out", str(tmp_path / "out")], f"{a_file} is a file, not an instance folder"),
        ([str(missing), "--live", "--out", str(tmp_path / "out")], f"no such folder: {missing}"),
        ([str(a_file), "--print-server-env"], f"{a_file} is a file, not an instance folder"),
        (["--check", str(missing), str(solution)], f"no such folder: {missing}"),
        (["--check", str(a_file), str(solution)], f"{a_file} is a file, not an instance folder"),
        (["--check", str(instance), str(missing)], f"no such folder: {missing}"),
        (["--check", str(instance), str(a_file)], f"{a_file} is a file, not a solution folder"),
    ]
    for args, said in cases:
        run = tracker("replay", *args)
        assert run.returncode == 2, (args, run.stdout + run.stderr)
        assert one_line_error(run) == f"tracker replay: {said}\n", (args, run.stderr)
    assert not (tmp_path / "out").exists()


def _one_order_day(tmp_path: Path) -> Path:
    """Two orders at one restaurant, one courier; a solution delivers o1 and leaves o2 undelivered."""
    return _tables(tmp_path / "day", {
        "instance_parameters": ["meters_per_minute pickup_service_minutes dropoff_service_minutes target_ctd max_ctd "
                                "pay_per_order pay_per_hour", "100 4 4 40 90 10 15"],
        "restaurants": ["restaurant x y", "r1 0 0"],
        "orders": ["order x y placement_time restaurant ready_time", "o1 0 1000 0 r1 10", "o2 0 1000 5 r1 10"],
        "couriers": ["courier x y on_time off_time", "c1 0 0 0 100"]})


def _day_solution(folder: Path, undelivered: str = "", moves: tuple[str, ...] = ("c1 0 0 r1", "c1 12 r1 o1"),
                  header: bool = True) -> Path:
    return _tables(folder, {
        "solution_info_assignments": ["assignment_time pickup_time courier orders", "0 10 c1 o1"],
        "solution_info_orders": ["order placement_time ready_time pickup_time dropoff_time courier",
                                 "o1 0 10 10 24 c1", *([f"o2 5 10 {undelivered}"] if undelivered else [])],
        "solution_info_couriers": [*(["courier departure_time origin destination"] if header else []), *moves]}, " ")


@pytest.mark.parametrize("marks", ["nan nan nan", "NaN NaN NaN", "None None None"])
def test_check_reads_an_undelivered_order_listed_with_nan_as_the_published_evaluator_does(tmp_path: Path,
                                                                                          marks: str) -> None:
    run = tracker("replay", "--check", str(_one_order_day(tmp_path)), str(_day_solution(tmp_path / "sol", marks)))
    assert run.returncode == 0 and "every rule holds" in run.stdout, run.stdout
    assert "delivered=1/2 " in run.stdout and "undelivered_pct=50.00" in run.stdout, run.stdout


def test_check_counts_no_order_it_refuses_as_delivered(tmp_path: Path) -> None:
    run = tracker("replay", "--check", str(_one_order_day(tmp_path)), str(_day_solution(tmp_path / "sol", "-1 -1 -1")))
    assert run.returncode == 1 and "rule 1: order o2 is in the orders file but in no assignment" in run.stdout
    assert "delivered=1/2 " in run.stdout, run.stdout  # not 2: the row it refused is no delivery


def test_check_reads_moves_as_the_published_evaluator_does(tmp_path: Path) -> None:
    """No header line (the evaluator tells one by its second value not being a number), and the
    courier's own id for its on-location (the evaluator reads 0 as that id)."""
    day = _one_order_day(tmp_path)
    run = tracker("replay", "--check", str(day), str(_day_solution(tmp_path / "bare", header=False)))
    assert run.returncode == 0 and "every rule holds" in run.stdout, run.stdout
    assert "solution_info_couriers.txt has no header line (missing header)" in run.stderr, run.stderr
    run = tracker("replay", "--check", str(day), str(_day_solution(tmp_path / "own", moves=("c1 0 c1 r1", "c1 12 r1 o1"))))
    assert run.returncode == 0 and "every rule holds" in run.stdout, run.stdout
