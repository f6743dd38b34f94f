"""Locust scenarios for tracker: riders, customers, merchants, the ordering platform, a probe.

Run through ``loadtests/run.py`` (it starts a server, sets ``TRACKER_SECRET`` and the user
counts ``LOADTEST_RIDERS``, ``LOADTEST_CUSTOMERS``, ``LOADTEST_MERCHANT_USERS``,
``LOADTEST_OPERATORS``), or by hand with weights:
``TRACKER_SECRET=... locust -f loadtests/locustfile.py --host http://127.0.0.1:8000``.

Every WebSocket message is reported through locust's request events (request type ``WS``),
so locust's table and CSV show them per message type:

- ``location`` (rider fix sent), ``offer`` / ``assigned`` (received), ``accept``, ``progress``;
- ``event:<kind>`` and ``rider_location`` on customer sockets, timed from the server's ``ts``
  stamp to arrival (the fan-out latency a customer sees), only for events stamped after the
  socket was subscribed: what the server replays at subscribe is ``history``, untimed;
- ``feed:<kind>`` on merchant sockets, the same way (``feed history`` for the replay);
- ``fix_to_visibility``: a probe rider's fix until ``GET /v1/riders/nearby`` returns it;
- ``error:<code>`` for every error frame, as a failure, except the answers a user expects in
  a live system (``refused:<code>``, not a failure): see :meth:`WsUser.expected_error`;
- ``closed:<code> <reason>`` as a failure for every socket the server closed (1008
  ``unauthorized``, 1013 ``over_capacity``, 1011 ``redis_unavailable``, 1001 at shutdown, 1006
  ``no close frame`` for a dropped connection), with the full reason as the error.

Every id (riders, merchants, orders) carries the run's id, ``LOADTEST_RUN`` (run.py sets a
fresh one; default a random one per start), so runs against one deployment never meet. Each
order id is appended to the file ``LOADTEST_ORDERS`` (when set) before the order is placed, and
noted ``refused`` when the server refused its create (a 4xx answer: nothing created): run.py
ends the unfinished ones after the run (``loadtests/cleanup.py``); run by hand, nothing does.

Against an https server the users check its certificate as ``loadtests/tls.py`` says
(``LOADTEST_CA_FILE``, ``LOADTEST_INSECURE``). Worker processes forked by ``--processes`` end
with their master (``loadtests/locust_process.py``).
"""
from __future__ import annotations

import itertools
import math
import os
import random
import time
import uuid

import gevent
import requests
from locust import HttpUser, User, between, constant, constant_pacing, task
from locust.exception import StopUser

from loadtests import tls
from loadtests.locust_process import tie_forked_workers
from loadtests.wsclient import WsClient, WsClosed, WsError
from tracker.auth import issue_token

tie_forked_workers()
if tls.requests_verify() is False:  # --insecure: said once by run.py, not at every request
    import urllib3

    urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)

CENTRE = (52.5200, 13.4050)
SPREAD_DEG = 0.03  # about 3 km
RUN = os.environ.get("LOADTEST_RUN") or uuid.uuid4().hex[:6]
MERCHANTS = [f"lt-m{RUN}-{i}" for i in range(int(os.environ.get("LOADTEST_MERCHANTS", "10")))]
ORDERS_FILE = os.environ.get("LOADTEST_ORDERS")
_counter = itertools.count()
_tls: list[object] = []  # the SSL context of wss:// sockets, made once (loading a CA file is not free)


def tls_context():  # type: ignore[no-untyped-def]
    """The SSL context the users' ``wss://`` sockets check the server with (``loadtests/tls.py``)."""
    if not _tls:
        _tls.append(tls.context_from_env())
    return _tls[0]


def unique_id(kind: str) -> str:
    """An id no other user of this run has, in any worker process.

    ``locust --processes`` forks its workers after importing this file, so ``RUN`` and the
    counter are the same in each of them; the process id tells them apart.
    """
    return f"lt-{kind}{RUN}-{os.getpid()}-{next(_counter)}"


def secret() -> str:
    """The server's secret from ``TRACKER_SECRET``; a RuntimeError when it is unset."""
    value = os.environ.get("TRACKER_SECRET")
    if not value:
        raise RuntimeError("set TRACKER_SECRET to the server's secret (loadtests/run.py does)")
    return value


