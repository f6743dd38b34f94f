"""A merchant's kitchen tablet: the feed of its orders, confirm / ready / delay, prompts.

From the command line (``python -m clients.merchant --help``, or ``python clients/merchant.py``)
it prints the merchant's feed, one JSON line a frame, and can confirm and mark orders ready::

    python -m clients.merchant --token "$(tracker token --role merchant --sub m1)" --confirm --ready 60
"""
from __future__ import annotations

import sys

if not __package__:  # run as a script (python clients/merchant.py): import the package, not the folder
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import asyncio
from typing import Any
from urllib.parse import urlencode

from clients.jsonsocket import BadFrame, JsonSocket


class MerchantClient(JsonSocket):
    """One merchant's connection to ``/v1/ws/merchant``."""

    @classmethod
    async def connect(cls, base_url: str, token: str, last_event_id: str | None = None, **kwargs: Any) -> "MerchantClient":
        """Connect to ``/v1/ws/merchant`` at ``base_url``; the feed resumes after ``last_event_id``
        when given."""
        url = base_url.rstrip("/") + "/v1/ws/merchant"
        if last_event_id:
            url += "?" + urlencode({"last_event_id": last_event_id})
        sock = await JsonSocket.open(url, token, **kwargs)
        return cls(sock.ws)

    async def confirm(self, order_id: str) -> None:
        """Confirm ``order_id``: the kitchen takes the order. A refusal comes back as an
        ``error`` whose ``ref`` is ``"confirm <order_id>"``."""
        await self.send({"type": "confirm", "order_id": order_id, "id": f"confirm {order_id}"})

    async def ready(self, order_id: str) -> None:
        """Mark ``order_id``'s food ready. A refusal comes back as an ``error`` whose ``ref`` is
        ``"ready <order_id>"``."""
        await self.send({"type": "ready", "order_id": order_id, "id": f"ready {order_id}"})

    async def delay(self, order_id: str, minutes: float) -> None:
        """Move ``order_id``'s ready estimate to ``minutes`` after the later of now and the current one."""
        await self.send({"type": "delay", "order_id": order_id, "minutes": minutes})

    async def event(self, order_id: str, kind: str, timeout: float = 10.0) -> dict[str, Any]:
        """Wait for the feed event ``kind`` of ``order_id``."""
        return await self.expect(lambda f: f.get("type") == "event" and f.get("order_id") == order_id and f.get("kind") == kind, timeout)


