"""Read the MDRP instance tables: a header line naming the columns, then one row per line.

Columns are found by their header names (any case; mdrplib's spelling), so reordered columns
read right and unknown extra columns are ignored; cells are tab-separated (or, in a line
without tabs, whitespace-separated); blank lines and trailing whitespace are ignored.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from tracker.errors import ApiError


class InputError(ApiError):
    """A malformed instance or solution file (``bad_request``); picklable, so a worker process can raise it."""

    def __init__(self, message: str) -> None:
        super().__init__("bad_request", message)

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.message,)


def require_folder(folder: Path, kind: str) -> None:
    """Refuse a ``folder`` that is missing or a file, saying so plainly (not as a file missing inside it)."""
    if not folder.exists():
        raise InputError(f"no such folder: {folder}")
    if not folder.is_dir():
        raise InputError(f"{folder} is a file, not {kind} folder")


def norm(name: str) -> str:
    """A column name as compared: lower case, inner whitespace collapsed."""
    return " ".join(name.lower().split())


def split_cells(line: str) -> list[str]:
    """The cells of one line: tab-separated if it has a tab, else whitespace-separated."""
    line = line.rstrip()
    return [c.strip() for c in line.split("\t")] if "\t" in line else line.split()


@dataclass(frozen=True)
class Row:
    """One data line: its number in the file and its cells by column name."""

    where: str  # "malformed instance FOLDER: FILE", the prefix of every error about it
    line: int
    cells: dict[str, str]

    def fail(self, what: str) -> NoReturn:
        """Raise an ``InputError`` about this line, prefixed with its file and line number."""
        raise InputError(f"{self.where}: line {self.line}: {what}")

    def ident(self, column: str) -> str:
        """An id: non-empty, no whitespace (the solution files are space-separated)."""
        value = self.cells[column]
        if not value:
            self.fail(f"{column} id is empty")
        if any(ch.isspace() for ch in value):
            self.fail(f"{column} id {value!r} contains whitespace, which the space-separated solution files "
                      "cannot hold")
        return value

    def number(self, column: str, lo: float, hi: float, bounds: str) -> float:
        """A finite number within ``[lo, hi]``; ``bounds`` says the range in words for the error."""
        raw = self.cells[column]
        try:
            value = float(raw)
        except ValueError:
            self.fail(f"{column} {raw!r} is not a number")
        if not math.isfinite(value):
            self.fail(f"{column} {raw!r} is not a finite number")
        if not lo <= value <= hi:
            self.fail(f"{column} {raw} is out of range: {bounds}")
        return value


def _text(path: Path, where: str) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise InputError(f"{where}: line {line}: not UTF-8 text (byte {data[exc.start]:#04x})") from None


def read_table(path: Path, columns: Sequence[str], context: str) -> tuple[list[Row], list[str]]:
    """The rows of ``path`` keyed by ``columns``, and notes (columns ignored) for the user.

    Every error reads ``CONTEXT: FILE: line N: what``.
    """
    where = f"{context}: {path.name}"
    text = _text(path, where)
    lines = [(n, ln) for n, ln in enumerate(text.replace("\r\n", "\n").replace("\r", "\n").split("\n"), 1)
             if ln.strip()]
    expected = ", ".join(columns)
    if not lines:
        raise InputError(f"{where}: line 1: empty file; expected a header line naming the columns {expected}")
    (head_no, head), body = lines[0], lines[1:]
    names = [norm(c) for c in split_cells(head)]
    wanted = [norm(c) for c in columns]
    notes: list[str] = []
    if norm(head) == " ".join(wanted):  # also a header whose names hold spaces, in a file without tabs
        index, width = {c: i for i, c in enumerate(columns)}, len(columns)
    else:
        missing = [c for c, w in zip(columns, wanted) if w not in names]
        if any(is_number(c) for c in split_cells(head)):
            raise InputError(f"{where}: line {head_no}: expected a header line naming the columns {expected}; "
                             f"got a line of values {head.strip()!r}")
        if missing and len(names) >= len(columns):
            # Names other than the published ones, but as many columns: read them in the
            # published order, and say so (an evaluator's files may spell the header otherwise).
            notes.append(f"{path.name}: header {head.strip()!r} does not name the columns {expected}: "
                         "reading them by position")
            index, width = {c: i for i, c in enumerate(columns)}, len(names)
            return _rows(body, where, index, width), notes
        if missing:
            raise InputError(f"{where}: line {head_no}: the header lacks the column(s) {', '.join(missing)} "
                             f"(names are {expected}, in any case and order)")
        twice = sorted({n for n in names if names.count(n) > 1 and n in wanted})
        if twice:
            raise InputError(f"{where}: line {head_no}: the header names {', '.join(twice)} more than once")
        index, width = {c: names.index(w) for c, w in zip(columns, wanted)}, len(names)
        extra = [n for n in names if n not in wanted]
        if extra:
            notes.append(f"{path.name}: ignoring the column(s) {', '.join(extra)}")
    return _rows(body, where, index, width), notes


def _rows(body: list[tuple[int, str]], where: str, index: dict[str, int], width: int) -> list[Row]:
    rows = []
    for n, line in body:
        cells = split_cells(line)
        if len(cells) != width:
            raise InputError(f"{where}: line {n}: expected {width} values (one per header column), got {len(cells)}")
        rows.append(Row(where, n, {c: cells[i] for c, i in index.items()}))
    return rows


def is_number(cell: str) -> bool:
    """Whether ``cell`` reads as a number (a header cell never does)."""
    try:
        float(cell)
    except ValueError:
        return False
    return True
