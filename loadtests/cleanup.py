"""End a load test's unfinished orders once it is over, over the public HTTP API.

The locustfile notes every order id in ``LOADTEST_ORDERS`` (one a line, from every worker
process) before placing it. :func:`end_run_orders` reads the file back and ends each order of
the run that is not finished (:mod:`tracker.commands.leftovers`: cancelled before pickup,
``failed`` once the food is on the road) with :data:`REASON`: no test order is left for real riders.
"""
from __future__ import annotations

import re
from pathlib import Path

from tracker.commands.leftovers import Ending, end_orders

__all__ = ["REASON", "Ending", "end_run_orders", "run_order_ids"]

REASON = "load test ended"


def run_order_ids(path: Path, run: str) -> list[str]:
    """The distinct order ids of run ``run`` in ``path``: ``lt-<kind><run>-<pid>-<n>``, as the
    locustfile's ``unique_id`` makes them (other lines are ignored)."""
    if not path.exists():
        return []
    pattern = re.compile(rf"lt-[a-z]+{re.escape(run)}-\d+-\d+")
    return list(dict.fromkeys(line for line in path.read_text().split() if pattern.fullmatch(line)))


def end_run_orders(host: str, secret: str, path: Path, run: str, workers: int = 8) -> Ending:
    """End every unfinished order of run ``run`` listed in ``path`` on the server at ``host``, as
    the operator (a token signed with ``secret``)."""
    return end_orders(host, secret, run_order_ids(path, run), REASON, workers)


if __name__ == "__main__":  # (run as a script it would do nothing, silently)
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from loadtests.arguments import library_module

    library_module("loadtests/cleanup.py", "loadtests/run.py (which ends a run's orders with it)")
