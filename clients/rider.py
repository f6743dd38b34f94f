"""A rider app in a few lines: stream fixes, follow a path, answer offers, report progress.

    async with await RiderClient.connect("ws://127.0.0.1:8000", token) as rider:
        await rider.location(52.52, 13.40)
        offer = await rider.expect("offer")
        await rider.accept(offer["offer_id"])

From the command line (``python -m clients.rider --help``, or ``python clients/rider.py``)
it connects one rider, streams a position, prints every frame and answers offers, and connects
again when the server goes away (a restart, 1001) after it was connected, or turns it away
while full (1013, or HTTP 503 ``over_capacity`` at the handshake), or cuts it off for sending
too fast (1008 ``rate_limited``, after the pause the server asks for). Fixes go as a phone app
sends them over a bad network (:class:`FixSender`): never piled into a link that is not
draining, the newest position replacing one still waiting::

    python -m clients.rider --token "$(tracker token --role rider --sub r1)" --lat 52.52 --lng 13.405 --accept
"""
from __future__ import annotations

import sys

if not __package__:  # run as a script (python clients/rider.py): import the package, not the folder
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import asyncio
import math
from typing import Any, Awaitable, Iterable

from clients.deliveries import Deliveries
from clients.jsonsocket import BadFrame, JsonSocket


class RiderClient(JsonSocket):
    """One rider's connection to ``/v1/ws/rider``."""

    @classmethod
    async def connect(cls, base_url: str, token: str, **kwargs: Any) -> "RiderClient":
        """Open ``/v1/ws/rider`` on ``base_url`` (``ws://host:port``)."""
        sock = await JsonSocket.open(base_url.rstrip("/") + "/v1/ws/rider", token, **kwargs)
        return cls(sock.ws)

    async def location(self, lat: float, lng: float, **extra: Any) -> None:
        """Send one fix (``speed``, ``heading``, ``accuracy``, ``ts`` optional)."""
        await self.send({"type": "location", "lat": lat, "lng": lng, **extra})

    async def availability(self, available: bool, shift_end: int | None = None,
                           shift_start: int | None = None) -> None:
        """Take offers or not; a shift's end and an announced, later start (server ms)."""
        msg: dict[str, Any] = {"type": "availability", "available": available}
        if shift_end is not None:
            msg["shift_end"] = shift_end
        if shift_start is not None:
            msg["shift_start"] = shift_start
        await self.send(msg)

    async def accept(self, offer_id: str) -> None:
        await self.send({"type": "accept", "offer_id": offer_id})

    async def decline(self, offer_id: str) -> None:
        await self.send({"type": "decline", "offer_id": offer_id})

    async def progress(self, order_id: str, step: str) -> None:
        """Report a step of one order; a refusal comes back as an ``error`` whose ``ref`` is
        ``"<step> <order_id>"``."""
        await self.send({"type": "progress", "order_id": order_id, "step": step, "id": f"{step} {order_id}"})

    async def release(self, order_id: str, reason: str | None = None) -> None:
        """Hand an accepted order back before pickup; dispatch offers it to another rider."""
        msg: dict[str, Any] = {"type": "release", "order_id": order_id}
        if reason is not None:
            msg["reason"] = reason
        await self.send(msg)

    async def follow(self, path: Iterable[tuple[float, float]], rate_hz: float = 1.0) -> None:
        """Send one fix per point of ``path`` at ``rate_hz``."""
        for lat, lng in path:
            await self.location(lat, lng)
            await asyncio.sleep(1.0 / rate_hz)


class FixSender:
    """Sends a rider's newest position the way a phone app does over a bad network: one fix in
    flight at most, never a backlog.

    :meth:`put` gives the newest position; :meth:`run` sends it, then a WebSocket ping, and
    sends nothing more until that ping's pong is back, i.e. until the link has delivered the
    fix. Positions put meanwhile replace the one waiting (coalesced) instead of queueing behind
    it: a link that stalls holds one fix, and when it flows again the newest position goes,
    not every fix taken meanwhile in one burst (which the server would mostly refuse for its
    rate). The WebSocket library cannot tell: ``send`` returns at once and its write buffer
    stays empty while the kernel takes a stalled link's bytes, hundreds of KiB of them. After
    a ``rate_limited`` refusal of a fix nothing is sent until the server takes fixes again
    (:meth:`back_off`). A connection that goes ends :meth:`run` with ``ConnectionClosed``.
    """

    NOTE_AFTER_S = 2.0  # a link that held a fix this long is said on stderr when it drains

    def __init__(self, rider: RiderClient) -> None:
        self.rider = rider
        self.pending: tuple[float, float] | None = None  # the newest position, not sent yet
        self.replaced = 0  # positions never sent since the last one went: a newer one took their place
        self._ready = asyncio.Event()
        self._resume_at = 0.0  # loop time before which no fix is sent (after rate_limited)

    def put(self, lat: float, lng: float) -> None:
        """The rider's newest position: sent as soon as the link takes it, unless a newer one comes first."""
        if self.pending is not None:
            self.replaced += 1
        self.pending = (lat, lng)
        self._ready.set()

    def back_off(self, seconds: float) -> None:
        """Send no fix for ``seconds`` (the server refused one as ``rate_limited``)."""
        loop = asyncio.get_running_loop()
        self._resume_at = max(self._resume_at, loop.time() + seconds)

    async def run(self) -> None:
        from clients.cli_common import note

        loop = asyncio.get_running_loop()
        pong: Awaitable[float] | None = None  # the answer to the ping that followed the last fix
        sent_at = loop.time()
        while True:
            await self._ready.wait()
            if pong is not None:
                await pong  # the link delivered the last fix (ConnectionClosed if it went)
                pong = None
            while (pause := self._resume_at - loop.time()) > 0:
                await asyncio.sleep(pause)
            self._ready.clear()
            assert self.pending is not None
            (lat, lng), self.pending = self.pending, None
            replaced, self.replaced = self.replaced, 0
            await self.rider.location(lat, lng)
            held, sent_at = loop.time() - sent_at, loop.time()
            pong = await self.rider.ws.ping()
            if replaced and held >= self.NOTE_AFTER_S:
                note(f"the link took no fix for {held:.1f} s; sent the newest position, {lat:.6f},{lng:.6f}, "
                     f"in place of {replaced} not sent")


