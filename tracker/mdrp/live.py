"""A live MDRP day: the platform, tablets and couriers as real clients of a running server.

The ordering platform creates each order over HTTP at its placement time; each restaurant's
tablet (a merchant socket) confirms new orders and marks them ready at their ready time;
each courier connects a rider socket ``SHIFT_NOTICE_MIN`` before its on time and announces
its shift (``shift_start``, ``shift_end``), streams its position every simulated minute,
accepts the offers the server's dispatcher sends (add-ons too, while its pickup is still
ahead) and reports its progress at the times the MDRP rules give (same rules as the offline
replay). The server runs ``K`` times
faster than real time (``--time-scale``); clients follow its clock (``GET /healthz``).
The three solution files are written from what happened: the assignment times the server
stamped, the pickups and drop-offs the couriers performed, and every move they made.

Each run tags the ids it gives the server (:class:`RunIds`): order ``o159`` of one run is
``<tag>-o159`` on the server, and so are its restaurants and couriers, so one server (one
Redis) can play any number of days, or the same day again; the solution files keep the
instance's own ids.

During the day a watchdog stops the replay with one line (:class:`LiveError`) when the server
goes away or keeps refusing requests, instead of waiting out the day. The command around it
(starting a server, checking it, writing and checking the solution) is
``tracker/commands/replay_live.py``.
"""
from __future__ import annotations

import asyncio
import secrets
import sys
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field

import httpx
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from clients.merchant import MerchantClient
from clients.rider import RiderClient
from tracker.auth import issue_token
from tracker.cancelling import cancel_and_wait
from tracker.geo import LocalProjection
from tracker.mdrp.instance import Instance
from tracker.mdrp.simulator import ORIGIN, Assignment, CourierState, DayResult, can_grow, execute, grow

MIN_MS = 60_000
SHIFT_NOTICE_MIN = 30.0  # couriers announce their shift this long before it (as offline)
ADD_ON_MARGIN_MIN = 0.5  # a courier takes an add-on only if its pickup is at least this far off
HEALTH_EVERY_S = 2.0  # the watchdog asks /healthz this often (real seconds) ...
HEALTH_STRIKES = 3  # ... and gives up after this many failures in a row
CREATE_STRIKES = 5  # order creations failing in a row that stop the day
PROGRESS_EVERY_MIN = 60.0  # a progress line every simulated hour ...
PROGRESS_MAX_S = 300.0  # ... or every five real minutes, whichever comes first


class LiveError(Exception):
    """What stops a live replay, said in one line."""


class RunIds:
    """The ids one run gives the server: the instance's order, restaurant and courier ids after the run's tag."""

    def __init__(self, tag: str | None = None) -> None:
        self.tag = tag or secrets.token_hex(3)
        self.prefix = self.tag + "-"
        self.orders: list[str] = []  # the server's ids of the orders this run asked it to create, in order

    def server(self, ident: str) -> str:
        """The server's id for the instance's ``ident``."""
        return self.prefix + ident

    def instance(self, server_id: str) -> str | None:
        """The instance's id behind one of this run's server ids; None for an id of another run."""
        return server_id[len(self.prefix):] if server_id.startswith(self.prefix) else None


def describe_failure(exc: BaseException) -> str:
    if isinstance(exc, ConnectionClosed):
        rcvd = exc.rcvd
        return f"connection closed ({rcvd.code} {rcvd.reason})".strip() if rcvd else "connection closed"
    return str(exc) or type(exc).__name__


def error_message(resp: httpx.Response) -> str:
    try:
        err = resp.json()["error"]
        return f"{err['code']}: {err['message']}"
    except Exception:  # noqa: BLE001 - not our JSON error: show the start of the body
        return resp.text[:200].strip() or resp.reason_phrase


@dataclass
class Job:
    """One assignment a courier carries out; an add-on replaces ``assignment`` before pickup."""

    assignment: Assignment
    start: tuple[float, float]  # where the courier sets off from, and when
    depart: float
    reported: set[str] = field(default_factory=set)  # orders already reported ``at_pickup``


class ServerClock:
    """The server's scaled clock, followed from ``/healthz`` samples; minutes of the day."""

    def __init__(self, server_ms: int, scale: float, day_start_min: float) -> None:
        self.scale = scale
        self.mono0 = time.monotonic()
        self.server0 = server_ms
        self.t0_ms = server_ms - day_start_min * MIN_MS  # server ms of instance minute 0

    def now_ms(self) -> float:
        return self.server0 + (time.monotonic() - self.mono0) * 1000 * self.scale

    def minute(self, server_ms: float | None = None) -> float:
        return ((self.now_ms() if server_ms is None else server_ms) - self.t0_ms) / MIN_MS

    def ms(self, minute: float) -> int:
        return int(self.t0_ms + minute * MIN_MS)

    async def until(self, minute: float) -> None:
        wait = (minute - self.minute()) * 60 / self.scale
        if wait > 0:
            await asyncio.sleep(wait)


