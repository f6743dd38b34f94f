"""What the three client command lines share: server URL and token flags, printing, errors.

Each client prints every frame the server sends as one JSON line on stdout, and what it does
itself (connected, accepted an offer, ...) as ``# ...`` lines on stderr, so stdout stays
machine-readable. Failures are one line on stderr and a non-zero exit, never a traceback.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import signal
import sys
from typing import Any, Awaitable, Callable
from urllib.parse import urlsplit

import orjson
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

DEFAULT_SERVER = "http://127.0.0.1:8000"


def add_connection_args(parser: argparse.ArgumentParser, role: str, sub_hint: str) -> None:
    """Add the ``--server``, ``--token`` and ``--for`` flags; the help names a ``role`` token with
    ``sub_hint`` as its sub."""
    parser.add_argument("--server", default=os.environ.get("TRACKER_URL", DEFAULT_SERVER),
                        help=f"the server's URL, http(s):// or ws(s):// (TRACKER_URL, default {DEFAULT_SERVER}); "
                             "several processes of one deployment separated by commas: a reconnect moves on to "
                             "the next")
    parser.add_argument("--token", default=os.environ.get("TRACKER_TOKEN"),
                        help=f"a {role} token (TRACKER_TOKEN); make one with "
                             f"`tracker token --role {role} --sub {sub_hint}` in the server's folder")
    parser.add_argument("--for", dest="duration", type=float, metavar="SECONDS",
                        help="stop after this many seconds (default: run until Ctrl-C)")


class CliError(Exception):
    """A failure to report as one line; the exit status is 2 (how the client was run) unless
    given (1: the server refused or failed)."""

    def __init__(self, message: str, exit_status: int = 2) -> None:
        super().__init__(message)
        self.exit_status = exit_status


def ws_base(url: str) -> str:
    """The WebSocket base (``ws://`` or ``wss://``, host, port and any path) of a server URL
    given as http(s):// or ws(s)://."""
    parts = urlsplit(url.strip())
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(parts.scheme)
    try:
        parts.port  # noqa: B018 - raises on a port out of range
    except ValueError:
        scheme = None
    if scheme is None or not parts.netloc:
        raise CliError(f"--server must be a URL such as {DEFAULT_SERVER}, not {url!r}")
    return f"{scheme}://{parts.netloc}{parts.path.rstrip('/')}"


class Servers:
    """The server URLs given (as ``ws://`` bases): the client talks to ``current``; when that
    one goes away it moves on to the next (several processes of one deployment)."""

    def __init__(self, urls: list[str]) -> None:
        if not urls:
            raise CliError(f"--server must be a URL such as {DEFAULT_SERVER}")
        self.urls, self._at = urls, 0

    @classmethod
    def parse(cls, text: str) -> "Servers":
        """``--server``: one URL or several separated by commas."""
        return cls([ws_base(u) for u in text.split(",") if u.strip()])

    @property
    def current(self) -> str:
        """The URL the client talks to now."""
        return self.urls[self._at]

    def advance(self) -> str:
        """Move on to the next URL (round the list) and return it."""
        self._at = (self._at + 1) % len(self.urls)
        return self.current


def note(text: str) -> None:
    """Print ``text`` on stderr as a ``# ...`` line (what the client itself does)."""
    print(f"# {text}", file=sys.stderr, flush=True)


def show(frame: dict[str, Any]) -> None:
    """Print ``frame`` on stdout as one JSON line."""
    print(orjson.dumps(frame).decode(), flush=True)


def remaining(deadline: float | None) -> float:
    """Seconds left before ``deadline`` (loop time), or an hour when there is none."""
    if deadline is None:
        return 3600.0
    return deadline - asyncio.get_running_loop().time()


# Closes after which a phone would simply connect again: the server going away (1001: a restart
# or a deploy), an error on its side (1011), a restart or overload (1012, 1013), and a connection
# lost without a close frame (1006); also a 1008 whose reason asks for it (``too_slow: ...;
# reconnect``) and one for sending too fast (``rate_limited: ...``, after a pause: a link that
# stalled may have delivered in one burst what a client sent in good faith). Any other close (a
# refused token, another 1008 policy close) ends the client.
RECONNECT_CODES = frozenset({1001, 1006, 1011, 1012, 1013})
CLOSE_POLICY = 1008
CLOSE_TRY_AGAIN = 1013  # the server is full (over_capacity) or draining for a restart
MAX_BACKOFF_S = 10.0
RATE_LIMITED_PAUSE_S = 10.0  # after a 1008 rate_limited close whose reason does not say how long
RETRY_CODES = ("redis_unavailable", "rate_limited")  # an action refused for these is sent again


def refused_action(frame: dict[str, Any]) -> tuple[str, str] | None:
    """(action, order id) when ``frame`` is the server's refusal of one of this client's actions
    (an ``error`` whose ``ref`` is ``"<action> <order id>"``), said on stderr; else ``None``. A
    refusal because the order took that very action already (``already``) is said as done."""
    ref = frame.get("ref")
    if frame.get("type") != "error" or not isinstance(ref, str) or " " not in ref:
        return None
    action, _, oid = ref.partition(" ")
    if frame.get("code") == "invalid_transition" and frame.get("already") is True:
        # (sent again after an answer that left it unknown whether the first one was done: it was)
        note(f"{action} for {oid} was done already (the order is {frame.get('order_status')} now)")
    else:
        note(f"the server refused {action} for {oid}: {frame.get('code')}: {frame.get('message')}")
    return action, oid


def rate_limited_pause(code: int, reason: str) -> float | None:
    """The pause before connecting again after the server closed the socket for sending too fast
    (1008, reason ``rate_limited: ...``): what the reason asks (``reconnect in N s``), else
    :data:`RATE_LIMITED_PAUSE_S`; ``None`` for any other close."""
    if code != CLOSE_POLICY or not reason.startswith("rate_limited:"):
        return None
    asked = re.search(r"reconnect in (\d+(?:\.\d+)?) s", reason)
    return min(float(asked.group(1)), 300.0) if asked else RATE_LIMITED_PAUSE_S


async def keep_connected(session: Callable[[], Awaitable[None]], deadline: float | None, servers: Servers, *,
                         connected_before: bool = False) -> None:
    """Run ``session`` (one connection to ``servers.current``, until the deadline) and, when the
    server goes away after it connected, connect again with a growing pause (0.5 s up to 10 s),
    until the deadline, each time to the next of ``servers``.

    A server that answers the handshake 503 (full: ``over_capacity``, or without Redis for now)
    or lets the socket in and closes it 1013 is asked again the same way, even the first time.
    A socket closed 1008 ``rate_limited`` (the client sent too fast, or a stalled link delivered
    its messages at once) connects again after the pause the reason asks for (at least; jittered
    x1 to x1.5), else :data:`RATE_LIMITED_PAUSE_S`.
    A first connection that fails on every server, a refused token or another policy close still end
    the client (the caller's :func:`run` reports them); so does a server that stays away past
    the deadline. Pauses are jittered (x0.5 to x1.5). ``connected_before``: this client was
    connected already (it is connecting again on purpose), so no connection is a first one.
    """
    loop = asyncio.get_running_loop()
    connected_once, backoff, unreached = connected_before, 0.5, 0
    while True:
        started = loop.time()
        at_least = 0.0  # the pause the server asked for
        try:
            await session()
            return
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd is not None else 1006
            reason = exc.rcvd.reason if exc.rcvd is not None else ""
            asked = rate_limited_pause(code, reason)
            if code not in RECONNECT_CODES and "reconnect" not in reason and asked is None:  # (1008 too_slow asks to)
                raise
            why = f"{code} {reason}".strip() if exc.rcvd is not None else "1006 no close frame"
            what = "is full or restarting" if code == CLOSE_TRY_AGAIN else "went away"
            if asked is not None:
                what, at_least = "cut this client off for sending too fast", asked * random.uniform(1.0, 1.5)
            connected_once = True
        except (OSError, asyncio.TimeoutError, InvalidHandshake) as exc:
            status = exc.response.status_code if isinstance(exc, InvalidStatus) else None
            if status is not None and status < 500:
                raise  # a token, not an outage
            # It answered: full (over_capacity) or without Redis for now. (A 503 from something
            # else in the way, without our error code, is an outage like any other.)
            code = _error_code(exc) if status == 503 else ""
            busy = code in ("over_capacity", "redis_unavailable")
            unreached = 0 if busy else unreached + 1  # one server up but full: not "every server failed"
            if not busy and not connected_once and unreached >= len(servers.urls):
                raise
            why = f"HTTP 503 {code}" if busy else f"still unreachable: {exc or type(exc).__name__}"
            what = "is busy" if busy else "went away"
            if not busy and not connected_once:  # the first connection: try the next server at once
                note(f"cannot reach {servers.current} ({why}); trying {servers.advance()}")
                continue
        if loop.time() - started > 60:
            backoff = 0.5  # a connection that lasted: start the pauses again
        # Jittered: clients cut off (or turned away) together do not all come back together.
        pause = min(max(at_least, backoff * random.uniform(0.5, 1.5)), remaining(deadline))
        if pause <= 0:
            note(f"the server {what} ({why}) and was not back before the end (--for)")
            return
        target = f" to {servers.advance()}" if len(servers.urls) > 1 else ""
        note(f"the server {what} ({why}); connecting again{target} in {pause:.1f} s")
        await asyncio.sleep(pause)
        backoff = min(backoff * 2, MAX_BACKOFF_S)


def _error_code(exc: InvalidStatus) -> str:
    """The ``code`` of the server's JSON error body of a refused handshake ("" if it has none)."""
    try:
        return str(orjson.loads(exc.response.body or b"{}")["error"]["code"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return ""


async def _stopped_by_sigterm(work: Awaitable[None]) -> None:
    """Run ``work``; SIGTERM (a service manager stopping the client) cancels it like Ctrl-C does,
    so its sockets close with a close frame: a rider stopped that way leaves at once instead of
    counting as a phone that lost its network for the server's stale time."""
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
    except (NotImplementedError, RuntimeError):  # (no signal handlers on this platform or thread)
        pass
    await work


def run(prog: str, args: argparse.Namespace, main: Callable[[argparse.Namespace], Awaitable[None]]) -> int:
    """Run ``main(args)``; turn the usual failures into one line and an exit status."""
    if not args.token:
        print(f"{prog}: give --token (or set TRACKER_TOKEN): see --help for how to make one", file=sys.stderr)
        return 2
    if args.duration is not None and not args.duration > 0:
        print(f"{prog}: --for must be a positive number of seconds", file=sys.stderr)
        return 2
    try:
        args.servers = Servers.parse(args.server)
        asyncio.run(_stopped_by_sigterm(main(args)))
        return 0
    except CliError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        return 130
    except asyncio.CancelledError:  # SIGTERM: the sockets were closed cleanly on the way out
        return 143
    except InvalidStatus as exc:
        status = exc.response.status_code
        body = exc.response.body.decode(errors="replace").strip() if exc.response.body else ""
        hint = " (is the token signed with the server's TRACKER_SECRET, for this role?)" if status in (401, 403) else ""
        print(f"{prog}: the server at {args.server} refused the connection: HTTP {status} {body}{hint}".rstrip(),
              file=sys.stderr)
        return 1
    except ConnectionClosed as exc:
        rcvd = exc.rcvd
        why = f"{rcvd.code} {rcvd.reason}".strip() if rcvd is not None else "without a close frame"
        print(f"{prog}: the server closed the connection: {why}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # stdout closed by the reader (`| head -1`): done, as any filter would be
        try:
            sys.stdout = open(os.devnull, "w")  # (so the interpreter's own flush at exit fails no more)
        except OSError:
            pass
        return 0
    except (OSError, asyncio.TimeoutError, InvalidHandshake, InvalidURI) as exc:
        print(f"{prog}: cannot reach the server at {args.server}: {exc or type(exc).__name__}", file=sys.stderr)
        return 1

