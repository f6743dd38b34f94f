"""Read the three MDRP solution files, flagging layouts the published evaluator reads otherwise.

mdrplib's ``compute_performance_summary.py`` splits the assignments and couriers files on any
whitespace, skips line 1 of the assignments file unread, takes line 1 of the couriers file for
a header only when its second value is not a number, and reads the orders file with pandas
(``sep=' '``): one space is one column separator, the header names the columns, and pickup,
drop-off and courier ``nan`` (or ``NaN``, ``None``, ...) mark an order left undelivered.
"""
from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tracker.mdrp.tables import InputError, is_number

ORDER_COLUMNS = ("order", "placement_time", "ready_time", "pickup_time", "dropoff_time", "courier")
# pandas' default missing-value words: such a cell reads as NaN
NA_WORDS = frozenset({"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
                      "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"})


@dataclass(frozen=True)
class Violation:
    rule: str
    message: str


Bad = Callable[[Violation], None]


@dataclass
class SolutionRows:
    """The parsed files; each row keeps its place (``FILE line N``) for messages."""

    assignments: list[tuple[float, float, str, list[str]]] = field(default_factory=list)
    moves: dict[str, list[tuple[float, str, str]]] = field(default_factory=lambda: defaultdict(list))
    orders: dict[str, tuple[float, float, str]] = field(default_factory=dict)  # delivered: pickup, drop-off, courier
    order_lines: dict[str, int] = field(default_factory=dict)  # order -> the line of its row
    undelivered: dict[str, int] = field(default_factory=dict)  # order -> the line listing it undelivered
    notes: list[str] = field(default_factory=list)


def time_of(value: str, where: str) -> float:
    """A finite time, else :class:`InputError` naming where it was."""
    try:
        number = float(value)
    except ValueError:
        raise InputError(f"{where}: {value!r} is not a time") from None
    if not math.isfinite(number):
        raise InputError(f"{where}: {value!r} is not a time (times must be finite numbers)")
    return number


def _lines(path: Path, bad: Bad) -> list[tuple[int, str]]:
    """The file's lines, numbered from 1; tabs are reported (the evaluator reads spaces)."""
    if not path.is_file():
        raise InputError(f"missing solution file {path}")
    lines = list(enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1))
    tabbed = next((n for n, line in lines if "\t" in line), None)
    if tabbed is not None:
        bad(Violation("format", f"{path.name} line {tabbed} separates columns with tabs; the published evaluator "
                                "reads spaces"))
    return lines


def _cells(name: str, n: int, line: str, least: int) -> list[str]:
    cells = line.split()
    if len(cells) < least:
        raise InputError(f"{name} line {n}: expected at least {least} columns, got {line!r}")
    return cells


def read_solution(folder: Path, bad: Bad) -> SolutionRows:
    """Parse the three files; layouts the evaluator cannot read or reads otherwise go to ``bad``
    (rule ``format``), a layout it reads as we do but that is unusual to ``notes``."""
    rows = SolutionRows()
    _assignments(folder / "solution_info_assignments.txt", rows, bad)
    _moves(folder / "solution_info_couriers.txt", rows, bad)
    _orders(folder / "solution_info_orders.txt", rows, bad)
    return rows


def _assignments(path: Path, rows: SolutionRows, bad: Bad) -> None:
    lines = _lines(path, bad)
    for n, line in lines:
        cells = line.split()
        if n == 1:  # the evaluator skips it, whatever it holds
            if len(cells) < 4 or not (is_number(cells[0]) and is_number(cells[1])):
                continue
            bad(Violation("format", f"{path.name} line 1 is an assignment, not the header (missing header): the "
                                    "published evaluator skips line 1 unread"))
        if not cells:
            bad(Violation("format", f"{path.name} line {n} is blank; the published evaluator stops there with an error"))
            continue
        where = f"{path.name} line {n}"
        cells = _cells(path.name, n, line, 4)
        rows.assignments.append((time_of(cells[0], where), time_of(cells[1], where), cells[2], cells[3:]))


def _moves(path: Path, rows: SolutionRows, bad: Bad) -> None:
    lines = _lines(path, bad)
    previous = None
    for n, line in lines:
        if not line.strip():
            continue
        if n == 1:
            cells = line.split()
            if len(cells) < 2 or not is_number(cells[1]):
                continue  # the header
            rows.notes.append(f"{path.name} has no header line (missing header): line 1 is read as a move, as the "
                              "published evaluator does")
        where = f"{path.name} line {n}"
        cid, depart, origin, dest = _cells(path.name, n, line, 4)[:4]
        if cid != previous and cid in rows.moves:
            bad(Violation("format", f"{where}: courier {cid}'s moves are split in two blocks; the published "
                                    "evaluator keeps only the last"))
        previous = cid
        # the evaluator reads origin 0 as the courier's own id, so either names its on-location
        rows.moves[cid].append((time_of(depart, where), "0" if origin == cid else origin, dest))


def _orders(path: Path, rows: SolutionRows, bad: Bad) -> None:
    lines = [(n, line) for n, line in _lines(path, bad) if line.strip()]  # pandas skips blank lines
    if not lines:
        return
    for what, test in (("begins or ends with a space", lambda line: line != line.strip(" ")),
                       ("has two spaces between columns", lambda line: "" in line.strip(" ").split(" "))):
        found = [n for n, line in lines if test(line)]
        if found:
            more = f" (and {len(found) - 1} other line(s))" if len(found) > 1 else ""
            bad(Violation("format", f"{path.name} line {found[0]} {what}{more}; the published evaluator (pandas, "
                                    "sep=' ') reads an extra, empty column there"))
    (_, head), body = lines[0], lines[1:]
    names = head.split()
    index = {c: i for i, c in enumerate(ORDER_COLUMNS)}
    if sorted(names) == sorted(ORDER_COLUMNS):
        index = {c: names.index(c) for c in ORDER_COLUMNS}  # the evaluator finds columns by name
    elif len(names) >= 4 and is_number(names[1]):
        bad(Violation("format", f"{path.name} line 1 is an order, not the header (missing header): the published "
                                "evaluator takes it for the column names"))
        body = lines
    else:
        bad(Violation("format", f"{path.name} line 1: the header {head.strip()!r} does not name the columns "
                                f"{' '.join(ORDER_COLUMNS)}, which the published evaluator looks up by name"))
    width = len(names)
    for n, line in body:
        where = f"{path.name} line {n}"
        cells = _cells(path.name, n, line, len(ORDER_COLUMNS))
        if len(cells) > width:
            bad(Violation("format", f"{where} has {len(cells)} values, the header {width}; the published evaluator "
                                    "stops there with an error"))
        oid = cells[index["order"]]
        if oid in rows.order_lines or oid in rows.undelivered:
            first = rows.order_lines.get(oid) or rows.undelivered[oid]
            bad(Violation("1", f"order {oid} is listed twice in {path.name} (lines {first} and {n}); "
                               "the published evaluator counts it in two assignments"))
            continue
        pickup, drop, courier = (cells[index[c]] for c in ("pickup_time", "dropoff_time", "courier"))
        if pickup in NA_WORDS and drop in NA_WORDS and courier in NA_WORDS:
            rows.undelivered[oid] = n
            continue
        rows.order_lines[oid] = n
        rows.orders[oid] = (time_of(pickup, where), time_of(drop, where), courier)
