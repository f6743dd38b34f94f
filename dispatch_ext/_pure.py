"""Pure-Python (numpy) twin of the compiled dispatch kernel ``_kernel.pyx``.

Same public API, same shared boundary (``_api``/``_boundary``); only the core loops differ.
The assignment solver here is the plain shortest augmenting path (Jonker-Volgenant family,
Dijkstra on reduced costs, one free row at a time) vectorised over columns; the compiled
kernel adds the JV initialisation. Both are exact, so their totals agree; the other functions
perform the same floating-point operations in the same order (with the kernel's own exp, not the C
library's nor numpy's), so their results are identical, bit for bit.
"""
from __future__ import annotations

import itertools
from types import SimpleNamespace

import numpy as np

from dispatch_ext import _api
from dispatch_ext._boundary import BundleInputs, CostInputs, DensityInputs, DropInputs, PickupInputs


def _solve_assignment(c: np.ndarray) -> np.ndarray:
    """Optimal ``col_of_row`` for a finite n x m matrix with n <= m.

    Invariant: ``v`` are column duals with every assigned row's column a minimum of
    ``c[i] - v``, and unassigned columns keep ``v = 0`` (the rectangular dual condition).
    """
    n, m = c.shape
    v = np.zeros(m)
    col_of_row = np.full(n, -1, dtype=np.int64)
    row_of_col = np.full(m, -1, dtype=np.int64)
    for free_row in range(n):
        dist = c[free_row] - v
        pred = np.full(m, free_row, dtype=np.int64)
        scanned = np.zeros(m, dtype=bool)
        while True:
            candidates = np.where(scanned, np.inf, dist)
            j = int(np.argmin(candidates))
            lowest = candidates[j]
            if row_of_col[j] < 0:
                sink = j
                break
            scanned[j] = True
            i = row_of_col[j]
            reach = lowest + (c[i] - v) - (c[i, j] - v[j])
            better = ~scanned & (reach < dist)
            dist[better] = reach[better]
            pred[better] = i
        v[scanned] += dist[scanned] - lowest
        j = sink
        while True:
            i = pred[j]
            row_of_col[j] = i
            col_of_row[i], j = j, col_of_row[i]
            if i == free_row:
                break
    return col_of_row


def _travel(ax: np.ndarray, ay: np.ndarray, bx: np.ndarray, by: np.ndarray,
            meters_per_minute: float) -> np.ndarray:
    dx = ax[:, None] - bx[None, :]
    dy = ay[:, None] - by[None, :]
    return np.ceil(np.sqrt(dx * dx + dy * dy) / meters_per_minute)


# The compiled kernel's own exp (_kernel._exp), the same operations in the same order, each an
# elementwise ufunc (exact per element in IEEE-754, no FMA): neither the C library's exp (glibc
# picks an FMA or a non-FMA one by CPU) nor numpy's (a SIMD one by CPU), which differ in the last bit.
_EXP_MIN = -746.0  # below it exp(x) < 2**-1075: 0.0
_INV_LN2 = 1.4426950408889634
_LN2_HI, _LN2_LO = 0.6931471803691238, 1.9082149292705877e-10  # LN2_HI * k is exact for |k| <= 1100
_TAYLOR = (1.6059043836821613e-10, 2.08767569878681e-09, 2.505210838544172e-08, 2.755731922398589e-07,
           2.7557319223985893e-06, 2.48015873015873e-05, 0.0001984126984126984, 0.001388888888888889,
           0.008333333333333333, 0.041666666666666664, 0.16666666666666666, 0.5)  # 1/13! ... 1/2!


def _exp(x: np.ndarray) -> np.ndarray:
    """exp(x) for x <= 0, bit for bit as the compiled kernel's: within 1 ulp of exp."""
    live = x >= _EXP_MIN
    x = np.where(live, x, 0.0)
    k = np.rint(np.multiply(x, _INV_LN2))  # round half to even, as C's nearbyint
    r = np.subtract(np.subtract(x, np.multiply(k, _LN2_HI)), np.multiply(k, _LN2_LO))
    p = np.full_like(r, _TAYLOR[0])
    for c in _TAYLOR[1:]:  # Horner from 1/13! down to 1/2
        p = np.add(np.multiply(p, r), c)
    p = np.add(1.0, np.add(r, np.multiply(np.multiply(r, r), p)))  # 1 + r + r**2 (1/2 + r/6 + ...)
    return np.where(live, np.ldexp(p, k.astype(np.int32)), 0.0)


def _density(d: DensityInputs) -> np.ndarray:
    dx = d.rider.x[:, None] - d.site.x[None, :]
    dy = d.rider.y[:, None] - d.site.y[None, :]
    decay = -(np.sqrt(dx * dx + dy * dy) / d.meters_per_minute) / d.tau_min
    terms = _exp(decay) * d.site_weight[None, :]
    out = np.zeros(len(d.rider.x))
    for j in range(terms.shape[1]):  # site by site, as the compiled kernel adds them
        out += terms[:, j]
    return out


def _pickup(p: PickupInputs) -> np.ndarray:
    travel = _travel(p.rider.x, p.rider.y, p.site.x, p.site.y, p.meters_per_minute)
    arrive = (p.rider_free_at[:, None] + travel) + p.half_pickup_service
    pickup = np.maximum(p.site_ready_at[None, :], arrive)
    pickup[(travel > p.max_travel_min) | (pickup > p.rider_shift_end[:, None])] = np.inf
    return pickup


