"""Riders' positions on their orders' channels, live ETAs and kitchen prompts.

Registered as a fix listener of the locations feature: for a rider carrying orders, at most
once a second (:mod:`tracker.orders.feed_pace`) it reads the rider's orders (two round trips), computes the route times with
:mod:`tracker.orders.eta`, stores each order's ``eta``, and publishes ``rider_location`` on
each order's channel. While the rider heads to the restaurant it also prompts the merchant:
``start_preparing`` once the rider's ETA to the restaurant is within the order's preparation
estimate (so the food is ready as the rider walks in), ``rider_arriving`` once it is within
``TRACKER_ARRIVING_PROMPT_S``. Each prompt is sent once per order and assignment (a rider
who takes over brings prompts timed to its own arrival). An order's ETA is written, and its position published, only if the rider still
carries it at that moment (one small script per order): an order given back since it was read
shows neither.
"""
from __future__ import annotations

import asyncio
import time
from typing import Any, Iterable

import orjson

from tracker.locations import Fix, rider_orders_key
from tracker.orders.eta import EtaModel, route_times
from tracker.orders.feed_pace import FeedPace
from tracker.orders.food_ready import expected_ready_ms
from tracker.orders.machine import CARRYING, TO_COLLECT, carried_by
from tracker.orders.route import rider_trips
from tracker.orders.store import merchant_channel, order_channel, order_key, store_of
from tracker.redis_client import AnyRedis
from tracker.runtime import Runtime


DELAYED_FEED_TASK = "rider-feed"  # the name its failures are reported under (/readyz)

# Both scripts act only while the rider ARGV[1] still carries the order KEYS[1] (its status one
# of CARRYING): the orders were read a moment ago and may have been given back since.
# They publish on the order's own node, like the order's events (order_step.lua): on a Redis
# Cluster, messages published on two nodes may reach a subscriber in either order, and a
# position that overtook its ``assigned`` event would be dropped by the customer's socket (no
# positions before a rider carries the order). Sent as EVAL in the feed's pipeline: redis-py's
# cluster pipeline queues a registered script's EVALSHA without loading it on the node first,
# and Redis caches EVAL scripts itself.
_STILL_CARRIED = """
local h = redis.call('HMGET', KEYS[1], 'rider_id', 'status')
if h[1] ~= ARGV[1] or not ({%s})[h[2]] then return 0 end
""" % ", ".join(f"['{status}'] = true" for status in CARRYING)

# The order's ETA (ARGV[2]), pickup ETA (ARGV[3]) and the rider's deliveries before it (ARGV[10])
# written, its rider_location frame ARGV[5] published on its channel ARGV[4]. While the rider heads to the restaurant, its arrival there
# ARGV[6] (ts; '' otherwise) is kept in ``rider_eta`` and told to the kitchen (frame ARGV[9] on
# the merchant channel ARGV[8]) when it first has one and when it moved by ARGV[7] ms or more
# since: the board counts down between.
_SET_ETA = _STILL_CARRIED + """
redis.call('HSET', KEYS[1], 'eta', ARGV[2], 'pickup_eta', ARGV[3], 'stops_before', ARGV[10])
redis.call('PUBLISH', ARGV[4], ARGV[5])
if ARGV[6] ~= '' then
  local old = redis.call('HGET', KEYS[1], 'rider_eta')
  if not old or old == '' or math.abs(tonumber(old) - tonumber(ARGV[6])) >= tonumber(ARGV[7]) then
    redis.call('HSET', KEYS[1], 'rider_eta', ARGV[6])
    redis.call('PUBLISH', ARGV[8], ARGV[9])
  end
end
return 1
"""
RIDER_ETA_STEP_MS = 60_000  # the kitchen hears of a rider's new arrival time when it moved by a minute

# A kitchen prompt marked sent (field ARGV[2] of the order's hash, set to ARGV[3]: the frame,
# so a board opened later is shown it, see ``kitchen_catch_up``) and, the first time in the
# order's current assignment only, its frame ARGV[5] published on the merchant channel ARGV[4].
# A mark older than the assignment (``assigned_at``) was for an earlier rider, or an earlier
# approach of this one: it is replaced. (A mark from an earlier version is a time, not a frame.)
_PROMPT_ONCE = _STILL_CARRIED + """
local old = redis.call('HGET', KEYS[1], ARGV[2])
if old then
  local ok, f = pcall(cjson.decode, old)
  local ts = (ok and type(f) == 'table' and tonumber(f['ts'])) or tonumber(old)
  if not ts or ts >= tonumber(redis.call('HGET', KEYS[1], 'assigned_at') or 0) then return 0 end
end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 1
"""