class LiveDay:
    """All the simulated actors of one day and what they did."""

    def __init__(self, inst: Instance, base_url: str, secret: str, clock: ServerClock, ids: RunIds) -> None:
        self.inst, self.base_url, self.secret, self.clock, self.ids = inst, base_url, secret, clock, ids
        self.ws_url = base_url.replace("http", "ws", 1)
        self.proj = LocalProjection(*ORIGIN)
        self.states = {c.id: CourierState(c.id, c.x, c.y, c.on) for c in inst.couriers.values()}
        self.assignments: list[Assignment] = []
        self.last_job: dict[str, Job] = {}  # each courier's latest job (the one add-ons grow)
        self.delivered: set[str] = set()
        self.errors: list[str] = []
        self.released: list[str] = []  # assignments handed back to the server
        self.placed = 0  # orders created so far
        self.placement_lag: list[float] = []  # per created order: server's placed_at minus the instance's placement (min)
        self.fatal: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    def fail(self, message: str) -> None:
        """Stop the day: ``play`` raises :class:`LiveError` with the first message given."""
        if not self.fatal.done():
            self.fatal.set_result(message)

    def watched(self, work: Awaitable[None], what: str) -> asyncio.Task[None]:
        """Run ``work`` as a task whose failure (a bug, an answer it did not expect) stops the day
        with ``what`` named, instead of vanishing with the task."""
        task = asyncio.ensure_future(work)

        def ended(t: asyncio.Task[None]) -> None:
            if not t.cancelled() and t.exception() is not None:
                self.fail(f"{what} failed: {t.exception()!r}")

        task.add_done_callback(ended)
        return task

    def token(self, role: str, sub: str) -> str:
        return issue_token(self.secret, role, sub, 7 * 24 * 3600)

    def latlng(self, x: float, y: float) -> dict[str, float]:
        lat, lng = self.proj.to_latlng(x, y)
        return {"lat": lat, "lng": lng}

    async def platform(self) -> None:
        """Create every order at its placement time, each in a request of its own (not one after
        another: an order would wait for the answers to the orders placed the same minute)."""
        headers = {"Authorization": "Bearer " + self.token("operator", "mdrp-platform")}
        failed = 0  # in a row

        async def create(http: httpx.AsyncClient, o) -> None:  # type: ignore[no-untyped-def]
            nonlocal failed
            self.ids.orders.append(self.ids.server(o.id))  # (before asking: an answer lost on the way may still mean created)
            body = {"id": self.ids.server(o.id), "merchant_id": self.ids.server(o.restaurant),
                    "pickup": self.latlng(*self.inst.restaurants[o.restaurant]),
                    "dropoff": self.latlng(o.x, o.y), "ready_at": self.clock.ms(o.ready)}
            try:
                resp = await http.post("/v1/orders", json=body)
                created = resp.json() if resp.status_code in (200, 201) else None
            except httpx.HTTPError as exc:
                why = f"cannot reach the server at {self.base_url}: {describe_failure(exc)}"
            except ValueError as exc:
                why = f"the server's answer was not JSON ({exc})"
            else:
                if created is not None:
                    failed, self.placed = 0, self.placed + 1
                    placed_at = created.get("placed_at") if isinstance(created, dict) else None
                    if isinstance(placed_at, int):  # how late the order reached the server (minutes)
                        self.placement_lag.append(self.clock.minute(placed_at) - o.placement)
                    return
                why = f"the server answered {resp.status_code} ({error_message(resp)})"
                if resp.status_code in (401, 403):
                    self.fail(f"the server refused to create order {o.id}: {why}")
                    return
            self.errors.append(f"create {o.id}: {why}")
            failed += 1
            if failed >= CREATE_STRIKES:
                self.fail(f"creating orders failed {failed} times in a row; the last, {o.id}: {why}")

        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        async with httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=30, limits=limits) as http:
            pending: set[asyncio.Task] = set()  # type: ignore[type-arg]
            try:
                for o in sorted(self.inst.orders.values(), key=lambda o: o.placement):
                    await self.clock.until(o.placement)
                    if self.fatal.done():  # (a refused token, or too many failures: the run is over)
                        break
                    task = asyncio.ensure_future(create(http, o))
                    pending.add(task)
                    task.add_done_callback(pending.discard)
                await asyncio.gather(*pending)
            finally:
                for task in pending:
                    task.cancel()

    async def kitchen(self, restaurant: str) -> None:
        """A restaurant's tablet: confirm each order as it arrives, mark it ready on time."""
        try:
            tablet = await MerchantClient.connect(self.ws_url, self.token("merchant", self.ids.server(restaurant)))
        except (OSError, InvalidHandshake, asyncio.TimeoutError) as exc:
            self.fail(f"restaurant {restaurant}'s tablet cannot connect to {self.ws_url}: {describe_failure(exc)}")
            return
        pending: set[asyncio.Task] = set()
        try:
            while True:
                try:
                    frame = await tablet.recv(timeout=3600)
                except asyncio.TimeoutError:
                    continue
                if frame.get("type") == "event" and frame.get("kind") == "placed":
                    await tablet.confirm(frame["order_id"])
                    task = self.watched(self._ready_later(tablet, frame["order_id"]),
                                        f"restaurant {restaurant}'s ready for order {frame['order_id']}")
                    pending.add(task)
                    task.add_done_callback(pending.discard)
        except ConnectionClosed as exc:  # without its tablet a restaurant's orders are never confirmed
            self.fail(f"the server at {self.base_url} dropped restaurant {restaurant}'s tablet: {describe_failure(exc)}")
        finally:
            for task in pending:
                task.cancel()
            await tablet.close()

    async def _ready_later(self, tablet: MerchantClient, server_id: str) -> None:
        order = self.inst.orders.get(self.ids.instance(server_id) or "")
        if order is not None:  # only this run's orders reach its tablets
            await self.clock.until(order.ready)
            await tablet.ready(server_id)

    async def courier(self, cid: str) -> None:
        """A courier's shift: connect, stream positions, accept offers, deliver by the rules."""
        c = self.inst.couriers[cid]
        state = self.states[cid]
        await self.clock.until(c.on - SHIFT_NOTICE_MIN)
        try:
            rider = await RiderClient.connect(self.ws_url, self.token("rider", self.ids.server(cid)))
        except (OSError, InvalidHandshake, asyncio.TimeoutError) as exc:
            self.fail(f"courier {cid} cannot connect to {self.ws_url}: {describe_failure(exc)}")
            raise
        await rider.availability(True, shift_end=self.clock.ms(c.off), shift_start=self.clock.ms(c.on))
        route: list[tuple[float, float, float]] = [(c.on, c.x, c.y)]  # (minute, x, y) waypoints
        streamer = asyncio.ensure_future(self._stream(rider, route))
        work: asyncio.Future = asyncio.get_running_loop().create_future()
        work.set_result(None)
        jobs: list[asyncio.Future] = []  # type: ignore[type-arg]  # (each job waits for the one before)
        try:
            while True:
                remaining = (c.off - self.clock.minute()) * 60 / self.clock.scale
                if remaining <= 0 and state.free_at <= self.clock.minute():
                    break
                try:
                    frame = await rider.recv(timeout=max(0.05, remaining))
                except asyncio.TimeoutError:
                    continue
                except ConnectionClosed as exc:
                    if exc.rcvd is not None and exc.rcvd.code == 1008:  # refused: authentication or policy
                        self.fail(f"the server closed courier {cid}'s connection: {describe_failure(exc)}")
                    raise
                if frame.get("type") == "offer":
                    if self._would_take(state, frame):
                        await rider.accept(frame["offer_id"])
                    else:
                        await rider.decline(frame["offer_id"])
                elif frame.get("type") == "assigned":
                    job = self._assigned(state, frame)
                    if isinstance(job, Job):
                        work = asyncio.ensure_future(self._deliver(rider, state, job, route, work))
                        jobs.append(work)
                    else:  # too late to collect before the shift ends: another courier will
                        for oid in job:
                            await rider.release(self.ids.server(oid), reason="the shift ends before the pickup")
                elif frame.get("type") == "error":
                    self.errors.append(f"{cid}: {frame.get('code')} {frame.get('message')}")
            await work
        finally:  # (a day stopped early: no job left to wake on a closed socket)
            await cancel_and_wait([streamer, *jobs])
            await rider.close()

    def _ours(self, server_ids: list[str]) -> tuple[str, ...] | None:
        """The instance's ids of these orders, or None if one is not this run's (left open by an earlier run)."""
        ids = tuple(oid for oid in map(self.ids.instance, server_ids) if oid is not None and oid in self.inst.orders)
        return ids if len(ids) == len(server_ids) else None

    def _would_take(self, state: CourierState, frame: dict) -> bool:  # type: ignore[type-arg]
        """Accept what can be picked up before the shift ends; an add-on only while it can join; never another run's."""
        ids = self._ours([o["order_id"] for o in frame["orders"]])
        if ids is None:
            return False
        now = self.clock.minute()
        if frame.get("joins"):
            held = state.pending
            return (held is not None and set(held.orders) == set(self._ours(frame["joins"]) or ())
                    and can_grow(self.inst, state, held.orders + ids, now + ADD_ON_MARGIN_MIN))
        probe = CourierState(state.id, state.x, state.y, state.free_at, state.label)
        return execute(self.inst, probe, ids, now) is not None

    def _assigned(self, state: CourierState, frame: dict) -> Job | tuple[str, ...]:  # type: ignore[type-arg]
        """Record an assignment: the job to run, or the orders to hand back (none once an add-on grew the pending job).

        The frame can arrive later than the accept that asked for it (under load); orders it
        can no longer collect before the courier's shift ends are handed back, not dropped.
        """
        ids = self._ours([o["order_id"] for o in frame["orders"]])
        if ids is None:  # never accepted (see _would_take): nothing of this run's to do
            self.errors.append(f"{state.id}: assigned orders of another run: {[o['order_id'] for o in frame['orders']]}")
            return ()
        now = self.clock.minute()
        last = self.last_job.get(state.id)
        if frame.get("joins") and last is not None:
            grown = grow(self.inst, state, self._ours(frame["sequence"]) or (), now)
            if grown is not None:
                self.assignments[self.assignments.index(last.assignment)] = grown
                last.assignment = grown
                return ()
        start, moves_before = (state.x, state.y), len(state.moves)
        done = execute(self.inst, state, ids, now)
        if done is None:
            self.released.append(f"{state.id}: assigned {', '.join(ids)} too late to collect before its shift ends; released")
            return ids
        self.assignments.append(done)
        self.last_job[state.id] = Job(done, start, state.moves[moves_before][0])
        return self.last_job[state.id]

    async def _deliver(self, rider: RiderClient, state: CourierState, job: Job, route: list,  # type: ignore[type-arg]
                       before: asyncio.Future) -> None:
        """Report one job's progress at the rule times, after the courier's earlier jobs."""
        await before
        p = self.inst.params
        first = job.assignment
        rest = self.inst.restaurants[self.inst.orders[first.orders[0]].restaurant]
        arrive = job.depart + self.inst.travel(job.start, rest)
        route += [(job.depart, *job.start), (arrive, *rest), (first.pickup + p.pickup_service / 2, *rest)]
        await self.clock.until(arrive)
        await self._at_pickup(rider, job)
        await self.clock.until(first.pickup)
        done = job.assignment  # add-ons may have grown it meanwhile
        await self._at_pickup(rider, job)
        for oid in done.orders:
            await rider.progress(self.ids.server(oid), "picked_up")
        for oid, drop in zip(done.orders, done.dropoffs):
            o = self.inst.orders[oid]
            reach = drop - p.dropoff_service / 2
            route += [(reach, o.x, o.y), (drop + p.dropoff_service / 2, o.x, o.y)]
            await self.clock.until(reach)
            await rider.progress(self.ids.server(oid), "at_dropoff")
            await self.clock.until(drop)
            await rider.progress(self.ids.server(oid), "delivered")
            self.delivered.add(oid)

    async def _at_pickup(self, rider: RiderClient, job: Job) -> None:
        for oid in job.assignment.orders:
            if oid not in job.reported:
                job.reported.add(oid)
                await rider.progress(self.ids.server(oid), "at_pickup")

    async def watch(self) -> None:
        """The watchdog: stop the day when ``/healthz`` fails ``HEALTH_STRIKES`` times in a row."""
        strikes = 0
        async with httpx.AsyncClient(base_url=self.base_url, timeout=HEALTH_EVERY_S * 2) as http:
            while True:
                await asyncio.sleep(HEALTH_EVERY_S)
                try:
                    resp = await http.get("/healthz")
                    why = "" if resp.status_code == 200 else f"/healthz answered {resp.status_code}"
                except httpx.HTTPError as exc:
                    why = describe_failure(exc)
                strikes = strikes + 1 if why else 0
                if strikes >= HEALTH_STRIKES:
                    self.fail(f"lost the server at {self.base_url}: {why}")
                    return

    async def report_progress(self, end_minute: float) -> None:
        """A line on stderr every simulated hour (at most every few real minutes)."""
        started = time.monotonic()
        every_s = min(PROGRESS_EVERY_MIN * 60 / self.clock.scale, PROGRESS_MAX_S)
        while True:
            await asyncio.sleep(every_s)
            assigned = sum(len(a.orders) for a in self.assignments)
            print(f"  minute {self.clock.minute():.0f} of {end_minute:.0f}: {self.placed}/{len(self.inst.orders)} orders "
                  f"placed, {assigned} assigned, {len(self.delivered)} delivered ({time.monotonic() - started:.0f} s)",
                  file=sys.stderr, flush=True)

    async def _stream(self, rider: RiderClient, route: list[tuple[float, float, float]]) -> None:
        """A fix every simulated minute, interpolated along the courier's route."""
        while True:
            now = self.clock.minute()
            x, y = _position(route, now)
            await rider.location(**self.latlng(x, y), ts=int(self.clock.now_ms()))
            await asyncio.sleep(60 / self.clock.scale)


