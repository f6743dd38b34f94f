"""End a load test's unfinished orders once it is over, over the public HTTP API.

The locustfile notes every order id in ``LOADTEST_ORDERS`` (one a line, from every worker
process) before placing it, and ``<id> refused <status>`` when the server answered its create
with a 4xx (nothing was created). :func:`end_run_orders` reads the file back and ends each order
of the run that is not finished and not refused (:mod:`tracker.commands.leftovers`: cancelled
before pickup, ``failed`` once the food is on the road) with :data:`REASON`: no test order is
left for real riders. :func:`placed` says how many the run placed, or that it is not known.
"""
from __future__ import annotations

import re
import ssl
from dataclasses import dataclass, field
from pathlib import Path

from tracker.commands.leftovers import Ending, end_orders

__all__ = ["REASON", "Ending", "RunOrders", "end_run_orders", "placed", "read_run_orders", "run_order_ids"]

REASON = "load test ended"


@dataclass
class RunOrders:
    """A run's order ids as its users noted them: every create tried, and those the server refused."""

    attempted: list[str] = field(default_factory=list)
    refused: set[str] = field(default_factory=set)

    @property
    def to_check(self) -> list[str]:
        """The ids that may be orders on the server: tried and not refused (a lost answer included)."""
        return [oid for oid in self.attempted if oid not in self.refused]


def read_run_orders(path: Path, run: str) -> RunOrders:
    """Run ``run``'s order ids in ``path``: ``lt-<kind><run>-<pid>-<n>`` as the locustfile's
    ``unique_id`` makes them (other lines ignored), and those noted ``refused``."""
    orders = RunOrders()
    if not path.exists():
        return orders
    pattern = re.compile(rf"lt-[a-z]+{re.escape(run)}-\d+-\d+")
    for line in path.read_text().splitlines():
        words = line.split()
        if words and pattern.fullmatch(words[0]):
            orders.attempted.append(words[0])
            if words[1:2] == ["refused"]:
                orders.refused.add(words[0])
    orders.attempted = list(dict.fromkeys(orders.attempted))
    return orders


def run_order_ids(path: Path, run: str) -> list[str]:
    """The distinct order ids of run ``run`` in ``path`` that may be orders on the server."""
    return read_run_orders(path, run).to_check


def end_run_orders(host: str, secret: str, path: Path, run: str, workers: int = 8,
                   verify: ssl.SSLContext | bool = True) -> Ending:
    """End every unfinished order of run ``run`` listed in ``path`` on the server at ``host``, as
    the operator (a token signed with ``secret``; ``verify``: how to check an https server)."""
    return end_orders(host, secret, run_order_ids(path, run), REASON, workers, verify=verify)


def placed(ending: Ending, orders: RunOrders, listing: str) -> int | str:
    """How many orders the run placed: exact when the cleanup could check every order that may
    exist (refused creates left none); otherwise not known, said as the range it lies in (those
    found, up to those found and those not checked) and why, naming the ``listing`` file."""
    found = ending.listed - ending.outcomes["missing"] - ending.unresolved
    if not ending.unresolved:
        return found
    return (f"unknown, {found} to {found + ending.unresolved} ({ending.unresolved} of the {len(orders.attempted)} "
            f"it tried could not be checked; see {listing})")


if __name__ == "__main__":  # (run as a script it would do nothing, silently)
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from loadtests.arguments import library_module

    library_module("loadtests/cleanup.py", "loadtests/run.py (which ends a run's orders with it)")