def token(role: str, sub: str) -> str:
    """A token for ``role``/``sub``, valid for a day, signed with the server's secret."""
    return issue_token(secret(), role, sub, 24 * 3600)


def ws_url(host: str, path: str) -> str:
    """The WebSocket URL of ``path`` on the http(s) ``host``."""
    return host.replace("http://", "ws://").replace("https://", "wss://").rstrip("/") + path


def restaurant(mid: str) -> tuple[float, float]:
    """Where merchant ``mid`` is: a fixed point near the centre, the same in every user and process."""
    rng = random.Random(mid)
    return CENTRE[0] + rng.uniform(-SPREAD_DEG, SPREAD_DEG) / 2, CENTRE[1] + rng.uniform(-SPREAD_DEG, SPREAD_DEG) / 2


def now_ms() -> int:
    """Wall-clock time in milliseconds, the clock of the server's ``ts`` stamps."""
    return int(time.time() * 1000)


def close_name(exc: Exception) -> str:
    """The request name a socket's end is reported under: ``closed:<code> <reason's first word>``."""
    if isinstance(exc, WsClosed):
        return f"closed:{exc.code} {exc.reason.split(':')[0].strip() or 'no reason'}"
    return "closed: connection lost"


class WsUser(User):
    """A user holding one WebSocket; frames are read by a greenlet and reported."""

    abstract = True
    path = "/"
    role = "rider"
    closed: Exception | None = None  # how the server ended the socket, once it has
    leaving = False  # True once this user closes its own socket

    def ws_connect(self, sub: str, path: str | None = None) -> None:
        """Open the user's socket as ``sub`` (on ``path``, default the class's), report the connect
        and start the reader greenlet; a failed connect is reported and raised."""
        start = time.perf_counter()
        try:
            url = ws_url(self.host, path or self.path)
            self.ws = WsClient(url, token(self.role, sub), tls=tls_context() if url.startswith("wss://") else None)
        except Exception as exc:  # noqa: BLE001 - reported to locust, user retries
            self.report("connect", start, 0, exc)
            raise
        self.report("connect", start, 0)
        self.connected_ms = now_ms()
        self.reader = gevent.spawn(self._read_loop)

    def report(self, name: str, start: float, length: int, exc: Exception | None = None, *, ms: float | None = None) -> None:
        """Report one ``WS`` request named ``name`` to locust, timed from ``start`` (``perf_counter``)
        unless ``ms`` is given; ``exc`` makes it a failure."""
        elapsed = (time.perf_counter() - start) * 1000 if ms is None else ms
        self.environment.events.request.fire(
            request_type="WS", name=name, response_time=elapsed, response_length=length, exception=exc, context={}
        )

    def send(self, name: str, message: dict) -> None:
        """Send ``message`` and report it as ``name`` with its size; a failed send is reported and raised.

        Nothing is sent (or reported) once the server has closed the socket: the reader reports
        that close, once."""
        start = time.perf_counter()
        try:
            size = self.ws.send(message)
            self.report(name, start, size)
        except WsClosed:
            return
        except (WsError, OSError) as exc:
            self.report(name, start, 0, exc)
            raise

    def _read_loop(self) -> None:
        """Hand each frame on until the socket ends; a close this user did not ask for is a failure."""
        try:
            for msg in self.ws.messages():
                if msg.get("type") == "error" and self.expected_error(msg):
                    self.report(f"refused:{msg.get('code')}", time.perf_counter(), 0)
                elif msg.get("type") == "error":
                    self.report(f"error:{msg.get('code')}", time.perf_counter(), 0, RuntimeError(msg.get("message")))
                else:
                    self.on_message(msg)
        except (WsError, OSError) as exc:
            if not self.leaving or self.ws.closed_by_server:  # (the server's close may cross ours)
                self.closed = exc
                self.report(close_name(exc), time.perf_counter(), 0, exc)

    def stop_if_closed(self) -> None:
        """Stop this user (StopUser) once the server has closed its socket."""
        if self.closed is not None:
            raise StopUser()

    def on_message(self, msg: dict) -> None:
        """Handle one frame (subclasses)."""

    def expected_error(self, msg: dict) -> bool:
        """True for an error frame that is a normal outcome of a race, not a fault (subclasses)."""
        return False

    def on_stop(self) -> None:
        """Close the socket, if one was opened (a close the user asked for, not counted)."""
        self.leaving = True
        if getattr(self, "ws", None):
            self.ws.close()


