"""A customer's phone: watch one order, resume after a drop with the last event id seen.

    watcher = CustomerClient("ws://127.0.0.1:8000", token, order_id)
    await watcher.connect()
    frame = await watcher.next()      # events, rider_location, resync...
    await watcher.reconnect()         # resumes after watcher.last_event_id

From the command line (``python -m clients.customer --help``, or ``python clients/customer.py``)
it watches one order and prints every frame, one JSON line each::

    python -m clients.customer --token "$(tracker token --role customer --sub o1)" --order-id o1
"""
from __future__ import annotations

import sys

if not __package__:  # run as a script (python clients/customer.py): import the package, not the folder
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import asyncio
from typing import Any
from urllib.parse import urlencode

from clients.jsonsocket import BadFrame, JsonSocket


class CustomerClient:
    """Follows ``/v1/ws/customer`` for one order across reconnects."""

    def __init__(self, base_url: str, token: str, order_id: str) -> None:
        self.base_url, self.token, self.order_id = base_url.rstrip("/"), token, order_id
        self.last_event_id: str | None = None
        self.events: list[dict[str, Any]] = []
        self.sock: JsonSocket | None = None

    def url(self) -> str:
        """The socket URL for the order, resuming after ``last_event_id`` once there is one."""
        query = {"order_id": self.order_id}
        if self.last_event_id:
            query["last_event_id"] = self.last_event_id
        return f"{self.base_url}/v1/ws/customer?{urlencode(query)}"

    async def connect(self) -> "CustomerClient":
        """Open the socket, resuming after ``last_event_id`` if set; returns the client."""
        self.sock = await JsonSocket.open(self.url(), self.token)
        return self

    async def next(self, timeout: float = 10.0) -> dict[str, Any]:
        """The next frame; events are remembered and advance ``last_event_id``."""
        assert self.sock is not None, "connect first"
        frame = await self.sock.recv(timeout)
        if frame.get("type") == "event":
            self.events.append(frame)
            if isinstance(frame.get("id"), str):
                self.last_event_id = frame["id"]
        return frame

    async def order(self) -> dict[str, Any]:
        """The order as it stands now, over HTTP (``GET /v1/orders/{id}``): what to reload after
        a ``resync`` with ``too_many_missed``, when the channel skipped events."""
        import httpx

        base = self.base_url.replace("ws://", "http://", 1).replace("wss://", "https://", 1)
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            resp = await http.get(f"/v1/orders/{self.order_id}", headers={"Authorization": f"Bearer {self.token}"})
            resp.raise_for_status()
            return resp.json()

    async def next_event(self, timeout: float = 10.0) -> dict[str, Any]:
        """The next frame that moves the channel on (``event``, ``resync`` or ``error``), skipping
        ephemeral ones such as ``rider_location``."""
        while True:
            frame = await self.next(timeout)
            if frame.get("type") in ("event", "resync", "error"):
                return frame

    async def reconnect(self) -> "CustomerClient":
        """Close the socket and open a new one that resumes after ``last_event_id``."""
        await self.close()
        return await self.connect()

    async def close(self) -> None:
        """Close the socket, if one is open."""
        if self.sock is not None:
            await self.sock.close()
            self.sock = None