PROG = "python -m clients.rider"
METRES_PER_DEGREE = 111_320.0
DEFAULT_SPEED_M_S = 4.0  # --move's pace
DEFAULT_HEADING_DEG = 90.0  # --move's direction: east
MIN_BACK_OFF_S = 1.0  # the least pause in fixes after a rate_limited refusal


def build_parser() -> argparse.ArgumentParser:
    from clients.cli_common import add_connection_args

    p = argparse.ArgumentParser(
        prog=PROG,
        description="Connect one rider to /v1/ws/rider, stream its position, print every frame the server "
                    "sends (one JSON line each on stdout; what the rider does goes to stderr as '# ...'), "
                    "and answer offers.",
        epilog="Example, beside the README's order o1: %(prog)s --token \"$(tracker token --role rider --sub r1)\" "
               "--lat 52.5201 --lng 13.4051 --accept --deliver 5")
    add_connection_args(p, "rider", "r1")
    p.add_argument("--lat", type=float, help="stream this position (with --lng); without it the rider sends no fixes "
                                             "and dispatch never offers it anything")
    p.add_argument("--lng", type=float, help="see --lat")
    p.add_argument("--every", type=float, default=2.0, metavar="SECONDS",
                   help="seconds between fixes (default 2; the server forgets a rider after TRACKER_STALE_AFTER_S, 30 s of "
                        "its clock, without one: less real time on a server whose clock runs faster)")
    p.add_argument("--move", action="store_true", help="move slowly instead of standing still (see --speed, --heading)")
    p.add_argument("--speed", type=float, metavar="M_PER_S", help="with --move: metres a second (default 4)")
    p.add_argument("--heading", type=float, metavar="DEGREES",
                   help="with --move: direction, degrees clockwise from north (default 90, east)")
    answer = p.add_mutually_exclusive_group()
    answer.add_argument("--accept", action="store_true", help="accept every offer (default: print it and let it expire)")
    answer.add_argument("--decline", action="store_true", help="decline every offer")
    p.add_argument("--deliver", type=float, metavar="SECONDS",
                   help="after an assignment, report at_pickup, picked_up, at_dropoff, delivered this many seconds apart")
    p.add_argument("--unavailable", action="store_true",
                   help="tell the server this rider takes no offers (without it, the rider says it takes them)")
    return p


def _step(lat: float, lng: float, metres: float, heading_deg: float) -> tuple[float, float]:
    h = math.radians(heading_deg)
    lat2 = lat + metres * math.cos(h) / METRES_PER_DEGREE
    lng2 = lng + metres * math.sin(h) / (METRES_PER_DEGREE * max(0.01, math.cos(math.radians(lat))))
    return max(-90.0, min(90.0, lat2)), (lng2 + 180.0) % 360.0 - 180.0


def _position(args: argparse.Namespace, started: float) -> tuple[float, float]:
    """Where the rider is now (loop time ``started``: when the client started): it moves on at
    ``--speed`` whatever the connection does, and is there again after a reconnect."""
    if not args.move:
        return args.lat, args.lng
    moving = asyncio.get_running_loop().time() - started
    return _step(args.lat, args.lng, args.speed * moving, args.heading)


async def _stream(sender: FixSender, args: argparse.Namespace, started: float) -> None:
    """Take a position every ``--every`` seconds (a phone's GPS); the sender sends the newest."""
    while True:
        sender.put(*_position(args, started))
        await asyncio.sleep(args.every)


