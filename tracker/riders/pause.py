"""An operator pauses a rider: no offers until resumed, whatever the rider's app says.

For a rider the operator cannot trust with new work for now (a broken bike reported by phone,
an app stuck on "available", a dispute): ``POST /v1/riders/{rider_id}/pause`` with a
``reason`` keeps it out of dispatch on every process, withdraws the offer it is considering,
and tells it (``{"type": "paused", "by": "operator", "reason"}``; its ``route`` frames, on
every connect and after an inbox gap, carry ``paused`` too); ``POST
/v1/riders/{rider_id}/resume`` lifts it (``{"type": "resumed", "by": "operator"}``). The
orders it carries stay its own: taking them back is a separate step
(``/v1/orders/{id}/unassign``).

A pause is one hash per rider (``rider:{<id>}:pause``: reason, since when, by which operator;
in the rider record's slot, no expiry), read beside the record by nearby search, and listed
in ``riders:paused`` so that the ops snapshot shows every paused rider, online or not. Pause
and resume are logged.
"""
from __future__ import annotations

import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tracker.auth import Role
from tracker.http.body import json_body
from tracker.jsonutil import JSONResponse
from tracker.locations.store import pause_key
from tracker.orders.notices import tell_rider
from tracker.redis_client import AnyRedis
from tracker.runtime import runtime_of
from tracker.validate import path_id, require_reason

log = logging.getLogger("tracker.riders")

PAUSED_RIDERS = "riders:paused"  # the ids of paused riders (a hint: each one's own hash decides)
MAX_LISTED = 500  # paused riders a snapshot lists at most


def paused_frame(reason: str) -> dict[str, Any]:
    """What the rider is told when the operator pauses it."""
    return {"type": "paused", "by": "operator", "reason": reason}


def parse_pause(raw: dict[str, str] | None) -> dict[str, Any] | None:
    """A stored pause hash in wire form (``{"reason", "at", "by"}``; ``None`` for none)."""
    if not raw:
        return None
    return {"reason": raw.get("reason", ""), "at": int(raw["at"]) if raw.get("at", "").isdigit() else None,
            "by": raw.get("by") or None}


async def pause_of(redis: AnyRedis, rider_id: str) -> dict[str, Any] | None:
    """The rider's pause in wire form, or ``None``."""
    return parse_pause(await redis.hgetall(pause_key(rider_id)))


async def paused_riders(redis: AnyRedis) -> tuple[list[dict[str, Any]], int]:
    """Every paused rider (``{"id", "reason", "at", "by"}``, longest paused first, at most
    :data:`MAX_LISTED`) and how many there are; entries whose pause is gone are dropped."""
    ids = sorted(await redis.smembers(PAUSED_RIDERS))
    pipe = redis.pipeline(transaction=False)
    for rid in ids:
        pipe.hgetall(pause_key(rid))
    out, gone = [], []
    for rid, raw in zip(ids, await pipe.execute()):
        found = parse_pause(raw)
        if found is None:
            gone.append(rid)
        else:
            out.append({"id": rid, **found})
    if gone:  # a resume that stopped between its two writes
        await redis.srem(PAUSED_RIDERS, *gone)
    out.sort(key=lambda p: (p["at"] or 0, p["id"]))
    return out[:MAX_LISTED], len(out)


# KEYS[1]: the rider's pause; ARGV: now, the reason, the operator. Since when (kept if paused
# already), why and by whom, in one step (a script: a MULTI cannot follow a slot being migrated).
_PAUSE = """
redis.call('HSETNX', KEYS[1], 'at', ARGV[1])
redis.call('HSET', KEYS[1], 'reason', ARGV[2], 'by', ARGV[3])
return 0
"""


async def pause(request: Request) -> Response:
    """Pause the rider (operator only, with a reason): no offers until resumed; its open offer
    is withdrawn. Pausing a paused rider replaces the reason and keeps since when."""
    rt = runtime_of(request)
    operator = rt.authenticate(request)
    operator.require(Role.OPERATOR)
    reason = require_reason(await json_body(request))
    rider_id = path_id(request.path_params["rider_id"], "rider")
    await rt.redis.eval(_PAUSE, 1, pause_key(rider_id), rt.clock.now_ms(), reason, operator.sub)
    await rt.redis.sadd(PAUSED_RIDERS, rider_id)
    await rt.services["dispatcher"].withdraw_offer_of(rider_id)
    await tell_rider(rt, rider_id, paused_frame(reason))  # (best effort: its next route says it)
    log.info("rider paused", extra={"rider": rider_id, "by": operator.sub, "reason": reason})
    return JSONResponse({"rider_id": rider_id, "paused": await pause_of(rt.redis, rider_id)})


async def resume(request: Request) -> Response:
    """Lift the rider's pause (operator only); resuming a rider that is not paused changes nothing."""
    rt = runtime_of(request)
    operator = rt.authenticate(request)
    operator.require(Role.OPERATOR)
    rider_id = path_id(request.path_params["rider_id"], "rider")
    lifted = await rt.redis.delete(pause_key(rider_id))
    await rt.redis.srem(PAUSED_RIDERS, rider_id)
    if await rt.redis.exists(pause_key(rider_id)):  # a pause that came in between (two operators): keep it listed
        await rt.redis.sadd(PAUSED_RIDERS, rider_id)
    if lifted:
        await tell_rider(rt, rider_id, {"type": "resumed", "by": "operator"})
        log.info("rider resumed", extra={"rider": rider_id, "by": operator.sub})
    return JSONResponse({"rider_id": rider_id, "paused": None})


routes = [
    Route("/v1/riders/{rider_id}/pause", pause, methods=["POST"]),
    Route("/v1/riders/{rider_id}/resume", resume, methods=["POST"]),
]
