"""``GET /v1/riders/nearby`` for operators."""
from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tracker.auth import Role
from tracker.errors import ApiError
from tracker.jsonutil import JSONResponse
from tracker.locations.nearby import MAX_LIMIT, MAX_RADIUS_M, nearby
from tracker.runtime import runtime_of
from tracker.validate import coordinates, plain_number


def _query_number(request: Request, name: str, default: float | None, lo: float, hi: float, *,
                  whole: bool = False) -> float:
    """A query parameter in ``[lo, hi]``; with ``whole``, plain digits only (no fraction, no exponent)."""
    raw = request.query_params.get(name)
    if raw is None:
        if default is None:
            raise ApiError("bad_request", f"query parameter '{name}' is required")
        return default
    if whole and not (raw.isascii() and raw.isdigit()):
        raise ApiError("bad_request", f"query parameter '{name}' must be a whole number from {lo:g} to {hi:g}, got {raw!r}")
    value = plain_number(raw)
    if value is None:
        raise ApiError("bad_request", f"query parameter '{name}' must be a number, got {raw!r}")
    if not lo <= value <= hi:
        raise ApiError("bad_request", f"query parameter '{name}' must be between {lo:g} and {hi:g}, got {raw}")
    return value


async def riders_nearby(request: Request) -> Response:
    """Riders within ``radius_m`` (default 2000) of ``lat``/``lng``, nearest first."""
    rt = runtime_of(request)
    rt.authenticate(request).require(Role.OPERATOR)
    params = request.query_params
    if "lat" not in params or "lng" not in params:
        raise ApiError("bad_coordinates", "query parameters 'lat' and 'lng' are required")
    lat, lng = plain_number(params["lat"]), plain_number(params["lng"])
    if lat is None or lng is None:
        raise ApiError("bad_coordinates", "'lat' and 'lng' must be plain decimal numbers")
    lat, lng = coordinates(lat, lng)
    radius = _query_number(request, "radius_m", 2000.0, 1.0, MAX_RADIUS_M)
    limit = int(_query_number(request, "limit", 50, 1, MAX_LIMIT, whole=True))
    found = await nearby(
        rt.redis, lat, lng, radius, limit, now_ms=rt.clock.now_ms(),
        stale_after_ms=int(rt.settings.stale_after_s * 1000),
    )
    return JSONResponse({"riders": [r.wire() for r in found]})


routes = [Route("/v1/riders/nearby", riders_nearby, methods=["GET"])]