def _costs(c: CostInputs) -> np.ndarray:
    p = c.pickup
    travel = _travel(p.rider.x, p.rider.y, p.site.x, p.site.y, p.meters_per_minute)
    arrive = (p.rider_free_at[:, None] + travel) + p.half_pickup_service
    pickup = np.maximum(p.site_ready_at[None, :], arrive)
    cost = (pickup + p.half_pickup_service) * c.bundle_size[None, :]
    cost += c.bundle_base[None, :]
    cost += c.wait_weight * (pickup - arrive)
    cost[(travel > p.max_travel_min) | (pickup > p.rider_shift_end[:, None])] = np.inf
    return cost


def _best_sequence(legs: np.ndarray, service: float,
                   weights: np.ndarray) -> tuple[tuple[int, ...], list[float], float]:
    """Exhaustive search; ``legs[0, 1 + s]`` start->stop s, ``legs[1 + a, 1 + b]`` a->b."""
    k = len(weights)
    half = service / 2.0
    best: tuple[tuple[int, ...], list[float], float] = ((), [], np.inf)
    for perm in itertools.permutations(range(k)):
        clock, here, objective = 0.0, 0, 0.0
        offsets = []
        for stop in perm:
            clock += legs[here, 1 + stop]
            offset = clock + half
            clock = offset + half
            offsets.append(offset)
            objective += weights[stop] * offset
            here = 1 + stop
        if objective < best[2] or not best[0]:  # the first permutation always counts
            best = (perm, offsets, objective)
    return best


def _drop_legs(sx: float, sy: float, xs: np.ndarray, ys: np.ndarray, speed: float) -> np.ndarray:
    px = np.concatenate(([sx], xs))
    py = np.concatenate(([sy], ys))
    return _travel(px, py, px, py, speed)


def _drop_sequence(d: DropInputs) -> tuple[np.ndarray, np.ndarray]:
    if len(d.weights) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    legs = _drop_legs(d.start_x, d.start_y, d.drop.x, d.drop.y, d.meters_per_minute)
    perm, offsets, _ = _best_sequence(legs, d.dropoff_service_min, d.weights)
    return np.array(perm, dtype=np.int64), np.array(offsets)


def _bundle_site(p: BundleInputs, group: np.ndarray, site: int) -> list[list[int]]:
    """The greedy insertion of ``BundleInputs`` for one site's sorted orders."""
    sx, sy = p.site.x[site], p.site.y[site]
    half = p.dropoff_service_min / 2.0
    solo_travel = _travel(np.array([sx]), np.array([sy]), p.drop.x[group], p.drop.y[group],
                          p.meters_per_minute)[0]
    alone = {int(o): p.ready_at[o] + (solo_travel[k] + half) for k, o in enumerate(group)}
    bundles: list[dict] = []
    for o in (int(o) for o in group):
        ready = p.ready_at[o]
        best, best_cost = None, np.inf
        for bundle in bundles:
            if len(bundle["members"]) >= p.max_size:
                continue
            lo, hi = min(bundle["lo"], ready), max(bundle["hi"], ready)
            if hi - lo > p.max_ready_spread:
                continue
            cand = bundle["members"] + [o]
            legs = _drop_legs(sx, sy, p.drop.x[cand], p.drop.y[cand], p.meters_per_minute)
            perm, offsets, total_offset = _best_sequence(legs, p.dropoff_service_min,
                                                         np.ones(len(cand)))
            seq = [cand[s] for s in perm]
            if any((hi + off) - alone[q] > p.max_extra_min for q, off in zip(seq, offsets)):
                continue
            total = hi * len(cand) + total_offset
            finish = hi + offsets[-1]
            cost = (total - bundle["total"] - alone[o]) + (finish - bundle["finish"])
            if cost < best_cost:
                best, best_cost = (bundle, seq, lo, hi, total, finish), cost
        if best is None:
            bundles.append({"members": [o], "lo": ready, "hi": ready, "total": alone[o],
                            "finish": alone[o]})
        else:
            bundle, seq, lo, hi, total, finish = best
            bundle.update(members=seq, lo=lo, hi=hi, total=total, finish=finish)
    return [bundle["members"] for bundle in bundles]


def _bundle(p: BundleInputs) -> tuple[np.ndarray, np.ndarray]:
    members: list[int] = []
    starts = [0]
    for g in range(len(p.group_start) - 1):
        group = p.order[p.group_start[g]:p.group_start[g + 1]]
        for bundle in _bundle_site(p, group, int(p.group_site[g])):
            members.extend(bundle)
            starts.append(len(members))
    return np.array(members, dtype=np.int64), np.array(starts, dtype=np.int64)


CORE = SimpleNamespace(solve_assignment=_solve_assignment, travel=_travel, pickup=_pickup, density=_density,
                       costs=_costs, drop_sequence=_drop_sequence, bundle=_bundle)
_PUBLIC = _api.bind_all(CORE)
linear_assignment = _PUBLIC["linear_assignment"]
travel_minutes = _PUBLIC["travel_minutes"]
pickup_times = _PUBLIC["pickup_times"]
assignment_costs = _PUBLIC["assignment_costs"]
demand_density = _PUBLIC["demand_density"]
best_drop_sequence = _PUBLIC["best_drop_sequence"]
bundle_orders = _PUBLIC["bundle_orders"]
bundle_orders_by_site = _PUBLIC["bundle_orders_by_site"]

__all__ = list(_PUBLIC)