PROG = "python -m clients.customer"


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m clients.customer``."""
    from clients.cli_common import add_connection_args

    p = argparse.ArgumentParser(
        prog=PROG,
        description="Watch one order on /v1/ws/customer and print every frame (its events, the dispatcher's "
                    "estimate while it waits for a rider, the rider's position while one carries it, resyncs), one "
                    "JSON line each on stdout, the history first; after a resync that skipped events, the order as it "
                    "stands then ({\"type\": \"order\", \"order\": ...}, read over HTTP, and read again a pause later "
                    "while the server cannot answer).")
    add_connection_args(p, "customer", "ORDER_ID")
    p.add_argument("--order-id", help="the order to watch (default: the one a customer token names)")
    p.add_argument("--last-event-id", help="resume after this event id instead of replaying the order's history")
    return p


class Reload:
    """The order read again over HTTP after a ``resync`` that skipped events (once after several
    in a row: a resume from far back skips 1,001 events per ``resync``), until it is read:
    a server that cannot answer for now (503, a restart, the network) is asked again, a pause
    apart, while the frames go on; one that refuses (the token revoked or expired meanwhile, the
    order gone) ends the client in one line."""

    def __init__(self, watcher: CustomerClient) -> None:
        self.watcher = watcher
        self.due: float | None = None  # (loop time) when to try; None: nothing to read
        self.pause = 1.0

    def ask(self) -> None:
        """Read the order as soon as possible."""
        self.due, self.pause = 0.0, 1.0

    async def try_now(self) -> None:
        """Read and print the order if it is due; say so, and schedule another try, if it cannot be."""
        import httpx

        from clients.cli_common import CliError, note, show

        loop = asyncio.get_running_loop()
        if self.due is None or loop.time() < self.due:
            return
        try:
            order = await self.watcher.order()
        except httpx.HTTPStatusError as exc:
            status = exc.response.status_code
            why = f"HTTP {status} {_error_text(exc.response)}".rstrip()
            if 400 <= status < 500 and status not in (408, 429):
                raise CliError(f"the server refused to give the order after the channel skipped events: {why}",
                               exit_status=1) from None
        except (httpx.HTTPError, ValueError) as exc:  # (unreachable, or an answer that is not JSON)
            why = str(exc) or type(exc).__name__
        else:
            show({"type": "order", "order": order})
            self.due = None
            return
        note(f"could not read the order over HTTP ({why}); trying again in {self.pause:g} s")
        self.due = loop.time() + self.pause
        self.pause = min(self.pause * 2, 10.0)


def _error_text(response: Any) -> str:
    """``code: message`` of the server's JSON error body, else the start of the body."""
    try:
        err = response.json()["error"]
        return f"{err['code']}: {err['message']}"
    except (ValueError, KeyError, TypeError):
        return " ".join(response.text.split())[:80]


async def _main(args: argparse.Namespace) -> None:
    from clients.cli_common import keep_connected, note, remaining, show

    loop = asyncio.get_running_loop()
    deadline = None if args.duration is None else loop.time() + args.duration
    watcher = CustomerClient(args.servers.current, args.token, args.order_id)
    watcher.last_event_id = args.last_event_id
    reload = Reload(watcher)

    async def session() -> None:  # a new connection resumes after the last event seen
        watcher.base_url = args.servers.current.rstrip("/")
        await watcher.connect()
        note(f"watching order {args.order_id} on {args.servers.current}/v1/ws/customer")
        skipping = False  # the last frame was a skip: another may follow (a resume from far back), read after the last
        try:
            while (left := remaining(deadline)) > 0:
                if not skipping:
                    await reload.try_now()
                try:
                    frame = await watcher.next(timeout=min(left, 1.0))
                except asyncio.TimeoutError:
                    skipping = False
                    continue
                except BadFrame as exc:
                    note(f"{exc}; ignored")
                    continue
                show(frame)
                was_skipping = skipping
                skipping = frame.get("type") == "resync" and frame.get("reason") == "too_many_missed"
                if skipping and not was_skipping:
                    note("the channel skipped events this client missed: the order as it stands now follows")
                if skipping:
                    reload.ask()
        finally:
            await watcher.close()

    await keep_connected(session, deadline, args.servers)


def _order_of(token: str | None) -> str | None:
    """The order a customer token names (its ``sub``), read without checking the signature: the
    server checks it; this only spares the user saying the order twice."""
    import jwt

    try:
        claims = jwt.decode(token or "", options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    sub = claims.get("sub")
    return sub if claims.get("role") == "customer" and isinstance(sub, str) else None


def main(argv: list[str] | None = None) -> int:
    """Run the customer command line on ``argv``; returns the exit status."""
    from clients.cli_common import run

    args = build_parser().parse_args(argv)
    args.order_id = args.order_id or _order_of(args.token)
    if not args.order_id:
        print(f"{PROG}: give --order-id, or a customer token (it names the order it watches)", file=sys.stderr)
        return 2
    return run(PROG, args, _main)


if __name__ == "__main__":
    raise SystemExit(main())
