"""An operator pauses a rider: no offers until resumed, whatever the rider's app says.

For a rider the operator cannot trust with new work for now (a broken bike reported by phone,
an app stuck on "available", a dispute): ``POST /v1/riders/{rider_id}/pause`` with a
``reason`` keeps it out of dispatch on every process, withdraws the offer it is considering,
and tells it (``{"type": "paused", "by": "operator", "reason"}``, again on every connect
while paused); ``POST /v1/riders/{rider_id}/resume`` lifts it (``{"type": "resumed", "by":
"operator"}``). The orders it carries stay its own: taking them back is a separate step
(``/v1/orders/{id}/unassign``). The pause is one hash per rider (``rider:{<id>}:pause``, in the
rider record's slot, no expiry), read beside the record by nearby search and the ops snapshot.
"""
from __future__ import annotations

import logging
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tracker.auth import Role
from tracker.errors import ApiError
from tracker.http.body import json_body
from tracker.jsonutil import JSONResponse
from tracker.locations.store import pause_key
from tracker.logs import log_failure
from tracker.redis_client import REDIS_DOWN, AnyRedis
from tracker.riders.endpoint import ON_CONNECT, RiderConnection, inbox_channel
from tracker.runtime import Runtime, runtime_of
from tracker.validate import is_valid_id, require_reason

log = logging.getLogger("tracker.riders")


def paused_frame(reason: str) -> dict[str, Any]:
    """What the rider is told while paused."""
    return {"type": "paused", "by": "operator", "reason": reason}


async def pause_of(redis: AnyRedis, rider_id: str) -> dict[str, Any] | None:
    """The rider's pause as the wire shows it (``{"reason", "at"}``), or ``None``."""
    raw = await redis.hgetall(pause_key(rider_id))
    return parse_pause(raw)


def parse_pause(raw: dict[str, str] | None) -> dict[str, Any] | None:
    """A stored pause hash in wire form (``None`` for none); for readers that fetched it in a pipeline."""
    if not raw:
        return None
    return {"reason": raw.get("reason", ""), "at": int(raw["at"]) if raw.get("at", "").isdigit() else None}


def _rider_id(request: Request) -> str:
    rider_id = request.path_params["rider_id"]
    if not is_valid_id(rider_id):
        raise ApiError("bad_request", "rider ids are 1-64 characters from [A-Za-z0-9_.:-]")
    return rider_id


async def _tell(rt: Runtime, rider_id: str, frame: dict[str, Any]) -> None:
    """Best effort, as for order steps: a rider that misses it hears it on its next connect."""
    try:
        await rt.pubsub.publish(inbox_channel(rider_id), orjson.dumps(frame).decode())
    except REDIS_DOWN as exc:
        log_failure(log, "rider not told of its pause (it is on its next connect)", exc, rider=rider_id)


async def pause(request: Request) -> Response:
    """Pause the rider (operator only, with a reason): no offers until resumed; its open offer is withdrawn."""
    rt = runtime_of(request)
    rt.authenticate(request).require(Role.OPERATOR)
    reason = require_reason(await json_body(request))
    rider_id = _rider_id(request)
    now = rt.clock.now_ms()
    await rt.redis.hset(pause_key(rider_id), mapping={"reason": reason, "at": now})
    await rt.services["dispatcher"].withdraw_offer_of(rider_id)
    await _tell(rt, rider_id, paused_frame(reason))
    return JSONResponse({"rider_id": rider_id, "paused": {"reason": reason, "at": now}})


async def resume(request: Request) -> Response:
    """Lift the rider's pause (operator only); resuming a rider that is not paused changes nothing."""
    rt = runtime_of(request)
    rt.authenticate(request).require(Role.OPERATOR)
    rider_id = _rider_id(request)
    if await rt.redis.delete(pause_key(rider_id)):
        await _tell(rt, rider_id, {"type": "resumed", "by": "operator"})
    return JSONResponse({"rider_id": rider_id, "paused": None})


async def tell_on_connect(conn: RiderConnection) -> None:
    """A paused rider hears so on every connect."""
    current = await pause_of(conn.runtime.redis, conn.rider_id)
    if current is not None:
        await conn.send(paused_frame(current["reason"]))


ON_CONNECT.append(tell_on_connect)

routes = [
    Route("/v1/riders/{rider_id}/pause", pause, methods=["POST"]),
    Route("/v1/riders/{rider_id}/resume", resume, methods=["POST"]),
]