def rider_location(order_id: str, rider_id: str, fix: Fix, eta: int | None,
                   stops_before: int | None = None) -> dict[str, Any]:
    """The ``rider_location`` frame of an order's channel: where its rider is, the order's ETA and
    how many of the rider's other deliveries come before it (``None``: not known here)."""
    return {"type": "rider_location", "order_id": order_id, "rider_id": rider_id, "lat": fix.lat, "lng": fix.lng,
            "ts": fix.ts, "eta": eta, "stops_before": stops_before}


def rider_eta_frame(order_id: str, rider_id: str, arrival: int, now_ms: int) -> dict[str, Any]:
    """The merchant feed's ``rider_eta`` frame: when the rider heading to collect the order arrives."""
    return {"type": "rider_eta", "order_id": order_id, "rider_id": rider_id, "rider_eta": arrival, "ts": now_ms}


def prompt_text(kind: str, minutes: float) -> str:
    """The words of a kitchen prompt: how far the rider is, and what to do now."""
    away = "arriving now" if minutes < 0.5 else f"{minutes:.0f} min away"
    return f"rider {away}: start plating" if kind == "start_preparing" else f"rider {away}: hand-over soon"


class RiderOrdersFeed:
    """The fix listener that feeds order channels and merchant prompts."""

    def __init__(self, rt: Runtime) -> None:
        s = rt.settings
        self.rt = rt
        self.model = EtaModel(s.rider_speed_mps, s.pickup_service_s, s.dropoff_service_s)
        self._pace = FeedPace()
        self._timers: dict[str, asyncio.TimerHandle] = {}  # rider -> when its held frame is due
        self._tasks: set[asyncio.Task[None]] = set()

    async def __call__(self, rider_id: str, fix: Fix, orders: frozenset[str], *, again: bool = False) -> None:
        """Feed one fix, paced by :class:`~tracker.orders.feed_pace.FeedPace`: one that comes too
        soon is never lost, it is delivered (with any prompt it triggers) once its time comes,
        unless a newer fix is delivered first. ``again``: the rider's last fix fed once more
        because its orders changed."""
        now = time.monotonic()
        wait = self._pace.offer(rider_id, fix, orders, again, now)
        timer = self._timers.pop(rider_id, None)
        if timer is not None:
            timer.cancel()
        if wait > 0:
            self._timers[rider_id] = asyncio.get_running_loop().call_later(wait, self._flush, rider_id)
            return
        held = self._pace.take(rider_id, now)
        if held is not None:
            await self._deliver(rider_id, held.fix, held.orders)

    def _flush(self, rider_id: str) -> None:
        self._timers.pop(rider_id, None)
        held = self._pace.take(rider_id, time.monotonic())
        if held is not None:
            task = asyncio.create_task(self._deliver(rider_id, held.fix, held.orders), name=f"rider-feed-{rider_id}")
            self._tasks.add(task)
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        exc = None if task.cancelled() else task.exception()
        if exc is not None:  # logged, counted and shown in /readyz like any background task's failure
            self.rt.supervisor.report(DELAYED_FEED_TASK, exc, rider_task=task.get_name())

    async def _deliver(self, rider_id: str, fix: Fix, orders: frozenset[str]) -> None:
        found = await store_of(self.rt).load_many(sorted(orders))
        mine = [h for h in found if h is not None and carried_by(h, rider_id)]
        done = [h for h in found if h is not None and h["status"] == "delivered" and h.get("last_rider_id") == rider_id]
        if mine:
            await self._publish(rider_id, fix, mine, done)

    async def _publish(self, rider_id: str, fix: Fix, mine: list[dict[str, str]], done: list[dict[str, str]]) -> None:
        now = self.rt.clock.now_ms()
        etas: dict[str, int] = {}
        pickup_etas: dict[str, int] = {}
        prompts: list[tuple[dict[str, str], str, int]] = []
        arrivals: dict[str, int] = {}  # order -> its rider's arrival at the kitchen, while heading there
        stops_before: dict[str, int] = {}  # order -> the rider's drop-offs of other orders before its own
        start, position = float(now), (fix.lat, fix.lng)
        for number, trip in enumerate(rider_trips(mine)):
            stops_before.update({h["id"]: len(stops_before) + i for i, h in enumerate(trip)})
            first = trip[0]
            drops = [_drop(h) for h in trip]
            if any(h["status"] in TO_COLLECT for h in trip):  # (a bundle partly in the bag counts as to collect)
                # The kitchen's estimate holds until it says the food is ready (a ready after a
                # delay brings the ETA back at once).
                ready = max((t for h in trip if h["status"] in TO_COLLECT and not h.get("food_ready_at")
                             and (t := expected_ready_ms(h)) is not None), default=None)
                waiting = [h for h in trip if h["status"] == "at_pickup"]  # the rider is at the counter
                plan = route_times(self.model, int(start), position, _pickup(first), ready, drops,
                                   at_pickup=number == 0 and bool(waiting),
                                   arrived_ms=min((int(h["at_pickup_at"]) for h in waiting if h.get("at_pickup_at")),
                                                  default=None))
                pickup_etas.update({h["id"]: int(plan.pickup) for h in trip if plan.pickup is not None})
                # Per order still ``assigned``: an add-on given to a rider already at the counter
                # brings its kitchen "rider arriving now" at once.
                coming = [h for h in trip if h["status"] == "assigned"]
                if plan.pickup_arrival is not None and coming:
                    prompts += self._due_prompts(coming, int(plan.pickup_arrival), now, rider_id)
                    arrivals.update({h["id"]: int(plan.pickup_arrival) for h in coming})
            else:
                # The rider's own stops under way (first trip only: it is where the rider is now):
                # the pickup it has just made, the door it says it is at, the one it delivered at.
                plan = route_times(self.model, int(start), position, None, None, drops,
                                   collected=_last_collected(trip) if number == 0 else None,
                                   at_dropoff_ms=_at_door_since(first) if number == 0 else None,
                                   delivered=_last_delivered(trip, done) if number == 0 else None)
            etas.update({h["id"]: int(t) for h, t in zip(trip, plan.dropoffs)})
            start, position = plan.dropoffs[-1] + self.model.dropoff_service_s * 500, drops[-1]
        pipe = self.rt.redis.pipeline(transaction=False)
        for h in mine:
            eta, arrival = etas.get(h["id"]), arrivals.get(h["id"])
            frame = orjson.dumps(rider_location(h["id"], rider_id, fix, eta, stops_before.get(h["id"])))
            kitchen = b"" if arrival is None else orjson.dumps(rider_eta_frame(h["id"], rider_id, arrival, now))
            pipe.eval(_SET_ETA, 1, order_key(h["merchant_id"], h["id"]), rider_id, "" if eta is None else eta,
                      pickup_etas.get(h["id"], ""), order_channel(h["id"]), frame, "" if arrival is None else arrival,
                      RIDER_ETA_STEP_MS, merchant_channel(h["merchant_id"]), kitchen, stops_before.get(h["id"], ""))
        for h, kind, arrival in prompts:
            minutes = max(0.0, (arrival - now) / 60000)
            frame = orjson.dumps({"type": "prompt", "order_id": h["id"], "kind": kind, "rider_id": rider_id, "rider_eta": arrival,
                                  "minutes_away": round(minutes, 1), "message": prompt_text(kind, minutes), "ts": now})
            pipe.eval(_PROMPT_ONCE, 1, order_key(h["merchant_id"], h["id"]), rider_id, _prompted_field(kind, rider_id),
                      frame, merchant_channel(h["merchant_id"]), frame)
        await pipe.execute()

    def _due_prompts(self, orders: list[dict[str, str]], arrival: int, now: int,
                     rider_id: str) -> list[tuple[dict[str, str], str, int]]:
        out = []
        away_ms = arrival - now
        for h in orders:
            if h.get("food_ready_at"):
                continue
            prep_min = float(h["prep_minutes"]) if h.get("prep_minutes") else self.rt.settings.default_prep_min
            if away_ms <= prep_min * 60000 and _sent_prompt(h, "start_preparing", rider_id) is None:
                out.append((h, "start_preparing", arrival))
        for h in orders:
            if away_ms <= self.rt.settings.arriving_prompt_s * 1000 and _sent_prompt(h, "rider_arriving", rider_id) is None:
                out.append((h, "rider_arriving", arrival))
        return out