class RiderUser(WsUser):
    """Streams a fix every second along a random walk, accepts offers, reports progress."""

    weight = 10
    fixed_count = int(os.environ.get("LOADTEST_RIDERS", "0"))
    path = "/v1/ws/rider"
    role = "rider"

    def on_start(self) -> None:
        """Connect as a new rider at a random point near the centre, go available, and pick a random
        phase for the fixes."""
        self.rider_id = unique_id("r")
        self.dropped: set[str] = set()  # orders cancelled, failed or taken back: no more steps for them
        self.lat = CENTRE[0] + random.uniform(-SPREAD_DEG, SPREAD_DEG)
        self.lng = CENTRE[1] + random.uniform(-SPREAD_DEG, SPREAD_DEG)
        self.heading = random.uniform(0, 6.283)
        self.ws_connect(self.rider_id)
        self.send("availability", {"type": "availability", "available": True})
        # Real phones are not in step: each rider sends at its own random phase within the
        # second, kept on an absolute schedule. (With locust's constant_pacing the phases of
        # thousands of users ended up in one burst a second: 2,000 riders' fixes within
        # 200 ms, which the server takes in one go and the probe's fix waits behind.)
        self.next_fix_at = time.monotonic() + random.random()

    def wait_time(self) -> float:  # type: ignore[override]
        """Seconds until this rider's next fix on its own once-a-second schedule."""
        return max(0.0, self.next_fix_at - time.monotonic())

    @task
    def move(self) -> None:
        """Send the next fix, about 5 m further along a slowly turning heading."""
        self.stop_if_closed()
        self.next_fix_at += 1.0
        self.heading += random.uniform(-0.3, 0.3)
        step = 5.0 / 111_000  # about 5 m/s
        self.lat += step * math.cos(self.heading)
        self.lng += step * math.sin(self.heading)
        self.send("location", {"type": "location", "lat": self.lat, "lng": self.lng, "speed": 5.0})

    def on_message(self, msg: dict) -> None:
        """Count the frame by type, accept every offer, and take an assignment's orders through to
        delivery (a step every 2 s)."""
        kind = msg.get("type")
        self.report(kind or "unknown", time.perf_counter(), 0)
        if kind == "offer":
            # The id comes back as the error's ``ref``: expected_error() knows an accept's answer.
            self.send("accept", {"type": "accept", "offer_id": msg["offer_id"], "id": f"accept {msg['offer_id']}"})
        elif kind == "assigned":
            gevent.spawn(self._deliver, [o["order_id"] for o in msg["orders"]])
        elif kind in ("order_cancelled", "order_failed", "unassigned"):
            self.dropped.add(msg.get("order_id", ""))

    def expected_error(self, msg: dict) -> bool:
        """True for ``conflict`` in answer to one of this rider's accepts (the offer was settled
        first), and for a step refused because its order was cancelled or failed meanwhile."""
        # An offer can be settled before the accept arrives: an add-on whose held order this
        # rider has picked up meanwhile (its _deliver greenlet moves on by itself) is withdrawn,
        # an offer can expire. The server answers ``conflict`` by design (docs/protocol.md, "Offers").
        ref = str(msg.get("ref", ""))
        if msg.get("code") == "conflict" and ref.startswith("accept "):
            return True
        # Another run sharing the server may end an order this rider holds (its cleanup cancels
        # what it placed); a step sent as the order_cancelled / order_failed notice crossed it
        # is refused naming the final state.
        ended = ("it is 'cancelled'", "it is 'failed'")
        return (msg.get("code") == "invalid_transition" and ref.startswith("progress ")
                and any(word in str(msg.get("message", "")) for word in ended))

    def _deliver(self, order_ids: list[str]) -> None:
        for step in ("at_pickup", "picked_up", "at_dropoff", "delivered"):
            gevent.sleep(2.0)
            for oid in order_ids:
                if oid not in self.dropped:  # a rider app stops at order_cancelled, order_failed or unassigned
                    self.send("progress", {"type": "progress", "order_id": oid, "step": step,
                                           "id": f"progress {oid} {step}"})


