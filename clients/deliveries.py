"""What ``python -m clients.rider --deliver`` does with the orders it is given: report each
one's steps, a pause apart, once each, whatever the connection goes through.

Per order it keeps where the order stands (across connections: the server's last word, or
what this client reported since), the task reporting its steps, and the last step sent on the
current connection. The server's word (a ``route`` frame, sent on every connect and after a
gap) wins over what the client believes it reported, since a report may have been lost with a
connection, with one exception: a report sent on this connection moments ago
(``IN_FLIGHT_S``) may not have been read yet. The server reads a connection's messages in
order and answers each refused one with an ``error``, so a ``route`` that soon behind such a
report was most likely composed before the server read it, and the step is not sent again.
(Later, a ``route`` behind it is the server's word: the order may have been taken back and
handed back meanwhile.) An order that leaves this rider (cancelled, failed, taken back, or
gone from a ``route``) is forgotten: handed back later, it is delivered from the start.
"""
from __future__ import annotations

import asyncio
from typing import Any, Protocol

STEPS = ("at_pickup", "picked_up", "at_dropoff", "delivered")
# Frames that take an order from this rider, and how the client says so.
LEFT = {"order_cancelled": "cancelled", "order_failed": "failed", "unassigned": "taken back"}
IN_FLIGHT_S = 3.0  # how long a report sent on this connection may be unread by the server


class Reporter(Protocol):
    async def progress(self, order_id: str, step: str) -> None: ...


def progress(status: str | None) -> int:
    """How far along ``STEPS`` a status is (-1 before the first step)."""
    return STEPS.index(status) if status in STEPS else -1


def _orders(frame: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``orders`` of an ``assigned`` or ``route`` frame that name an order; any other entry
    (the server never sends one) is said on stderr and left out."""
    from clients.cli_common import note

    orders = frame.get("orders")
    if not isinstance(orders, list):
        note(f"the server sent {frame.get('type')} without a list of orders; ignored")
        return []
    named = [o for o in orders if isinstance(o, dict) and isinstance(o.get("order_id"), str)]
    if len(named) < len(orders):
        note(f"the server sent {frame.get('type')} with {len(orders) - len(named)} order(s) without an order_id; "
             "those are ignored")
    return named


class Deliveries:
    """One connection's view of the orders to deliver; ``reported`` outlives the connection."""

    def __init__(self, rider: Reporter, pause: float, reported: dict[str, str | None]) -> None:
        self.rider, self.pause, self.reported = rider, pause, reported
        self.tasks: dict[str, asyncio.Task[None]] = {}
        # the last step sent on this connection and not refused, and when (loop time)
        self.sent_here: dict[str, tuple[str, float]] = {}

    def on_frame(self, frame: dict[str, Any]) -> None:
        """Act on a frame from the server: ``assigned``, ``route``, an order leaving, a refusal."""
        from clients.cli_common import refused_action

        kind = frame.get("type")
        if kind == "assigned":
            for o in _orders(frame):
                self.reported.setdefault(o["order_id"], None)
                self._start(o["order_id"])
        elif kind == "route":
            self._route({o["order_id"]: o.get("status") for o in _orders(frame)})
        elif kind in LEFT and isinstance(frame.get("order_id"), str):
            self._left(frame)
        elif (refused := refused_action(frame)) is not None:
            step, oid = refused
            self._refused(oid, step, frame.get("code"))

    def stop(self) -> None:
        """Stop every report (the connection is going)."""
        for task in self.tasks.values():
            task.cancel()

    def _route(self, orders: dict[str, str | None]) -> None:
        for oid in [oid for oid in self.reported if oid not in orders]:
            self._forget(oid)  # cancelled or taken back meanwhile
        now = asyncio.get_running_loop().time()
        for oid, status in orders.items():
            step, sent_at = self.sent_here.get(oid, (None, 0.0))
            if progress(status) < progress(step) and now - sent_at < IN_FLIGHT_S:
                continue  # the server has not read this connection's report yet
            if progress(status) < progress(self.reported.get(oid)):
                self._stop_task(oid)  # a report was lost: carry on from the server's word
            self.reported[oid] = status
            self._start(oid)

    def _left(self, frame: dict[str, Any]) -> None:
        from clients.cli_common import note

        oid = frame["order_id"]
        if oid not in self.reported:
            return
        self._forget(oid)
        why = f": {frame['reason']}" if isinstance(frame.get("reason"), str) else ""
        note(f"order {oid} {LEFT[frame['type']]} by the {frame.get('by') or 'server'}{why}; no longer reporting it")

    def _refused(self, oid: str, step: str, code: Any) -> None:
        """A step the server refused. For a moment's trouble (Redis unreachable, too many
        messages) report it again, and the ones after it, once a pause has passed; of several
        steps refused (sent before the first refusal came back), the earliest decides where to
        start again. Either way nothing sent here is trusted over the next ``route``."""
        from clients.cli_common import RETRY_CODES, note

        self.sent_here.pop(oid, None)
        if code not in RETRY_CODES or oid not in self.reported or step not in STEPS:
            return
        self._stop_task(oid)
        before = STEPS[STEPS.index(step) - 1] if STEPS.index(step) else None
        if progress(self.reported[oid]) > progress(before):
            self.reported[oid] = before
        note(f"reporting {step} for {oid} again in {max(self.pause, 1.0):g} s")
        self._start(oid, max(self.pause, 1.0))

    def _start(self, oid: str, pause: float | None = None) -> None:
        """One reporting task per order, never two."""
        if oid not in self.tasks or self.tasks[oid].done():
            self.tasks[oid] = asyncio.ensure_future(self._deliver(oid, self.pause if pause is None else pause))

    def _stop_task(self, oid: str) -> None:
        task = self.tasks.pop(oid, None)
        if task is not None:
            task.cancel()

    def _forget(self, oid: str) -> None:
        self._stop_task(oid)
        self.reported.pop(oid, None)
        self.sent_here.pop(oid, None)

    async def _deliver(self, oid: str, pause: float) -> None:
        """Report, ``pause`` seconds apart, the order's steps after where it stands."""
        from clients.cli_common import note

        for step in STEPS:
            if progress(self.reported.get(oid)) >= STEPS.index(step):
                continue
            await asyncio.sleep(pause)
            await self.rider.progress(oid, step)
            self.reported[oid] = step
            self.sent_here[oid] = (step, asyncio.get_running_loop().time())
            note(f"sent {step} for {oid}")  # (a refusal, if any, is its own line)


if __name__ == "__main__":  # (run as a module it would do nothing, silently)
    import sys

    print("clients.deliveries is a library module of python -m clients.rider --deliver, not a command", file=sys.stderr)
    sys.exit(2)
