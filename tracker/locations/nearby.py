"""Nearby search: the region cells a circle touches, GEOSEARCH in each, true distances.

Three round trips: the regions that hold riders at all (``regions:active``), then one pipeline
searching every region geoset the radius can reach among them (an H3 ``grid_disk`` around the
centre's region cell), then one reading the candidates' records
(fresh timestamp, availability, exact coordinates). Results are sorted by haversine
distance from the centre; stale riders (and, if asked, unavailable ones) are left out.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import h3

from tracker.geo import REGION_RES, geo_index_lat, haversine_m, region_cell
from tracker.locations.store import ACTIVE_REGIONS, geoset_key, is_silent, pause_key, record_key
from tracker.redis_client import AnyRedis

MAX_RADIUS_M = 50_000.0
MAX_LIMIT = 5000
# Centres of neighbouring res-6 cells are about sqrt(3) edges apart; the smallest cells of a
# resolution are ~half the average size, so step by the smallest plausible spacing.
_MIN_CENTRE_SPACING_M = math.sqrt(3) * h3.average_hexagon_edge_length(REGION_RES, unit="m") * 0.5


@dataclass(frozen=True)
class NearbyRider:
    """A rider found near a point."""

    id: str
    lat: float
    lng: float
    distance_m: float
    ts: int
    available: bool
    shift_end: int | None = None
    shift_start: int | None = None

    def wire(self) -> dict[str, object]:
        return {
            "id": self.id, "lat": self.lat, "lng": self.lng, "distance_m": round(self.distance_m, 1),
            "ts": self.ts, "available": self.available,
        }


def region_cells_within(lat: float, lng: float, radius_m: float) -> list[str]:
    """Every region cell a circle of ``radius_m`` around the point may touch."""
    rings = int(math.ceil(radius_m / _MIN_CENTRE_SPACING_M)) + 1
    return list(h3.grid_disk(region_cell(lat, lng), rings))


async def nearby(
    redis: AnyRedis, lat: float, lng: float, radius_m: float, limit: int, *,
    now_ms: int, stale_after_ms: int = 30_000, only_available: bool = False,
) -> list[NearbyRider]:
    """Riders within ``radius_m`` of (lat, lng), nearest first, at most ``limit``."""
    active = await redis.smembers(ACTIVE_REGIONS)  # only regions that hold riders at all
    cells = [c for c in region_cells_within(lat, lng, radius_m) if c in active]
    if not cells:
        return []
    pipe = redis.pipeline(transaction=False)
    for cell in cells:
        # A little margin: Redis measures on its own sphere; the exact cut is ours below.
        # Near the poles riders are indexed at Redis GEO's edge latitude, and searched from it.
        pipe.geosearch(geoset_key(cell), longitude=lng, latitude=geo_index_lat(lat), radius=radius_m * 1.01 + 1,
                       unit="m")
    candidates = sorted({rid for found in await pipe.execute() for rid in found})
    if not candidates:
        return []
    pipe = redis.pipeline(transaction=False)
    for rid in candidates:
        pipe.hmget(record_key(rid), "lat", "lng", "ts", "available", "shift_end", "shift_start", "left_at")
        pipe.exists(pause_key(rid))
    res = iter(await pipe.execute())
    out: list[NearbyRider] = []
    for rid in candidates:
        (rlat, rlng, ts, available, shift_end, shift_start, left_at), paused = next(res), next(res)
        if rlat is None or ts is None or is_silent(now_ms, int(ts), left_at, stale_after_ms):
            continue
        is_available = available != "0" and not paused  # (an operator's pause outweighs the app's word)
        if only_available and not is_available:
            continue
        if shift_end is not None and only_available and int(shift_end) <= now_ms:
            continue
        rlat_f, rlng_f = float(rlat), float(rlng)
        distance = haversine_m(lat, lng, rlat_f, rlng_f)
        if distance <= radius_m:
            out.append(NearbyRider(rid, rlat_f, rlng_f, distance, int(ts), is_available,
                                   int(shift_end) if shift_end else None, int(shift_start) if shift_start else None))
    out.sort(key=lambda r: (r.distance_m, r.id))
    return out[:limit]