def _refuses_a_fix(frame: dict[str, Any]) -> float | None:
    """The pause the server asks for (seconds) when ``frame`` refuses a fix as ``rate_limited``
    (an error without ``ref``: this client's fixes carry no ``id``); else ``None``."""
    if frame.get("type") != "error" or frame.get("code") != "rate_limited" or "ref" in frame:
        return None
    retry_ms = frame.get("retry_after_ms")
    retry_s = retry_ms / 1000 if isinstance(retry_ms, (int, float)) and math.isfinite(retry_ms) else 0.0
    return max(MIN_BACK_OFF_S, min(retry_s, 60.0))


async def _main(args: argparse.Namespace) -> None:
    from clients.cli_common import keep_connected

    loop = asyncio.get_running_loop()
    deadline = None if args.duration is None else loop.time() + args.duration
    reported: dict[str, str | None] = {}  # where each order stands, across connections
    started = loop.time()  # (where a moving rider is: _position)
    await keep_connected(lambda: _session(args, deadline, reported, started), deadline, args.servers)


async def _session(args: argparse.Namespace, deadline: float | None, reported: dict[str, str | None],
                   started: float) -> None:
    """One connection: until the deadline, or until the server closes it (then a new one
    starts with the server's ``route`` frame, and ``--deliver`` carries on from there)."""
    from clients.cli_common import note, refused_action, remaining, show

    background: set[asyncio.Task[None]] = set()
    async with await RiderClient.connect(args.servers.current, args.token) as rider:
        deliveries = Deliveries(rider, args.deliver or 0.0, reported)
        note(f"connected to {args.servers.current}/v1/ws/rider")
        # Said on every connection, either way: a rider that ran with --unavailable once is not
        # left off duty by the server's record when started without it.
        await rider.availability(not args.unavailable)
        sender: FixSender | None = None
        if args.lat is not None:
            sender = FixSender(rider)
            background.add(asyncio.ensure_future(_stream(sender, args, started)))
            background.add(asyncio.ensure_future(sender.run()))
            note(f"streaming fixes from {args.lat:.6f},{args.lng:.6f} every {args.every:g} s"
                 + (f", moving at {args.speed:g} m/s heading {args.heading:g}" if args.move else ""))
        try:
            while (left := remaining(deadline)) > 0:
                for task in [t for t in (*background, *deliveries.tasks.values()) if t.done()]:
                    background.discard(task)
                    task.result()  # a failed stream or report (the connection went) ends this connection
                try:
                    frame = await rider.recv(timeout=min(left, 1.0))
                except asyncio.TimeoutError:
                    continue
                except BadFrame as exc:
                    note(f"{exc}; ignored")
                    continue
                show(frame)
                if sender is not None and (back_off := _refuses_a_fix(frame)) is not None:
                    sender.back_off(back_off)  # (the frame is on stdout; the next fix waits)
                if frame.get("type") == "offer":
                    offer_id = frame.get("offer_id")
                    if not (args.accept or args.decline):
                        continue
                    if not isinstance(offer_id, str):
                        note("the server sent an offer without an offer_id; it cannot be answered, so it is ignored")
                    elif args.accept:
                        await rider.accept(offer_id)
                        note(f"accepted offer {offer_id}")
                    else:
                        await rider.decline(offer_id)
                        note(f"declined offer {offer_id}")
                elif args.deliver is not None:
                    deliveries.on_frame(frame)
                else:
                    refused_action(frame)  # (said on stderr)
        finally:
            deliveries.stop()
            for task in background:
                task.cancel()


def main(argv: list[str] | None = None) -> int:
    from clients.cli_common import run

    args = build_parser().parse_args(argv)
    if (args.lat is None) != (args.lng is None):
        print(f"{PROG}: give both --lat and --lng", file=sys.stderr)
        return 2
    if args.lat is not None and not (-90 <= args.lat <= 90 and -180 <= args.lng <= 180):
        print(f"{PROG}: --lat must be in [-90, 90] and --lng in [-180, 180]", file=sys.stderr)
        return 2
    given = [flag for flag, value in (("--speed", args.speed), ("--heading", args.heading)) if value is not None]
    if given and not args.move:  # (it would stand still, the flag quietly ignored)
        print(f"{PROG}: {' and '.join(given)} {'work' if len(given) > 1 else 'works'} only with --move (without it the rider "
              "stands still)", file=sys.stderr)
        return 2
    args.speed = DEFAULT_SPEED_M_S if args.speed is None else args.speed
    args.heading = DEFAULT_HEADING_DEG if args.heading is None else args.heading
    finite = all(math.isfinite(v) for v in (args.every, args.speed, args.heading, args.deliver or 0.0))
    if not finite or not args.every > 0 or not args.speed >= 0 or (args.deliver is not None and not args.deliver >= 0):
        print(f"{PROG}: --every must be a positive number, --speed and --deliver numbers not negative, "
              "--heading a number", file=sys.stderr)
        return 2
    return run(PROG, args, _main)


if __name__ == "__main__":
    raise SystemExit(main())
