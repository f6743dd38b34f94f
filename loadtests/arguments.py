"""What the load-test and benchmark scripts share on their command lines: argparse value types
(a count, a positive number, a port, MDRP instances), one line instead of a traceback on Ctrl-C
or for a server that did not start, and what a library module says when run as a command.

Imports nothing of ``tracker``: the side-by-side benchmarks choose which checkout's ``tracker``
to import only after parsing their arguments (``checkout.py``).
"""
from __future__ import annotations

import argparse
import contextlib
import math
import signal
import sys
from pathlib import Path
from typing import Iterator, NoReturn


def count(text: str) -> int:
    """A whole number, 0 or more."""
    value = _int(text)
    if value is None or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a count (0 or more)")
    return value


def positive_int(text: str) -> int:
    """A whole number, 1 or more (0 would measure nothing, or wait for ever)."""
    value = _int(text)
    if value is None or value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number above 0")
    return value


def positive_float(text: str) -> float:
    """A finite number above 0 (a rate, a time: 0 would divide by zero)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number above 0")
    return value


def port(text: str) -> int:
    """A TCP port, 1 to 65535."""
    value = _int(text)
    if value is None or not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (1 to 65535)")
    return value


def _int(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


@contextlib.contextmanager
def ctrl_c_exits(prog: str) -> Iterator[None]:
    """Ctrl-C within the block ends the script with one line and exit status 130, not a traceback
    (what the block started is stopped on the way out, by its own ``with`` and ``finally``)."""
    try:
        yield
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        sys.exit(128 + signal.SIGINT)


def one_line(exc: BaseException) -> str:
    """An error's first line, and its last if it has more (a server that did not start: why, then
    the last line of its log)."""
    said = str(exc).strip().splitlines() or [type(exc).__name__]
    return said[0] + (f" {said[-1].strip()}" if len(said) > 1 else "")


def could_not_start(prog: str, exc: BaseException) -> NoReturn:
    """End the script ``prog`` with one line saying its server did not start, and why; exit status 1."""
    sys.exit(f"{prog}: could not start a server: {one_line(exc)}")


def instance_folders(parser: argparse.ArgumentParser, root: Path, match: str = "") -> list[Path]:
    """The MDRP instances under ``root`` (folders holding ``orders.txt``) whose name contains
    ``match``, sorted; a usage error when there is none (a wrong path, not a traceback)."""
    folders = sorted(f for f in root.iterdir() if (f / "orders.txt").is_file() and match in f.name) if root.is_dir() else []
    if not folders:
        parser.error(f"{root}: no MDRP instance there{f' named *{match}*' if match else ''} (folders holding orders.txt)")
    return folders


def library_module(name: str, used_by: str) -> None:
    """Say that module ``name`` is not a command (run as one, it would do nothing) and exit 2."""
    print(f"{name} is a library module of {used_by}, not a command", file=sys.stderr)
    sys.exit(2)
