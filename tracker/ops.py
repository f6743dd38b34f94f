"""``GET /v1/ops/snapshot`` (operator): the fleet, open orders by H3 cell, dispatch and service figures.

What the ops page draws: every fresh rider with its state (``free``, ``offered``, ``busy``,
``unavailable``) and every rider carrying orders even when it has gone silent (``stale``:
food on the road with nobody answering is what an operator must see), hexagons (res 8) with their open orders and free riders and their boundary,
the newest dispatch round of any process, and the fleet-wide service level.
"""
from __future__ import annotations

import h3
import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tracker.auth import Role
from tracker.dispatch.service import LAST_ROUND_KEY
from tracker.dispatch.offers import rider_offer_key
from tracker.jsonutil import JSONResponse
from tracker.locations import CARRYING_RIDERS, rider_orders_key
from tracker.locations.store import ACTIVE_REGIONS, is_silent, record_key, seen_key
from tracker.orders.metrics import service_level
from tracker.orders.service import load_orders
from tracker.orders.store import open_order_regions, open_orders_key
from tracker.runtime import Runtime, runtime_of

HEX_RES = 8
MAX_RIDERS = 5000
MAX_ORDERS = 2000


async def _riders(rt: Runtime, now: int) -> list[dict]:
    stale = int(rt.settings.stale_after_s * 1000)
    ids: list[str] = []
    for region in await rt.redis.smembers(ACTIVE_REGIONS):
        ids += await rt.redis.zrangebyscore(seen_key(region), now - stale, "+inf", start=0, num=MAX_RIDERS)
    ids = sorted(set(ids) | await rt.redis.smembers(CARRYING_RIDERS))[:MAX_RIDERS]
    pipe = rt.redis.pipeline(transaction=False)
    for rid in ids:
        pipe.hmget(record_key(rid), "lat", "lng", "ts", "available", "left_at")
        pipe.scard(rider_orders_key(rid))
        pipe.exists(rider_offer_key(rid))
    res = await pipe.execute()
    out = []
    for i, rid in enumerate(ids):
        (lat, lng, ts, available, left_at), carrying, offered = res[3 * i: 3 * i + 3]
        if lat is None:
            continue
        silent = is_silent(now, int(ts), left_at, stale)
        if silent and not carrying:
            continue  # listed as carrying a moment ago, and no longer
        state = "busy" if carrying else "offered" if offered else "free" if available != "0" else "unavailable"
        out.append({"id": rid, "lat": float(lat), "lng": float(lng), "ts": int(ts), "state": state, "orders": carrying,
                    "stale": silent})
    return out


async def _open_orders(rt: Runtime) -> list[dict]:
    ids: list[str] = []
    for region in await open_order_regions(rt.redis):
        ids += await rt.redis.zrange(open_orders_key(region), 0, MAX_ORDERS)
    return [{"id": o["id"], "merchant_id": o["merchant_id"], **o["pickup"], "status": o["status"]}
            for o in await load_orders(rt, ids[:MAX_ORDERS]) if o is not None]


async def snapshot(request: Request) -> Response:
    rt = runtime_of(request)
    rt.authenticate(request).require(Role.OPERATOR)
    now = rt.clock.now_ms()
    riders, orders = await _riders(rt, now), await _open_orders(rt)
    cells: dict[str, dict] = {}
    for kind, items in (("open_orders", orders), ("free_riders", [r for r in riders if r["state"] == "free"])):
        for item in items:
            cell = h3.latlng_to_cell(item["lat"], item["lng"], HEX_RES)
            entry = cells.setdefault(cell, {"cell": cell, "open_orders": 0, "free_riders": 0,
                                            "boundary": [list(p) for p in h3.cell_to_boundary(cell)]})
            entry[kind] += 1
    last_round = await rt.redis.get(LAST_ROUND_KEY)
    return JSONResponse({
        "ts": now,
        "riders": riders,
        "open_orders": orders,
        "cells": list(cells.values()),
        "dispatch": orjson.loads(last_round) if last_round else {},
        "service": await service_level(rt.redis, rt.settings.on_time_target_min),
    })


routes = [Route("/v1/ops/snapshot", snapshot, methods=["GET"])]
