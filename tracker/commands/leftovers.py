"""End the orders a run left unfinished on a server, as its operator, over the public HTTP API.

A load test (``loadtests/cleanup.py``) or a live replay (``tracker replay --live --server``)
creates orders on a server real riders may use. Once the run is over, each of its orders that
is not finished is cancelled (before pickup) or, food on the road, ended as ``failed`` (cancel
refuses those), with the run's reason: no test order is left for real riders to be offered.
"""
from __future__ import annotations

import asyncio
import ssl
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import httpx

from tracker.auth import issue_token
from tracker.orders.machine import FINAL, ON_THE_ROAD

ATTEMPTS = 3  # reads of an order that keeps changing (a real rider moving it on) before giving up
GIVE_UP_AFTER = 5  # orders failing in a row (the server gone, hung or refusing) that stop the ending
TIMEOUT_S = 10.0  # one request's wait


@dataclass
class Ending:
    """What became of a run's orders: counts by outcome and why any could not be ended."""

    listed: int = 0  # the run's order ids (some may never have been created)
    # cancelled, failed, finished, missing, not ended (an error), not tried (given up before)
    outcomes: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)

    @property
    def ended(self) -> int:
        """Orders this cleanup cancelled or failed."""
        return self.outcomes["cancelled"] + self.outcomes["failed"]

    @property
    def unresolved(self) -> int:
        """Orders that may still be open: not ended after an error, or not tried once it gave up."""
        return self.outcomes["not ended"] + self.outcomes["not tried"]


async def end_order(client: httpx.AsyncClient, oid: str, reason: str) -> str:
    """End ``oid`` unless it is finished; returns ``cancelled``, ``failed``, ``finished`` or
    ``missing`` (never created); raises RuntimeError with the server's answer when it cannot."""
    for _ in range(ATTEMPTS):
        got = await client.get(f"/v1/orders/{oid}")
        if got.status_code == 404:
            return "missing"
        if not got.is_success:
            raise RuntimeError(f"{got.status_code} {got.text[:200]}")
        status = got.json()["status"]
        if status in FINAL:
            return "finished"
        action = "fail" if status in ON_THE_ROAD else "cancel"
        done = await client.post(f"/v1/orders/{oid}/{action}", json={"reason": reason})
        if done.is_success:
            return "failed" if action == "fail" else "cancelled"
        if done.status_code != 409:  # 409: it moved on meanwhile (picked up, delivered): read it again
            raise RuntimeError(f"{done.status_code} {done.text[:200]}")
    raise RuntimeError(f"still changing after {ATTEMPTS} attempts")


def end_orders(base_url: str, secret: str, order_ids: Iterable[str], reason: str, workers: int = 8,
               verify: ssl.SSLContext | bool = True) -> Ending:
    """End every unfinished order of ``order_ids`` on the server at ``base_url``, as the operator
    (a token signed with ``secret``), ``workers`` at a time; after :data:`GIVE_UP_AFTER` failures
    in a row the rest are not tried (``not tried``), instead of a timeout each. Ctrl-C stops it
    at once (KeyboardInterrupt, no request left running). ``verify``: how httpx checks an https
    server's certificate (an SSL context, or False not to)."""
    return asyncio.run(_end_all(base_url, secret, list(dict.fromkeys(order_ids)), reason, workers, verify))


async def _end_all(base_url: str, secret: str, ids: list[str], reason: str, workers: int,
                   verify: ssl.SSLContext | bool) -> Ending:
    ending = Ending(listed=len(ids))
    if not ids:
        return ending
    headers = {"Authorization": "Bearer " + issue_token(secret, "operator", "run-cleanup", 3600)}
    turns = asyncio.Semaphore(workers)
    failing = 0  # in a row

    async def one(client: httpx.AsyncClient, oid: str) -> str:
        nonlocal failing
        async with turns:
            if failing >= GIVE_UP_AFTER:
                return "not tried"
            try:
                outcome = await end_order(client, oid, reason)
            except (httpx.HTTPError, RuntimeError, ValueError) as exc:
                failing += 1
                ending.errors.append(f"{oid}: {str(exc) or type(exc).__name__}")
                return "not ended"
            failing = 0
            return outcome

    async with httpx.AsyncClient(base_url=base_url.rstrip("/"), headers=headers, timeout=TIMEOUT_S,
                                 verify=verify) as client:
        ending.outcomes.update(await asyncio.gather(*(one(client, oid) for oid in ids)))
    return ending