class MerchantUser(WsUser):
    """A kitchen tablet: confirms every new order, marks it ready a few seconds later."""

    weight = 1
    fixed_count = int(os.environ.get("LOADTEST_MERCHANT_USERS", "0"))
    wait_time = constant(1.0)
    path = "/v1/ws/merchant"
    role = "merchant"
    _started = itertools.count()

    def on_start(self) -> None:
        """Connect the tablet of this process's next merchant (one tablet per merchant across the
        ``LOADTEST_PROCESSES`` worker processes)."""
        workers = max(1, int(os.environ.get("LOADTEST_PROCESSES", "1")))
        index = getattr(self.environment.runner, "worker_index", 0) + workers * next(self._started)
        self.merchant_id = MERCHANTS[index % len(MERCHANTS)]
        self.ws_connect(self.merchant_id)

    @task
    def idle(self) -> None:
        """The tablet only reacts to its feed."""
        self.stop_if_closed()

    def on_message(self, msg: dict) -> None:
        """Report each live feed event's latency from its ``ts`` (events stamped before the socket
        opened are the feed's history, untimed); confirm every placed order and mark it ready 3 s
        later."""
        if msg.get("type") == "event":
            live = msg.get("ts", 0) >= self.connected_ms
            self.report(f"feed:{msg.get('kind')}" if live else "feed history", 0, 0,
                        ms=max(0, now_ms() - msg["ts"]) if live else 0)
            if msg.get("kind") == "placed":
                self.send("confirm", {"type": "confirm", "order_id": msg["order_id"]})
                gevent.spawn_later(3.0, self.send, "ready", {"type": "ready", "order_id": msg["order_id"]})
        elif msg.get("type") == "prompt":
            self.report("prompt", 0, 0, ms=0)


def note_order(line: str) -> None:
    """Append ``line`` to ``LOADTEST_ORDERS`` (one short write: lines from several processes do not mix)."""
    if ORDERS_FILE:
        with open(ORDERS_FILE, "a") as f:
            f.write(line + "\n")


def new_order(client, oid: str) -> None:  # type: ignore[no-untyped-def]
    """Create order ``oid`` at a random merchant through ``client``, as the operator, with a drop-off
    within 0.02 degrees of the restaurant (noted first, so even a create whose answer was lost is
    ended; then noted ``refused`` if the server answered 4xx, which creates nothing)."""
    note_order(oid)
    mid = random.choice(MERCHANTS)
    plat, plng = restaurant(mid)
    body = {"id": oid, "merchant_id": mid, "pickup": {"lat": plat, "lng": plng},
            "dropoff": {"lat": plat + random.uniform(-0.02, 0.02), "lng": plng + random.uniform(-0.02, 0.02)}}
    resp = client.post("/v1/orders", json=body, headers={"Authorization": "Bearer " + token("operator", "loadtest")},
                       name="/v1/orders")  # (locust shows the method beside the name)
    if 400 <= resp.status_code < 500:  # (0 is locust's "no answer": it may have been created)
        note_order(f"{oid} refused {resp.status_code}")


class OperatorUser(HttpUser):
    """The ordering platform: creates orders at a steady rate."""

    weight = 1
    fixed_count = int(os.environ.get("LOADTEST_OPERATORS", "0"))
    wait_time = constant_pacing(float(os.environ.get("LOADTEST_ORDER_INTERVAL_S", "2")))

    def on_start(self) -> None:
        """Check an https server's certificate as run.py was told to."""
        self.client.verify = tls.requests_verify()

    @task
    def create(self) -> None:
        """Create one new order."""
        new_order(self.client, unique_id("o"))


