"""The Starlette application: routes, error mapping, and the lifespan that builds the runtime.

Features are modules with a ``routes`` list and optional ``async start(runtime)`` /
``async stop(runtime)`` hooks; :data:`FEATURES` lists them in start order.
"""
from __future__ import annotations

import contextlib
import logging
from types import ModuleType
from typing import AsyncIterator, Iterator

import dispatch_ext
from prometheus_client import CollectorRegistry, Gauge, Info
from prometheus_client.core import CounterMetricFamily
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from tracker import __version__
from tracker.clock import Clock
from tracker.errors import ApiError
from tracker.http import health
from tracker.http.no_store import NoStore
from tracker.http.nosniff import NoSniff
from tracker.http.unexpected import AnswerUnexpected
from tracker.logs import log_failure, log_throttled
from tracker.locations import feature as locations
from tracker.redis_client import REDIS_COMMAND_TIMEOUT_S, REDIS_DOWN, check_ready, connect, redis_unavailable
from tracker.open_files import REDIS_FILES_MAX
from tracker.orders import feature as orders
from tracker.dispatch import feature as dispatch
from tracker import agreement, ops, pages, revocations
from tracker.riders import endpoint as rider_endpoint
from tracker.riders import pause as rider_pause
from tracker.jsonutil import JSONResponse
from tracker.pubsub import PubSubHub
from tracker.runtime import Runtime
from tracker.settings import Settings
from tracker.supervisor import Supervisor
from tracker.validate import ID_RULE
from tracker.wsconn import CLOSE_POLICY, WsHub, close_reason

log = logging.getLogger("tracker.app")

KERNEL = "compiled" if dispatch_ext.IS_COMPILED else "pure-python"  # which dispatch kernel plans

FEATURES: list[ModuleType] = [health, agreement, revocations, rider_endpoint, locations, orders, dispatch, rider_pause, ops,
                               pages]

_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized", 403: "forbidden"}


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    raw_path = request.scope.get("raw_path") or b""
    if exc.status_code == 404 and raw_path.startswith(b"/v1/") and b"%2f" in raw_path.lower():
        # "/v1/orders/a%2Fb" matched no route (the slash splits it), but it names an id with a '/'
        err = ApiError("bad_request", f"ids in a path are {ID_RULE}: no '/' (%2F)")
        return JSONResponse(err.body(), status_code=err.status)
    code = _HTTP_CODES.get(exc.status_code, "bad_request" if exc.status_code < 500 else "internal")
    # (its headers kept: a 405 names the methods the path takes in ``Allow``, RFC 9110)
    return JSONResponse(ApiError(code, str(exc.detail)).body(), status_code=exc.status_code, headers=exc.headers)


async def _redis_down(request: Request, exc: Exception) -> Response:
    # (one line per outage window, counting the rest: every request fails while Redis is down)
    log_throttled(log, "Redis did not answer an HTTP request", f"{request.method} {request.url.path}: {exc!r}",
                  level=logging.WARNING)
    err = redis_unavailable(exc)
    return JSONResponse(err.body(), status_code=err.status)


async def _no_such_socket(websocket: WebSocket) -> None:
    """A WebSocket to a path that takes none: say so in a 1008 close, not an empty HTTP 403."""
    await websocket.accept()
    await websocket.close(CLOSE_POLICY, close_reason(f"not_found: no WebSocket endpoint at {websocket.url.path}"))


async def _socket_over_http(request: Request) -> Response:
    """Plain HTTP to a WebSocket endpoint: 426, naming what to do."""
    path = request.url.path
    if not any(isinstance(r, WebSocketRoute) and r.path == path for r in request.app.routes):
        raise HTTPException(404, f"no endpoint at {path}")
    err = ApiError("upgrade_required", f"{path} is a WebSocket endpoint: connect with a WebSocket client",
                   headers={"Upgrade": "websocket"})
    return JSONResponse(err.body(), status_code=err.status, headers=err.headers)


class _RefusalsCollector:
    """``tracker_websocket_refusals_total{reason}``: sockets this process turned away (over_capacity,
    rate_limited; connections: any connection answered 503 past the connection limit), read from
    the hub's counts at each scrape."""

    def __init__(self, hub: WsHub) -> None:
        self.hub = hub

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily("tracker_websocket_refusals", "WebSockets turned away, by reason", labels=["reason"])
        for reason in ("over_capacity", "rate_limited", "connections"):
            family.add_metric([reason], self.hub.refusals[reason])
        yield family


def create_app(settings: Settings, *, secret: str, redis_url: str, clock: Clock | None = None,
               redis_pool_size: int = REDIS_FILES_MAX) -> Starlette:
    """Build the ASGI app. Redis is connected (and features started) in the lifespan, with at most
    ``redis_pool_size`` connections to each primary."""
    hub = WsHub(settings.max_sockets_per_subject, settings.max_sockets)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        registry = CollectorRegistry()
        client = connect(  # (no command waits longer than REDIS_COMMAND_TIMEOUT_S for Redis: a hung one is a 503)
            redis_url, decode_responses=True, health_check_interval=30, socket_connect_timeout=REDIS_COMMAND_TIMEOUT_S,
            socket_timeout=REDIS_COMMAND_TIMEOUT_S, max_connections=redis_pool_size, wait_for_connection_s=2.0,
        )

        async def redis_serves() -> bool:  # a task that failed with Redis away restarts once this holds again
            await check_ready(client)
            return True

        supervisor = Supervisor(registry, ready=redis_serves)
        runtime = Runtime(
            settings=settings,
            secret=secret,
            redis=client,
            clock=clock or Clock(settings.time_scale),
            registry=registry,
            supervisor=supervisor,
            hub=hub,
            pubsub=PubSubHub(client, supervisor, registry),
        )
        Gauge("tracker_websocket_connections", "Open WebSocket sessions", registry=registry).set_function(
            lambda: len(hub)
        )
        registry.register(_RefusalsCollector(hub))
        Info("tracker_server", "This process: version, server clock speed, dispatch kernel", registry=registry).info(
            {"version": __version__, "time_scale": f"{runtime.clock.scale:g}", "kernel": KERNEL})
        app.state.runtime = runtime
        started: list[ModuleType] = []
        try:
            await runtime.pubsub.start()
            for feature in FEATURES:
                start = getattr(feature, "start", None)
                if start is not None:
                    await start(runtime)
                started.append(feature)
            yield
        finally:
            await hub.close_all()
            for feature in reversed(started):
                stop = getattr(feature, "stop", None)
                if stop is not None:
                    try:
                        await stop(runtime)
                    except Exception as exc:  # noqa: BLE001 - keep shutting the rest down
                        log_failure(log, f"stopping {feature.__name__} failed", exc)  # (Redis gone: one line)
            await runtime.supervisor.stop()
            await runtime.pubsub.stop()
            await client.aclose()

    routes = [route for feature in FEATURES for route in getattr(feature, "routes", [])]
    routes += [Route("/v1/ws/{name:path}", _socket_over_http), WebSocketRoute("/{path:path}", _no_such_socket)]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={ApiError: _api_error, HTTPException: _http_error,
                            **{cls: _redis_down for cls in REDIS_DOWN}},
        middleware=[Middleware(NoSniff), Middleware(NoStore), Middleware(AnswerUnexpected)],  # (outside: the 500s get them too)
    )
    app.router.redirect_slashes = False  # "/v1/orders/o1/" is not_found, not an empty 307 to elsewhere
    app.state.hub = hub
    return app