async def kitchen_catch_up(redis: AnyRedis, merchant_id: str, order_ids: Iterable[str],
                           now_ms: int) -> list[dict[str, Any]]:
    """For those of ``order_ids`` whose rider is still on its way to collect them: the rider's
    arrival as last told (``rider_eta``) and the prompts already sent (its ``rider_arriving``;
    ``start_preparing`` while the food is not ready and the kitchen has not delayed it since),
    so a kitchen board that reloads, or opens after they were sent, shows them too."""
    ids = sorted(set(order_ids))
    pipe = redis.pipeline(transaction=False)
    for oid in ids:
        pipe.hgetall(order_key(merchant_id, oid))
    out = []
    for h in await pipe.execute():
        if not h or h.get("status") != "assigned" or not h.get("rider_id"):
            continue
        if h.get("rider_eta"):
            out.append(rider_eta_frame(h["id"], h["rider_id"], int(h["rider_eta"]), now_ms))
        kinds = ("rider_arriving",) if h.get("food_ready_at") else ("start_preparing", "rider_arriving")
        delayed_at = int(h.get("food_delayed_at") or 0)
        for kind in kinds:
            frame = _sent_prompt(h, kind, h["rider_id"])
            if frame is None or frame.get("type") != "prompt":
                continue  # none in this assignment, or marked by an earlier version (a time, not the frame)
            if kind == "start_preparing" and delayed_at >= int(frame.get("ts") or 0):
                continue  # timed to the ready time a later delay moved: the live board dropped it too
            out.append(frame)
    return out