def _position(route: list[tuple[float, float, float]], minute: float) -> tuple[float, float]:
    past = [w for w in route if w[0] <= minute]
    future = [w for w in route if w[0] > minute]
    if not past:
        return route[0][1], route[0][2]
    a = max(past, key=lambda w: w[0])
    if not future:
        return a[1], a[2]
    b = min(future, key=lambda w: w[0])
    f = (minute - a[0]) / (b[0] - a[0]) if b[0] > a[0] else 1.0
    return a[1] + (b[1] - a[1]) * f, a[2] + (b[2] - a[2]) * f


def day_span(inst: Instance) -> tuple[float, float]:
    """The minutes a live day runs: from just before the first order or shift notice to the last shift's end."""
    first = min(min(o.placement for o in inst.orders.values()),
                min(c.on for c in inst.couriers.values()) - SHIFT_NOTICE_MIN)
    last = max(max(c.off for c in inst.couriers.values()), max(o.placement for o in inst.orders.values()))
    return first - 1, last


async def play(inst: Instance, base_url: str, secret: str, progress: bool = False,
               ids: RunIds | None = None) -> tuple[DayResult, list[str]]:
    """Play the whole day against the server at ``base_url`` under ``ids`` (a fresh tag if None);
    :class:`LiveError` if it cannot go on."""
    try:
        async with httpx.AsyncClient(timeout=10) as http:  # a fresh sample: the clock starts from it
            health = (await http.get(base_url + "/healthz")).json()
    except httpx.HTTPError as exc:
        raise LiveError(f"cannot reach the server at {base_url}: {describe_failure(exc)}") from None
    start, end = day_span(inst)
    clock = ServerClock(health["ts"], health["time_scale"], start)
    day = LiveDay(inst, base_url, secret, clock, ids or RunIds())
    helpers = [asyncio.ensure_future(day.watch())]
    if progress:
        helpers.append(asyncio.ensure_future(day.report_progress(end)))
    kitchens: list[asyncio.Future] = []  # type: ignore[type-arg]
    couriers: list[asyncio.Future] = []  # type: ignore[type-arg]

    async def whole_day() -> None:
        kitchens.extend(day.watched(day.kitchen(r), f"restaurant {r}'s tablet")
                        for r in {o.restaurant for o in inst.orders.values()})
        await asyncio.sleep(0.5)  # tablets online before the first order
        couriers.extend(asyncio.ensure_future(day.courier(cid)) for cid in inst.couriers)
        await day.platform()
        results = await asyncio.gather(*couriers, return_exceptions=True)
        day.errors.extend(f"courier task: {r!r}" for r in results if isinstance(r, Exception))

    main = asyncio.ensure_future(whole_day())
    try:
        await asyncio.wait({main, day.fatal}, return_when=asyncio.FIRST_COMPLETED)
        if day.fatal.done():
            raise LiveError(day.fatal.result())
        main.result()
    finally:
        await cancel_and_wait([main, *helpers, *kitchens, *couriers])
    day.assignments.sort(key=lambda a: (a.time, a.courier))
    if day.placement_lag and progress:
        lag = sorted(day.placement_lag)
        print(f"  orders reached the server {sum(lag) / len(lag):.2f} min after their placement on average "
              f"(p90 {lag[int(0.9 * (len(lag) - 1))]:.2f}, max {lag[-1]:.2f})", file=sys.stderr, flush=True)
    return DayResult(inst, day.assignments, {cid: s.moves for cid, s in day.states.items()}, 0), day.errors + day.released
