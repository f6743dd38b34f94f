"""Geometry shared by locations, orders, dispatch and the MDRP replay.

- Great-circle distance (:func:`haversine_m`) for ETAs and nearby search.
- H3 cells at three fixed resolutions (see docs/architecture.md for why these):
  :data:`RIDER_CELL_RES` names the fine cell kept in a rider's record,
  :data:`REGION_RES` names the Redis geoset a rider lives in (``riders:{<cell>}``),
  :data:`DISPATCH_RES` names a dispatch region (one dispatcher at a time per region).
- :func:`geo_index_lat`: Redis GEO indexes latitudes within +-85.05112878 degrees only (its
  Web Mercator range); positions nearer the poles are indexed (and searched from) there.
- :class:`LocalProjection`: an equirectangular projection around a fixed origin, giving
  planar metres for the kernel. ``to_xy`` and ``to_latlng`` are exact inverses, so the
  MDRP replay (planar instance metres mapped to lat/lng) runs production code paths
  without changing any distance.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import h3
import numpy as np

EARTH_RADIUS_M = 6_371_008.8
RIDER_CELL_RES = 9
REGION_RES = 6
DISPATCH_RES = 4
GEO_MAX_LAT = 85.05112878  # Redis GEOADD / GEOSEARCH refuse latitudes beyond this


def haversine_m(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    """Great-circle distance in metres between two WGS84 points."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lng2 - lng1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def geo_index_lat(lat: float) -> float:
    """``lat`` clamped into the latitudes a Redis geoset can hold (exact everywhere people live)."""
    return max(-GEO_MAX_LAT, min(GEO_MAX_LAT, lat))


def rider_cell(lat: float, lng: float) -> str:
    """The fine H3 cell stored in a rider's record."""
    return h3.latlng_to_cell(lat, lng, RIDER_CELL_RES)


def region_cell(lat: float, lng: float) -> str:
    """The H3 cell whose geoset (``riders:{<cell>}``) holds a rider at this point."""
    return h3.latlng_to_cell(lat, lng, REGION_RES)


def dispatch_region(lat: float, lng: float) -> str:
    """The dispatch region (coarse H3 cell) an order picked up at this point belongs to."""
    return h3.latlng_to_cell(lat, lng, DISPATCH_RES)


@dataclass(frozen=True)
class LocalProjection:
    """Planar metres around ``(origin_lat, origin_lng)``: x east, y north."""

    origin_lat: float
    origin_lng: float

    @property
    def _m_per_deg_lat(self) -> float:
        return math.pi * EARTH_RADIUS_M / 180.0

    @property
    def _m_per_deg_lng(self) -> float:
        return self._m_per_deg_lat * math.cos(math.radians(self.origin_lat))

    def to_xy(self, lat: float, lng: float) -> tuple[float, float]:
        """Planar (x, y) metres of a WGS84 point (or, element-wise, of numpy arrays of them); east
        or west the short way, across the antimeridian too (179.9999 is just west of -179.9999)."""
        return _short_way(lng - self.origin_lng) * self._m_per_deg_lng, (lat - self.origin_lat) * self._m_per_deg_lat

    def to_latlng(self, x: float, y: float) -> tuple[float, float]:
        """The WGS84 point at planar (x, y) metres; the inverse of :meth:`to_xy`."""
        return self.origin_lat + y / self._m_per_deg_lat, _short_way(self.origin_lng + x / self._m_per_deg_lng)


def _short_way(degrees: Any) -> Any:
    """A longitude (or a difference of two) folded into [-180, 180]; values already there are
    returned as they are, to the bit (a float or, element-wise, a numpy array)."""
    if isinstance(degrees, np.ndarray):
        return np.where(degrees > 180, degrees - 360, np.where(degrees < -180, degrees + 360, degrees))
    return degrees - 360 if degrees > 180 else degrees + 360 if degrees < -180 else degrees