def _prompted_field(kind: str, rider_id: str) -> str:
    """The order's hash field that marks a prompt as sent (its frame): "start preparing" per
    order, "rider arriving" per rider; either counts only in the assignment it was sent in."""
    return f"prompted_{kind}" if kind == "start_preparing" else f"prompted_{kind}:{rider_id}"


def _sent_prompt(order: dict[str, str], kind: str, rider_id: str) -> dict[str, Any] | None:
    """The prompt of ``kind`` sent to the order's kitchen for its current assignment to
    ``rider_id`` (a mark from before ``assigned_at`` was for an earlier rider: ``None``); a
    mark an earlier version wrote (a time) counts as sent, with no frame to show (``{}``)."""
    mark = order.get(_prompted_field(kind, rider_id))
    if not mark:
        return None
    try:
        frame = orjson.loads(mark)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(frame, dict):  # (an earlier version's mark: a time)
        frame, ts = {}, frame if isinstance(frame, (int, float)) else 0
    else:
        ts = frame.get("ts") if isinstance(frame.get("ts"), (int, float)) else 0
    if ts < int(order.get("assigned_at") or 0):
        return None
    return frame


def _last_collected(trip: list[dict[str, str]]) -> tuple[tuple[float, float], int] | None:
    """Where and when the trip's food was last collected (its latest ``picked_up_at``), if known."""
    stamped = [h for h in trip if h.get("picked_up_at")]
    if not stamped:
        return None
    last = max(stamped, key=lambda h: int(h["picked_up_at"]))
    return _pickup(last), int(last["picked_up_at"])


# The door and time of the drop-off just made (ARGV[2], "lat,lng,ms") written as ``last_drop``
# on the order KEYS[1] while the rider ARGV[1] still has it in its bag (picked up).
_MARK_DROP = """
local h = redis.call('HMGET', KEYS[1], 'rider_id', 'status')
if h[1] ~= ARGV[1] or (h[2] ~= 'picked_up' and h[2] ~= 'at_dropoff') then return 0 end
redis.call('HSET', KEYS[1], 'last_drop', ARGV[2])
return 1
"""


async def mark_drop(rt: Runtime, order: dict[str, str], rider_id: str) -> None:
    """After ``order`` was delivered by ``rider_id``: tell the orders still in the rider's bag
    where and when (``last_drop``), so their live ETAs leave that door no earlier than the
    model says (:func:`_last_delivered`) without loading the delivered order with every fix.
    A few round trips per drop-off, none per fix."""
    if not order.get("delivered_at"):
        return
    ids = sorted(oid for oid in await rt.redis.smembers(rider_orders_key(rider_id)) if oid != order["id"])
    bag = [h for h in await store_of(rt).load_many(ids) if carried_by(h, rider_id) and h["status"] not in TO_COLLECT]
    if bag:
        lat, lng = _drop(order)
        pipe = rt.redis.pipeline(transaction=False)
        for h in bag:
            pipe.eval(_MARK_DROP, 1, order_key(h["merchant_id"], h["id"]), rider_id,
                      f"{lat!r},{lng!r},{int(order['delivered_at'])}")
        await pipe.execute()


def _last_delivered(trip: list[dict[str, str]], done: list[dict[str, str]]) -> tuple[tuple[float, float], int] | None:
    """Where and when the rider made its last drop-off of this trip, if known: from the
    ``last_drop`` the trip's orders were marked with, or from an order in ``done`` (those of
    the rider's orders just delivered, read before the rider's set of orders was reloaded).
    One from before the trip's last pickup was another trip's."""
    seen = [(_drop(h), int(h["delivered_at"])) for h in done if h.get("delivered_at")]
    for h in trip:
        if h.get("last_drop"):
            lat, lng, ts = h["last_drop"].split(",")
            seen.append(((float(lat), float(lng)), int(ts)))
    collected = _last_collected(trip)
    seen = [(door, ts) for door, ts in seen if collected is None or ts >= collected[1]]
    return max(seen, key=lambda d: d[1]) if seen else None


def _at_door_since(order: dict[str, str]) -> int | None:
    """When the rider said it reached the order's door (``None`` unless it is ``at_dropoff``)."""
    return int(order["at_dropoff_at"]) if order["status"] == "at_dropoff" and order.get("at_dropoff_at") else None


def _pickup(h: dict[str, Any]) -> tuple[float, float]:
    return float(h["pickup_lat"]), float(h["pickup_lng"])


def _drop(h: dict[str, Any]) -> tuple[float, float]:
    return float(h["drop_lat"]), float(h["drop_lng"])