class CustomerUser(WsUser):
    """Places an order, then watches it: event and position latency from the server's stamp."""

    weight = 2
    fixed_count = int(os.environ.get("LOADTEST_CUSTOMERS", "0"))
    wait_time = between(1, 2)
    path = "/v1/ws/customer"
    role = "customer"

    def on_start(self) -> None:
        """Place this user's order (outside the statistics) and watch it on a customer socket."""
        self.order_id = unique_id("c")
        self.subscribed_ms: int | None = None
        new_order(_Plain(self.host), self.order_id)
        self.ws_connect(self.order_id, f"/v1/ws/customer?order_id={self.order_id}")

    @task
    def watch(self) -> None:
        """Frames arrive on the reader greenlet."""
        self.stop_if_closed()

    def on_message(self, msg: dict) -> None:
        """Report live events and rider positions by their latency from ``ts``; history is counted
        untimed and a resync as a failure.

        The server subscribes the socket before it sends the history, and the history is never
        empty (the order's ``placed``), so an event stamped after the first frame arrived was
        sent live; one stamped before it may have been read from the history after the
        handshake, and is history, not fan-out."""
        if self.subscribed_ms is None:
            self.subscribed_ms = now_ms()
        if msg.get("type") == "event":
            live = msg["ts"] > self.subscribed_ms
            self.report(f"event:{msg['kind']}" if live else "history", 0, 0, ms=max(0, now_ms() - msg["ts"]) if live else 0)
        elif msg.get("type") == "rider_location":
            self.report("rider_location", 0, 0, ms=max(0, now_ms() - msg["ts"]))
        elif msg.get("type") == "resync":
            self.report("resync", 0, 0, RuntimeError(msg.get("reason")), ms=0)


class _Plain:
    """A tiny HTTP client for setup calls that should not count in the statistics."""

    def __init__(self, host: str) -> None:
        self.host, self.session = host, requests.Session()
        self.verify = tls.requests_verify()  # (given with each request: a session's is overridden by REQUESTS_CA_BUNDLE)

    def post(self, path: str, json: dict, headers: dict, name: str) -> requests.Response:  # noqa: A002 - mirrors requests
        return self.session.post(self.host + path, json=json, headers=headers, timeout=10, verify=self.verify)


class ProbeUser(WsUser, HttpUser):
    """One rider socket plus nearby polling: time from a fix sent to its visibility.

    Samples taken during the ramp (``LOADTEST_RAMP_S`` seconds from the probe's start, while
    the other users are still connecting) are reported as ``fix_to_visibility (ramp)``, so
    ``fix_to_visibility`` is the steady state. Its socket is read (and the frames dropped):
    reading is what answers the server's pings, and a socket that never answers is closed
    after ``ws_ping_interval + ws_ping_timeout``; a close is a failure as for any user.
    """

    fixed_count = 1
    wait_time = constant(0.25)
    path = "/v1/ws/rider"
    role = "rider"

    def on_start(self) -> None:
        """Connect the probe rider's socket and note when the ramp ends."""
        self.steady_at = time.perf_counter() + float(os.environ.get("LOADTEST_RAMP_S", "0"))
        self.rider_id = f"lt-probe{RUN}"
        self.lat, self.lng = CENTRE[0] + 0.05, CENTRE[1] + 0.05
        self.headers = {"Authorization": "Bearer " + token("operator", "probe")}
        self.client.verify = tls.requests_verify()
        self.ws_connect(self.rider_id)

    @task
    def probe(self) -> None:
        """Send a fix and poll nearby until it shows (at most 5 s); report the time as
        ``fix_to_visibility``, or ``fix_to_visibility (ramp)`` during the ramp."""
        self.stop_if_closed()
        self.lat += 0.00003
        start = time.perf_counter()
        try:
            self.ws.send({"type": "location", "lat": self.lat, "lng": self.lng})
        except WsClosed:
            raise StopUser() from None  # the reader reports the close
        exc: Exception | None = None
        while True:
            resp = self.client.get("/v1/riders/nearby", params={"lat": self.lat, "lng": self.lng, "radius_m": 1, "limit": 5},
                                   headers=self.headers, name="/v1/riders/nearby (probe)")
            if any(r["id"] == self.rider_id for r in resp.json().get("riders", [])):
                break
            if time.perf_counter() - start > 5:
                exc = TimeoutError("fix not visible within 5 s")
                break
            gevent.sleep(0.002)
        self.environment.events.request.fire(
            request_type="WS", name="fix_to_visibility" if start >= self.steady_at else "fix_to_visibility (ramp)",
            response_time=(time.perf_counter() - start) * 1000,
            response_length=0, exception=exc, context={},
        )
