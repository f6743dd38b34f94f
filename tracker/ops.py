"""``GET /v1/ops/snapshot`` (operator): the fleet, open orders by H3 cell, dispatch and service figures.

What the ops page draws: every fresh rider with its state (``free``, ``offered``, ``busy``,
``unavailable``) and every rider carrying orders even when it has gone silent (``stale``:
food on the road with nobody answering is what an operator must see), hexagons (res 8) with their open orders and free riders and their boundary,
the newest dispatch round of any process, the fleet-wide service level, the orders waiting
for their kitchen, and the deliveries running late (past the on-time target, or expected past
it within ``lateness.WARNING_MIN``). Each listed rider names the orders it is to collect whose
kitchen delayed the food (``kitchen_delays``): the rider waits on the kitchen.

The lists are capped (``MAX_RIDERS``, ``MAX_ORDERS``; a client may ask for fewer with
``?max_riders=`` and ``?max_orders=``) so the answer stays small however large the fleet;
``totals`` count the whole fleet all the same, and ``truncated`` says which list was cut. Every
rider's state is read (a few small commands each, pipelined in chunks) but only the listed ones
are sent: riders who need watching first (silent with orders, busy, offered, free,
unavailable), open orders oldest first.
"""
from __future__ import annotations

import asyncio
import heapq
from dataclasses import dataclass
from typing import Callable, Iterable

import h3
import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tracker.auth import Role
from tracker.dispatch.service import LAST_ROUND_KEY
from tracker.dispatch.refusals import REFUSAL_WINDOW_MS
from tracker.errors import ApiError
from tracker.http.health import degraded_tasks
from tracker.jsonutil import JSONResponse
from tracker.locations import CARRYING_RIDERS
from tracker.locations.store import ACTIVE_REGIONS, is_silent, seen_key
from tracker.ops_fleet import read_states
from tracker.orders.food_ready import expected_ready_ms, held_by_kitchen
from tracker.orders.lateness import WARNING_MIN, kitchen_stamps, running_late
from tracker.orders.machine import FINAL, TO_COLLECT
from tracker.orders.metrics import service_level
from tracker.orders.service import load_orders
from tracker.orders.store import kitchen_queue_key, open_order_regions, open_orders_key, store_of, unfinished_orders_key
from tracker.riders.pause import parse_pause, paused_riders
from tracker.runtime import Runtime, runtime_of
from tracker.settings import public_settings, target_seconds

HEX_RES = 8
MAX_RIDERS = 5000  # riders listed at most (the totals count them all)
MAX_ORDERS = 2000  # open orders listed at most (the total counts them all)
MAX_KITCHEN_QUEUE = 500  # orders waiting for their kitchen listed at most (the page shows 200)
MAX_LATE = 500  # deliveries running late listed at most (the page shows 200)
LATE_READ = 2000  # unfinished orders read at most per snapshot to find them, oldest first
READ_CHUNK = 1000  # riders read per Redis round trip
# The order riders are listed in, so a cut list keeps those who need watching.
RANK = {"silent": 0, "busy": 1, "offered": 2, "free": 3, "unavailable": 4}
STATES = ("free", "offered", "busy", "unavailable")


@dataclass(frozen=True, slots=True)
class Rider:
    """One rider as the snapshot sees it."""

    id: str
    lat: float
    lng: float
    ts: int
    state: str
    stale: bool
    order_ids: tuple[str, ...] = ()  # the orders it carries
    refused: int = 0  # offers declined or left to expire within the last hour
    paused: dict[str, object] | None = None  # the operator's pause (``reason``, ``at``), if any

    @property
    def orders(self) -> int:
        """How many orders it carries."""
        return len(self.order_ids)

    @property
    def order_key(self) -> tuple[int, str]:
        """Listing order: silent with orders first, then by state, then by id."""
        return RANK["silent" if self.stale else self.state], self.id

    def wire(self) -> dict[str, object]:
        """The rider as the snapshot lists it."""
        return {"id": self.id, "lat": self.lat, "lng": self.lng, "ts": self.ts, "state": self.state,
                "orders": self.orders, "order_ids": list(self.order_ids), "stale": self.stale,
                "refused_last_hour": self.refused, "paused": self.paused}


