"""``/healthz`` (process up), ``/readyz`` (Redis takes a write; a cluster: every primary, state ok) and ``/metrics`` (Prometheus)."""
from __future__ import annotations

import asyncio
import time
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, Gauge, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tracker.errors import ApiError
from tracker.jsonutil import JSONResponse
from tracker.redis_client import REDIS_REFUSES_WRITES, check_ready, redis_unavailable
from tracker.runtime import Runtime, runtime_of


async def healthz(request: Request) -> Response:
    rt = runtime_of(request)
    return JSONResponse({"status": "ok", "ts": rt.clock.now_ms(), "time_scale": rt.clock.scale})


DEGRADED_WINDOW_S = 60.0
REDIS_ANSWER_TIMEOUT_S = 2.0


async def _redis_fault(rt: Runtime) -> Exception | None:
    """Why Redis did not answer within :data:`REDIS_ANSWER_TIMEOUT_S` (a cluster: every primary,
    state ok), or ``None`` when it did."""
    try:
        async with asyncio.timeout(REDIS_ANSWER_TIMEOUT_S):
            await check_ready(rt.redis)
    except Exception as exc:  # noqa: BLE001 - any failure means not answering
        return exc
    return None


def degraded_tasks(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Those of a process's background ``tasks`` (its supervisor's status) that failed within
    :data:`DEGRADED_WINDOW_S`, with their last error (``/readyz`` names them; the ops page shows them)."""
    now = time.time()
    return [t for t in tasks if isinstance(t["last_error_at"], float) and now - t["last_error_at"] < DEGRADED_WINDOW_S]


def _not_ready(rt: Runtime, fault: Exception | None) -> ApiError | None:
    """Why this process cannot serve now (a 503), or ``None``: Redis does not answer (``fault``), or
    its pub/sub listener, which every socket needs, is not connected (yet), or not proven alive (its
    connection answered nothing yet, or went silent), although Redis answers; or
    this host's clock does not agree with Redis's (``clock_disagreement``: :mod:`tracker.agreement`)."""
    if fault is not None:
        return redis_unavailable(fault) if isinstance(fault, REDIS_REFUSES_WRITES) else \
            ApiError("redis_unavailable", f"Redis does not answer: {str(fault) or type(fault).__name__}")
    if not rt.pubsub.listening:
        return ApiError("redis_unavailable", "Redis answers, but this process's pub/sub listener (the task "
                        "pubsub-listener) is not connected to it yet, or its connection is not proven alive "
                        "(Redis confirmed nothing on it yet, or it went silent and is being replaced): sockets "
                        "opened now would be closed 1011")
    off = rt.clock_check.why_not()
    if off is not None:  # (its offers' and riders' times are not the fleet's: another process serves them better)
        return ApiError("clock_disagreement", f"{off}; until it agrees again this process neither expires offers, "
                        "sweeps stale riders, takes orders back from silent riders nor dispatches")
    return None


async def readyz(request: Request) -> Response:
    """200 while Redis answers, the pub/sub listener is connected to it and this host's clock agrees
    with Redis's; ``degraded`` names the
    background tasks that failed in the last minute; ``websockets``: this process's open sockets
    counted against its limit (``open``, ``max``) and its operators' sockets, which are not."""
    rt = runtime_of(request)
    err = _not_ready(rt, await _redis_fault(rt))
    tasks = rt.supervisor.status()  # (as of the answer: read after the wait for Redis)
    degraded = [t["name"] for t in degraded_tasks(tasks)]
    if err is not None:
        return JSONResponse({**err.body(), "tasks": tasks}, status_code=err.status)
    hub = rt.hub
    return JSONResponse({"status": "ready", "degraded": degraded, "tasks": tasks,
                         "websockets": {"open": hub.counted, "max": hub.max_sessions,
                                        "operators": hub.operators}})


async def metrics(request: Request) -> Response:
    """Prometheus's scrape; ``tracker_redis_up`` is whether Redis answered this very scrape (the
    fleet-wide ``tracker_fleet_*`` gauges keep their last values while it does not)."""
    rt = runtime_of(request)
    up = rt.services.get("redis_up")
    if up is None:
        up = rt.services["redis_up"] = Gauge(
            "tracker_redis_up", "1 when Redis answered this scrape within 2 s, else 0 (then the tracker_fleet_* "
            "gauges are as last read)", registry=rt.registry)
    up.set(1 if await _redis_fault(rt) is None else 0)
    return Response(generate_latest(rt.registry), media_type=CONTENT_TYPE_LATEST)


routes = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
]