PROG = "python -m clients.merchant"
SETTLE_S = 0.5  # the feed first replays the history: act on an event only if no later one followed it


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m clients.merchant``."""
    from clients.cli_common import add_connection_args

    p = argparse.ArgumentParser(
        prog=PROG,
        description="Connect one merchant's kitchen tablet to /v1/ws/merchant and print its feed (its orders' "
                    "events and kitchen prompts, one JSON line each on stdout, the history first); "
                    "optionally confirm new orders and mark them ready.")
    add_connection_args(p, "merchant", "m1")
    p.add_argument("--confirm", action="store_true", help="confirm every order that is still 'placed'")
    p.add_argument("--ready", type=float, metavar="SECONDS",
                   help="mark each confirmed order ready this many seconds after its confirmation (0: at once)")
    p.add_argument("--last-event-id", help="resume the feed after this event id instead of replaying it all")
    return p


DONE_WITH_FOOD = {"food_ready", "picked_up", "at_dropoff", "delivered", "cancelled", "failed"}
STILL_PLACED = {"placed", "food_delayed"}  # the events an order may have before its kitchen confirms it


class Kitchen:
    """What the command-line kitchen knows across connections: each order's event kinds so far,
    where the feed got to, and the confirm / ready actions it still owes (``order id -> (action,
    when)``, loop time), so a reconnect neither replays the feed nor forgets an action."""

    def __init__(self, last_event_id: str | None) -> None:
        self.seen: dict[str, list[str]] = {}
        self.last_event_id = last_event_id
        self.owed: dict[str, tuple[str, float]] = {}
        self.refused: dict[str, str] = {}  # "<action> <order id>" -> the code of its last refusal
        self.start_over = False  # the feed skipped ahead: read its whole history again

    def skipped_ahead(self) -> None:
        """The server skipped events this kitchen missed (``too_many_missed``): what it saw is
        no longer the whole story, so the next connection reads the feed from its start."""
        self.seen.clear()
        self.last_event_id = None
        self.start_over = True

    def owe(self, order_id: str, action: str, pause: float) -> None:
        """Owe ``action`` on ``order_id``, due ``pause`` seconds from now (``SETTLE_S`` at the soonest)."""
        self.owed[order_id] = (action, asyncio.get_running_loop().time() + max(pause, SETTLE_S))

    def still_due(self, order_id: str, action: str) -> bool:
        """Whether the feed so far still calls for ``action``: a confirm while the last event is
        ``placed`` (perhaps delayed), a ready until the food is ready or the order is past it."""
        kinds = self.seen.get(order_id, [])
        if action == "confirm":
            return "placed" in kinds and STILL_PLACED.issuperset(kinds)
        return not DONE_WITH_FOOD.intersection(kinds)


async def _act_when_due(tablet: MerchantClient, kitchen: Kitchen, order_id: str) -> None:
    """Confirm an order still ``placed``, or mark ready one whose food is not ready yet, when due.

    The action stays owed until the feed shows it done (or moot): one sent just before the
    connection died is sent again by the next connection, if its resumed feed still needs it.
    One the server refused for a moment's trouble (Redis unreachable, too many messages) is
    sent again after a pause (1 s, doubling up to 10 s), unless the feed shows it done by then
    (an answer ``redis_unavailable`` is "not known to be done": Redis may still take it when it
    wakes, and a send again then answers that it was done, ``already``); any other refusal ends it.
    """
    from clients.cli_common import RETRY_CODES, note

    action, due = kitchen.owed[order_id]
    await asyncio.sleep(max(0.0, due - asyncio.get_running_loop().time()))
    pause, ref = 1.0, f"{action} {order_id}"  # (the ref of its refusals)
    while kitchen.still_due(order_id, action):
        kitchen.refused.pop(ref, None)
        await (tablet.confirm(order_id) if action == "confirm" else tablet.ready(order_id))
        note(f"sent {action} for {order_id}")
        while kitchen.still_due(order_id, action) and ref not in kitchen.refused:
            await asyncio.sleep(0.2)  # (cancelled with the connection if the feed never shows it)
        code = kitchen.refused.pop(ref, None)
        if code is None:
            break
        if code == "already":
            break  # (said done by the refusal's own line)
        if code not in RETRY_CODES:
            note(f"not sending {action} for {order_id} again")
            break
        note(f"sending {action} for {order_id} again in {pause:g} s")
        await asyncio.sleep(pause)
        pause = min(pause * 2, 10.0)
    if kitchen.owed.get(order_id, (None, 0.0))[0] == action:
        del kitchen.owed[order_id]


async def _main(args: argparse.Namespace) -> None:
    from clients.cli_common import keep_connected, remaining

    loop = asyncio.get_running_loop()
    deadline = None if args.duration is None else loop.time() + args.duration
    kitchen = Kitchen(args.last_event_id)
    connected_before = False
    while True:
        await keep_connected(lambda: _session(args, deadline, kitchen), deadline, args.servers,
                             connected_before=connected_before)
        if not (kitchen.start_over and remaining(deadline) > 0):
            return
        kitchen.start_over, connected_before = False, True


async def _session(args: argparse.Namespace, deadline: float | None, kitchen: Kitchen) -> None:
    """One connection: until the deadline, or until the server closes it (a new one resumes the
    feed where this one got to, and does what is still owed)."""
    from clients.cli_common import note, refused_action, remaining, show

    pending: set[asyncio.Task[None]] = set()
    async with await MerchantClient.connect(args.servers.current, args.token, last_event_id=kitchen.last_event_id) as tablet:
        note(f"connected to {args.servers.current}/v1/ws/merchant")
        for oid, (action, due) in list(kitchen.owed.items()):  # let the resumed feed catch up first
            kitchen.owed[oid] = (action, max(due, asyncio.get_running_loop().time() + SETTLE_S))
            pending.add(asyncio.ensure_future(_act_when_due(tablet, kitchen, oid)))
        try:
            while (left := remaining(deadline)) > 0:
                for task in [t for t in pending if t.done()]:
                    pending.discard(task)
                    task.result()
                try:
                    frame = await tablet.recv(timeout=min(left, 1.0))
                except asyncio.TimeoutError:
                    continue
                except BadFrame as exc:
                    note(f"{exc}; ignored")
                    continue
                show(frame)
                if refused_action(frame) is not None:
                    # (a press the order had taken already, sent again after an uncertain answer, is done)
                    kitchen.refused[frame["ref"]] = "already" if frame.get("already") is True else str(frame.get("code"))
                    continue
                if frame.get("type") == "resync" and frame.get("reason") == "too_many_missed":
                    note("the feed skipped events this kitchen missed: reading its whole history again")
                    kitchen.skipped_ahead()
                    return
                if frame.get("type") != "event" or not isinstance(frame.get("order_id"), str):
                    continue
                if isinstance(frame.get("id"), str):
                    kitchen.last_event_id = frame["id"]
                oid, kind = frame["order_id"], frame.get("kind", "")
                kitchen.seen.setdefault(oid, []).append(kind)
                if kind == "placed" and args.confirm:
                    kitchen.owe(oid, "confirm", 0)
                elif kind == "confirmed" and args.ready is not None:
                    kitchen.owe(oid, "ready", args.ready)
                else:
                    continue
                pending.add(asyncio.ensure_future(_act_when_due(tablet, kitchen, oid)))
        finally:
            for task in pending:
                task.cancel()


def main(argv: list[str] | None = None) -> int:
    """Run the merchant command line on ``argv``; returns the exit status."""
    from clients.cli_common import run

    args = build_parser().parse_args(argv)
    if args.ready is not None and not 0 <= args.ready < float("inf"):
        print(f"{PROG}: --ready must be a number of seconds, 0 or more", file=sys.stderr)
        return 2
    return run(PROG, args, _main)


if __name__ == "__main__":
    raise SystemExit(main())