def _cap(request: Request, name: str, most: int) -> int:
    """The query parameter ``name`` as a list cap from 0 to ``most`` (``most`` when absent)."""
    raw = request.query_params.get(name)
    if raw is None:
        return most
    digits = raw.lstrip("0") or "0"  # (5,000 digits long, this is still a small number: or a refusal, not a 500)
    if not (raw.isascii() and raw.isdigit()) or len(digits) > len(str(most)) or int(digits) > most:
        shown = raw if len(raw) <= 40 else raw[:40] + "..."
        raise ApiError("bad_request", f"query parameter '{name}' must be a whole number from 0 to {most}, got {shown!r}")
    return int(digits)


async def _rider_ids(rt: Runtime, now: int) -> tuple[list[str], set[str]]:
    """Every rider with a fresh fix or carrying orders (sorted), and those carrying orders."""
    stale = int(rt.settings.stale_after_s * 1000)
    regions = sorted(await rt.redis.smembers(ACTIVE_REGIONS))
    pipe = rt.redis.pipeline(transaction=False)
    for region in regions:
        pipe.zrangebyscore(seen_key(region), now - stale, "+inf")
    fresh = [rid for ids in await pipe.execute() for rid in ids]
    carrying = await rt.redis.smembers(CARRYING_RIDERS)
    return sorted(set(fresh) | carrying), carrying


async def _read_chunk(rt: Runtime, ids: list[str], carrying: set[str], now: int) -> list[Rider]:
    """The riders ``ids`` still on the map: fresh ones and silent ones carrying orders."""
    stale = int(rt.settings.stale_after_s * 1000)
    out = []
    for rid, (fields, offered, refused, pause, orders) in zip(ids, await read_states(
            rt.redis, ids, carrying, now - REFUSAL_WINDOW_MS)):
        lat, lng, ts, available, left_at, shift_start, shift_end = fields
        paused = parse_pause(pause)
        carried = tuple(sorted(orders))
        if lat is None:
            continue
        silent = is_silent(now, int(ts), left_at, stale)
        if silent and not carried:
            continue  # listed as carrying a moment ago, and no longer
        on_shift = not (shift_start and int(shift_start) > now) and not (shift_end and int(shift_end) <= now)
        takes_offers = available != "0" and on_shift and paused is None
        state = "busy" if carried else "offered" if offered else "free" if takes_offers else "unavailable"
        out.append(Rider(rid, float(lat), float(lng), int(ts), state, silent, carried, refused, paused))
    return out


async def _riders(rt: Runtime, now: int) -> list[Rider]:
    """Every rider on the map, read ``READ_CHUNK`` at a time."""
    ids, carrying = await _rider_ids(rt, now)
    out: list[Rider] = []
    for start in range(0, len(ids), READ_CHUNK):
        out += await _read_chunk(rt, ids[start:start + READ_CHUNK], carrying, now)
    return out


class FleetReads:
    """One fleet read at a time per process: snapshots asked for while one runs share it, so
    the cost of the ops tabs polling together does not grow with their number."""

    def __init__(self) -> None:
        self._running: asyncio.Future[tuple[int, list[Rider]]] | None = None

    async def read(self, rt: Runtime) -> tuple[int, list[Rider]]:
        """The server time of the read and every rider on the map then."""
        if self._running is None:
            self._running = asyncio.ensure_future(self._read(rt))
        return await asyncio.shield(self._running)  # one caller going away stops nobody's read

    async def _read(self, rt: Runtime) -> tuple[int, list[Rider]]:
        try:
            now = rt.clock.now_ms()
            return now, await _riders(rt, now)
        finally:
            self._running = None


