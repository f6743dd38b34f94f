"""End a load test's unfinished orders once it is over, over the public HTTP API.

The locustfile notes every order id in ``LOADTEST_ORDERS`` (one a line, from every worker
process) before placing it. :func:`end_run_orders` reads the file back and, for each order of
the run that is not finished, cancels it (before pickup) or, food on the road, ends it as
``failed`` (cancel refuses those), with :data:`REASON`: no test order is left for real riders.
"""
from __future__ import annotations

import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tracker.auth import issue_token
from tracker.orders.machine import FINAL, ON_THE_ROAD

REASON = "load test ended"
ATTEMPTS = 3  # reads of an order that keeps changing (a real rider moving it on) before giving up


@dataclass
class Ending:
    """What became of a run's orders: counts by outcome and why any could not be ended."""

    listed: int = 0  # the run's order ids in the file (some may never have been created)
    outcomes: Counter[str] = field(default_factory=Counter)  # cancelled, failed, finished, missing, not ended
    errors: list[str] = field(default_factory=list)

    @property
    def ended(self) -> int:
        """Orders this cleanup cancelled or failed."""
        return self.outcomes["cancelled"] + self.outcomes["failed"]


def run_order_ids(path: Path, run: str) -> list[str]:
    """The distinct order ids of run ``run`` in ``path``: ``lt-<kind><run>-<pid>-<n>``, as the
    locustfile's ``unique_id`` makes them (other lines are ignored)."""
    if not path.exists():
        return []
    pattern = re.compile(rf"lt-[a-z]+{re.escape(run)}-\d+-\d+")
    return list(dict.fromkeys(line for line in path.read_text().split() if pattern.fullmatch(line)))


def end_order(client: httpx.Client, oid: str) -> str:
    """End ``oid`` unless it is finished; returns ``cancelled``, ``failed``, ``finished`` or
    ``missing`` (never created); raises RuntimeError with the server's answer when it cannot."""
    for _ in range(ATTEMPTS):
        got = client.get(f"/v1/orders/{oid}")
        if got.status_code == 404:
            return "missing"
        if not got.is_success:
            raise RuntimeError(f"{got.status_code} {got.text[:200]}")
        status = got.json()["status"]
        if status in FINAL:
            return "finished"
        action = "fail" if status in ON_THE_ROAD else "cancel"
        done = client.post(f"/v1/orders/{oid}/{action}", json={"reason": REASON})
        if done.is_success:
            return "failed" if action == "fail" else "cancelled"
        if done.status_code != 409:  # 409: it moved on meanwhile (picked up, delivered): read it again
            raise RuntimeError(f"{done.status_code} {done.text[:200]}")
    raise RuntimeError(f"still changing after {ATTEMPTS} attempts")


def end_run_orders(host: str, secret: str, path: Path, run: str, workers: int = 8) -> Ending:
    """End every unfinished order of run ``run`` listed in ``path`` on the server at ``host``, as
    the operator (a token signed with ``secret``)."""
    ids = run_order_ids(path, run)
    ending = Ending(listed=len(ids))
    if not ids:
        return ending
    headers = {"Authorization": "Bearer " + issue_token(secret, "operator", "loadtest-cleanup", 3600)}

    def one(oid: str) -> str:
        try:
            return end_order(client, oid)
        except (httpx.HTTPError, RuntimeError, ValueError) as exc:
            ending.errors.append(f"{oid}: {exc}")
            return "not ended"

    with httpx.Client(base_url=host.rstrip("/"), headers=headers, timeout=10) as client, \
            ThreadPoolExecutor(workers) as pool:
        ending.outcomes.update(pool.map(one, ids))
    return ending
