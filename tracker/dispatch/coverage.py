"""Coverage: riders left where orders tend to come from are worth more than riders far away.

When one job can go to several riders at little difference, sending the one whose free
position is in a quiet part of town keeps the busy parts covered for the orders still to
come. Each rider's *density* is the demand near where it will be free: a sum over the
restaurants seen so far, weighted by their order counts, of ``exp(-travel_minutes / tau)``.
The planner adds ``weight x density / mean density`` to every job of that rider, so the
figure is a tie-breaker in minutes, the same for all jobs of one rider, and scale-free
across cities (docs/DISPATCH.md measures it). The density comes from the kernel
(``demand_density``), which gives the same bits on every CPU, whatever BLAS or SIMD numpy uses:
a matrix product through BLAS did not, nor the C library's ``exp`` (an FMA and a non-FMA one),
and one last bit decides a near tie, then a day's replay differs from there on (docs/DISPATCH.md,
"The same on every machine").
"""
from __future__ import annotations

import math

import numpy as np

from dispatch_ext import demand_density
from tracker.dispatch.model import DemandSite
from tracker.geo import LocalProjection


def coverage_penalty(rider_x: np.ndarray, rider_y: np.ndarray, demand: tuple[DemandSite, ...],
                     proj: LocalProjection, meters_per_minute: float, tau_min: float,
                     weight: float) -> np.ndarray:
    """Minutes to add to each rider's jobs for taking it away from where demand is."""
    if not demand or weight == 0.0 or len(rider_x) == 0:
        return np.zeros(len(rider_x))
    sx, sy = proj.to_xy(np.array([d.lat for d in demand]), np.array([d.lng for d in demand]))
    w = np.array([d.weight for d in demand], dtype=np.float64)
    density = demand_density(rider_x, rider_y, sx, sy, w, meters_per_minute, tau_min)
    mean = math.fsum(density) / len(density)  # exactly rounded: no summation order to differ
    if mean <= 0.0:
        return np.zeros(len(rider_x))
    return weight * density / mean