def _fleet_reads(rt: Runtime) -> FleetReads:
    reads = rt.services.get("ops_fleet_reads")
    if reads is None:
        reads = rt.services["ops_fleet_reads"] = FleetReads()
    return reads


def rider_totals(riders: Iterable[Rider]) -> dict[str, int]:
    """The ops page's rider figures over the whole fleet."""
    totals = dict.fromkeys(("riders", "online", "silent", *STATES), 0)
    for r in riders:
        totals["riders"] += 1
        totals[r.state] += 1
        if r.stale:
            totals["silent"] += 1
        elif r.state != "unavailable":
            totals["online"] += 1
    return totals


async def _oldest_in(rt: Runtime, key: Callable[[str], str], cap: int, scored_by: int | None = None,
                     ended: Callable[[dict], bool] | None = None) -> tuple[list[dict], int]:
    """The ``cap`` oldest orders of one per-region index (``key``) over all regions (scored by
    ``scored_by`` if given: the index's score is the placement, or the clock start for the
    unfinished orders), in wire form, and how many the index holds (up to then). With
    ``ended``, an entry whose order is gone or ``ended`` (it can never belong to the index
    again: a step's follow-up that lost a race put it back) is taken out of the index on the way."""
    bound = "+inf" if scored_by is None else scored_by
    regions = await open_order_regions(rt.redis, key)
    pipe = rt.redis.pipeline(transaction=False)
    for region in regions:
        pipe.zcount(key(region), "-inf", bound)
        pipe.zrangebyscore(key(region), "-inf", bound, start=0, num=cap, withscores=True)
    res = await pipe.execute()
    entries = [(score, oid, region) for region, listed in zip(regions, res[1::2]) for oid, score in listed]
    oldest = heapq.nsmallest(cap, entries)
    orders = await load_orders(rt, [oid for _, oid, _ in oldest])
    if ended is not None:
        gone = [(region, oid) for (_, oid, region), o in zip(oldest, orders) if o is None or ended(o)]
        if gone:
            pipe = rt.redis.pipeline(transaction=False)
            for region, oid in gone:
                pipe.zrem(key(region), oid)
            await pipe.execute()
    return [o for o in orders if o is not None and not (ended and ended(o))], sum(res[::2])


async def _open_orders(rt: Runtime, cap: int) -> tuple[list[dict], int]:
    """The ``cap`` oldest open orders of all regions, and how many are open."""
    orders, total = await _oldest_in(rt, open_orders_key, cap)
    return [{"id": o["id"], "merchant_id": o["merchant_id"], **o["pickup"], "status": o["status"],
             "placed_at": o["placed_at"], "clock_start_at": o["clock_start_at"], "confirmed_at": o.get("confirmed_at"),
             "planned_eta": o["planned_eta"],
             "ready_at": expected_ready_ms(o), **kitchen_stamps(o)}
            for o in orders], total


async def _kitchen_queue(rt: Runtime, cap: int) -> tuple[list[dict], int]:
    """The ``cap`` orders waiting longest for their kitchen to confirm them, and how many wait."""
    orders, total = await _oldest_in(rt, kitchen_queue_key, cap)
    return [{"id": o["id"], "merchant_id": o["merchant_id"], **o["pickup"], "placed_at": o["placed_at"]}
            for o in orders if o["status"] == "placed"], total


async def _running_late(rt: Runtime, now: int) -> tuple[list[dict], bool]:
    """The unfinished orders overdue or predicted late (:mod:`tracker.orders.lateness`), the
    longest overdue first, and whether more orders were due than ``LATE_READ`` (then the list
    holds the oldest of them). An order that ended but is still indexed (a step's follow-up
    that lost a race) is taken out of the index on the way."""
    target = target_seconds(rt.settings.on_time_target_min) * 1000
    started_by = now - target + int(WARNING_MIN * 60000)  # due within the warning, or overdue
    orders, due = await _oldest_in(rt, unfinished_orders_key, LATE_READ, started_by, lambda o: o["status"] in FINAL)
    return running_late(orders, now, target), due > LATE_READ


