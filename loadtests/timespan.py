"""``run.py --time``: exactly the run times locust takes (``20``, ``20s``, ``3m``, ``1h30m``,
``3h30m10s``; whole numbers only: locust refuses ``2.5s``), read by locust's own parser.

Importing ``locust`` monkey-patches the process for gevent, so its parser is loaded from its
file, alone (it needs only ``re`` and ``datetime``); where locust is not installed, the same
grammar (``run.py`` then says what to install, before it starts anything).
"""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Callable

_GRAMMAR = re.compile(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")


def _grammar(text: str) -> int:
    """Seconds of ``text`` by locust's grammar (a ValueError for anything else)."""
    if re.fullmatch(r"\d+", text):
        return int(text)
    parts = _GRAMMAR.fullmatch(text)
    if not text or parts is None:
        raise ValueError("Invalid time span format. Valid formats: 20, 20s, 3m, 2h, 1h20m, 3h30m10s, etc.")
    hours, minutes, seconds = (int(p or 0) for p in parts.groups())
    return hours * 3600 + minutes * 60 + seconds


def _locusts_parser() -> Callable[[str], int] | None:
    """``locust.util.timespan.parse_timespan``, loaded without importing locust; None without locust."""
    try:
        spec = importlib.util.find_spec("locust")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "util" / "timespan.py"
    loaded = importlib.util.spec_from_file_location("_locust_timespan", path)
    if not path.is_file() or loaded is None or loaded.loader is None:
        return None
    module = importlib.util.module_from_spec(loaded)
    loaded.loader.exec_module(module)
    return getattr(module, "parse_timespan", None)


def run_seconds(text: str) -> int:
    """The seconds of run time ``text`` as locust reads it; a ValueError where locust would refuse it."""
    parse = _locusts_parser() or _grammar
    return int(parse(text))