async def _kitchen_delays(rt: Runtime, riders: Iterable[Rider]) -> dict[str, list[dict]]:
    """Per rider (of ``riders``), the orders it is to collect whose food its kitchen delayed and
    has not called ready since, each ``{"order_id", "ready_at"}`` (when the food is now
    expected): the rider waits on the kitchen. One read of the listed riders' orders."""
    carried = [(r.id, oid) for r in riders for oid in r.order_ids]
    if not carried:
        return {}
    orders = await store_of(rt).load_many([oid for _, oid in carried])
    out: dict[str, list[dict]] = {}
    for (rid, oid), o in zip(carried, orders):
        if o is not None and o.get("rider_id") == rid and o.get("status") in TO_COLLECT and held_by_kitchen(o):
            out.setdefault(rid, []).append({"order_id": oid, "ready_at": expected_ready_ms(o)})
    return out


def _cells(orders: list[dict], free_riders: Iterable[Rider]) -> list[dict]:
    """H3 cells with their open orders (those listed) and free riders (all of them)."""
    cells: dict[str, dict] = {}
    points = [("open_orders", o["lat"], o["lng"]) for o in orders]
    points += [("free_riders", r.lat, r.lng) for r in free_riders]
    for kind, lat, lng in points:
        cell = h3.latlng_to_cell(lat, lng, HEX_RES)
        entry = cells.get(cell)
        if entry is None:
            entry = cells[cell] = {"cell": cell, "open_orders": 0, "free_riders": 0,
                                   "boundary": [list(p) for p in h3.cell_to_boundary(cell)]}
        entry[kind] += 1
    return list(cells.values())


async def snapshot(request: Request) -> Response:
    rt = runtime_of(request)
    rt.authenticate(request).require(Role.OPERATOR)
    max_riders, max_orders = _cap(request, "max_riders", MAX_RIDERS), _cap(request, "max_orders", MAX_ORDERS)
    now, fleet = await _fleet_reads(rt).read(rt)
    orders, open_total = await _open_orders(rt, max_orders)
    unconfirmed, unconfirmed_total = await _kitchen_queue(rt, min(max_orders, MAX_KITCHEN_QUEUE))
    listed = heapq.nsmallest(max_riders, fleet, key=lambda r: r.order_key)
    delays = await _kitchen_delays(rt, listed)
    late, late_cut = await _running_late(rt, now)
    last_round = await rt.redis.get(LAST_ROUND_KEY)
    paused, paused_total = await paused_riders(rt.redis)
    return JSONResponse({
        "ts": now,
        "riders": [{**r.wire(), "kitchen_delays": delays.get(r.id, [])} for r in listed],
        "open_orders": orders,
        "kitchen_queue": unconfirmed,
        "running_late": late[:min(max_orders, MAX_LATE)],
        "paused_riders": paused,
        "cells": _cells(orders, (r for r in fleet if r.state == "free")),
        "dispatch": orjson.loads(last_round) if last_round else {},
        "dispatch_interval_s": rt.settings.dispatch_interval_s,
        "settings": public_settings(rt.settings),
        "service": await service_level(rt.redis, rt.settings.on_time_target_min),
        "totals": {**rider_totals(fleet), "open_orders": open_total, "kitchen_queue": unconfirmed_total,
                   "running_late": len(late), "paused_riders": paused_total},
        "truncated": {"riders": len(fleet) > max_riders, "open_orders": open_total > max_orders,
                      "kitchen_queue": unconfirmed_total > min(max_orders, MAX_KITCHEN_QUEUE),
                      "running_late": len(late) > min(max_orders, MAX_LATE)},
        "totals_at_least": {"running_late": late_cut},  # counted among the orders read, not all
        "degraded": [{"name": t["name"], "last_error": t["last_error"], "last_error_at": t["last_error_at"]}
                     for t in degraded_tasks(rt.supervisor.status())],
    })


routes = [Route("/v1/ops/snapshot", snapshot, methods=["GET"])]
