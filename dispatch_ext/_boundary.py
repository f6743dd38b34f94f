"""Input validation and result post-processing shared by both kernel implementations.

Every public kernel function follows the same path: validate (here) -> convert (here) ->
solve (``_kernel`` or ``_pure``) -> post-process (here). Validation turns bad input into a
``TypeError`` or ``ValueError`` with a message naming the argument, so neither implementation
ever sees an array it could misread (the compiled loops run without bounds checks).

Every array handed to a solver is the boundary's own copy, validated after copying, never the
caller's buffer: the compiled loops run without the GIL, so another thread of the caller could
otherwise rewrite a validated array mid-call (NaN into a cost matrix, a site index out of
range) and the unchecked loops would read or write outside their arrays.

Forbidden pairs in ``linear_assignment``
----------------------------------------
The solvers need a complete finite matrix, so ``+inf`` entries are replaced by a penalty ``P``:

1. Let ``k = min(n, m)``. Every assignment of a complete n x m matrix has exactly ``k`` pairs.
   The finite entries lie in ``[lo, hi]``; ``R = hi - lo``. When ``R`` is at most ``2**20``
   times the smallest ``max(|x|, 1)`` of them (so no entry, moved up to ``R``, loses more than
   about ``2**-32`` of itself), they are shifted by ``lo`` to ``[0, R]`` (a constant shift
   changes every complete assignment's total by ``k * lo``, so it preserves the optimum) and
   ``P = (k + 1) * R + 1`` (step 2 with ``lo = 0``, ``hi = R``; margin ``R + 1``): the
   planner's matrices are of this kind, solved as they always were. Otherwise the entries are
   left as they are: shifted by ``lo = -1e17``, the entries 0 and 1 became equal and the
   optimum was lost.
2. Unshifted, set ``P = (k + 1) * R + 2 * |hi| + 1``. An assignment using ``t`` penalty pairs
   costs between ``t * P + (k - t) * lo`` and ``t * P + (k - t) * hi``. If ``t' < t`` then
   ``t' * P + (k - t') * hi - (t * P + (k - t) * lo) = (t - t') * (hi - P) + (k - t) * R
   <= hi - P + (k - 1) * R = -2 * R - (2 * |hi| - hi) - 1 < 0`` (``P > hi``, ``t - t' >= 1``,
   ``t >= 1``): every assignment with fewer penalty pairs is strictly cheaper than every
   assignment with more. So the optimum uses the fewest penalty pairs. (``2 * |hi|``, not
   ``|hi|``: with ``R = 0`` and ``hi = 1e16``, ``|hi| + 1`` rounds to ``hi`` itself.)
3. Any matching of ``s`` finite pairs extends to a complete assignment with ``k - s`` penalty
   pairs (pair the leftover rows and columns arbitrarily), and a complete assignment with
   ``t`` penalty pairs contains a matching of ``k - t`` finite pairs. So "fewest penalty pairs"
   is exactly "maximum cardinality of finite pairs".
4. Among assignments with the same ``t`` the total is ``t * P`` plus the finite pairs' cost,
   so the optimum has the least finite cost among maximum-cardinality matchings. Dropping the
   penalty pairs afterwards gives the specified result.

The margin between cardinalities is at least ``R + 1``; float rounding in the solver is of
order ``k**2 * P * 2**-52``, far below it for any realistic ``k``. "Least cost" is as exact
as floats allow: where an augmenting path or a penalty pair adds costs of 1e17 to costs of 1,
costs closer than that rounding (16 at 1e17) are not told apart, as in any float solver. To keep every intermediate (duals reach about ``k * P``) finite, matrices with enormous
entries are first scaled by a power of two (exact and order-preserving).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

MAX_DROP_STOPS = 6
MAX_COORDINATE = 1e9  # metres; far beyond any city, small enough that squares never overflow
# Times, service minutes, bundle sizes, drop sums, rewards and weights stay within +-MAX_MINUTES, and
# speeds at least MIN_SPEED (so a travel time is at most about 3e14 minutes): every sum and product
# the cost formulas form is then finite, and a cost is never NaN (inf - inf) but a number or +inf.
# 1e15 minutes is beyond any int64 millisecond timestamp.
MAX_MINUTES = 1e15
MIN_SPEED = 1e-5  # metres per minute
_SAFE_MAGNITUDE = 1e290


def _as_float_array(value: object, name: str, ndim: int) -> np.ndarray:
    """A C-contiguous float64 array of ``ndim`` dimensions, the boundary's own copy, or raise."""
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as exc:  # ragged nested lists and the like
        raise ValueError(f"{name} must be a rectangular numeric array: {exc}") from None
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-dimensional, got shape {arr.shape}")
    # Always a copy (module doc): np.asarray / ascontiguousarray would hand back the caller's
    # own buffer whenever it is float64 and C-contiguous already. About 1.5 ms for a 2000 x 2000
    # matrix, against 62-298 ms for its solve.
    with np.errstate(over="ignore"):
        out = np.array(arr, dtype=np.float64, order="C", copy=True)
    if arr.dtype.kind == "f" and arr.dtype.itemsize > 8:
        # A long double beyond float64 would become inf here: +inf is a forbidden pair in a
        # cost matrix, so refuse it rather than change its meaning.
        overflow = np.isinf(out) & np.isfinite(arr)
        if overflow.any():
            first = _first_bad(overflow)
            where = ", ".join(str(i) for i in first)
            raise ValueError(f"{name}[{where}] is beyond float64 (about 1.8e308), got {arr[first]!r}")
    return out


def _first_bad(mask: np.ndarray) -> tuple[int, ...]:
    return tuple(int(i) for i in np.argwhere(mask)[0])


def finite_values(value: object, name: str, *, bound: float) -> np.ndarray:
    """A 1-D float64 array of finite numbers with ``abs(x) <= bound`` (every caller names its
    bound: an infinite default once let +-inf through)."""
    arr = _as_float_array(value, name, 1)
    bad = ~np.isfinite(arr) | (np.abs(arr) > bound)
    if bad.any():
        (i,) = _first_bad(bad)
        raise ValueError(f"{name}[{i}] must be finite and within +-{bound:g}, got {arr[i]!r}")
    return arr


def coordinates(value: object, name: str) -> np.ndarray:
    """Planar metres: finite and within ``MAX_COORDINATE`` of the origin."""
    return finite_values(value, name, bound=MAX_COORDINATE)


def times(value: object, name: str, *, allow_inf: bool = False) -> np.ndarray:
    """A 1-D float64 array of minutes; NaN is never allowed, +-inf only when ``allow_inf`` (a limit
    only compared with), finite values only within ``MAX_MINUTES`` otherwise."""
    if not allow_inf:
        return finite_values(value, name, bound=MAX_MINUTES)
    arr = _as_float_array(value, name, 1)
    bad = np.isnan(arr)
    if bad.any():
        (i,) = _first_bad(bad)
        raise ValueError(f"{name}[{i}] must be a number")
    return arr


def coordinate(value: object, name: str) -> float:
    """One planar coordinate (metres), as ``coordinates`` checks them."""
    x = scalar(value, name, minimum=-math.inf)
    if abs(x) > MAX_COORDINATE:
        raise ValueError(f"{name} must be within +-{MAX_COORDINATE:g}, got {x!r}")
    return x


def same_length(**arrays: np.ndarray) -> int:
    """The common length of ``arrays`` or a ValueError naming the mismatch."""
    lengths = {name: len(arr) for name, arr in arrays.items()}
    if len(set(lengths.values())) > 1:
        detail = ", ".join(f"{name}={n}" for name, n in lengths.items())
        raise ValueError(f"arrays must have the same length, got {detail}")
    return next(iter(lengths.values()))


def scalar(value: object, name: str, *, minimum: float = 0.0, strict: bool = False,
           allow_inf: bool = False, maximum: float = math.inf) -> float:
    """A real number ``>= minimum`` (``> minimum`` when ``strict``) and ``<= maximum``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer,
                                                                     np.floating)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    try:
        x = float(value)
    except OverflowError:  # a Python int beyond float64
        bits = int(value).bit_length()
        raise ValueError(f"{name} must be a finite number, got an integer of {bits} bits") from None
    if math.isnan(x) or (math.isinf(x) and not (allow_inf and x > 0)):
        raise ValueError(f"{name} must be a finite number, got {x!r}")
    if x < minimum or (strict and x == minimum):
        relation = ">" if strict else ">="
        raise ValueError(f"{name} must be {relation} {minimum}, got {x!r}")
    if x > maximum:
        raise ValueError(f"{name} must be <= {maximum:g}, got {x!r}")
    return x


def count(value: object, name: str, *, minimum: int = 1) -> int:
    """An integer ``>= minimum``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if int(value) < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {int(value)}")
    return int(value)


# ---------------------------------------------------------------------------- assignment


class AssignmentProblem(NamedTuple):
    """A validated assignment problem ready for a solver.

    ``work`` is a finite C-contiguous float64 matrix with no more rows than columns
    (the transpose of the input when it had more rows); ``forbidden`` marks the input's
    ``+inf`` entries in the input's orientation.
    """

    work: np.ndarray
    transposed: bool
    forbidden: np.ndarray | None


def prepare_assignment(cost: object) -> AssignmentProblem:
    """Validate a cost matrix and convert it to a finite solver matrix (see module doc)."""
    c = _as_float_array(cost, "cost", 2)
    n, m = c.shape
    k = min(n, m)
    limit = _SAFE_MAGNITUDE / float(k + 2) ** 2
    if c.size:
        lo, hi = float(c.min()), float(c.max())  # NaN propagates; two passes, no temporaries
        if math.isfinite(lo) and math.isfinite(hi) and max(-lo, hi) <= limit:
            # the common case: finite and moderate, solved as given (``c`` is our copy)
            return _oriented(c, None)
    nan_or_neg_inf = np.isnan(c) | np.isneginf(c)
    if nan_or_neg_inf.any():
        row, col = _first_bad(nan_or_neg_inf)
        raise ValueError(f"cost[{row}, {col}] is {c[row, col]!r}; entries must be finite or +inf")
    forbidden = np.isposinf(c)
    finite = c[~forbidden]
    if finite.size:
        magnitude = float(np.max(np.abs(finite)))
        if magnitude > limit:
            c = np.ldexp(c, -math.ceil(math.log2(magnitude / limit)))
            finite = c[~forbidden]
        lo, hi = float(finite.min()), float(finite.max())
        if _shift_keeps_entries(finite, lo, hi):
            # as it always was: the planner's matrices, the bits its replays were made with
            c = c - lo
            penalty = (k + 1) * (hi - lo) + 1.0
        else:
            penalty = (k + 1) * (hi - lo) + 2.0 * abs(hi) + 1.0  # see the module doc
    else:
        c = np.zeros_like(c)
        penalty = 1.0
    c[forbidden] = penalty
    return _oriented(c, forbidden if forbidden.any() else None)


def _shift_keeps_entries(finite: np.ndarray, lo: float, hi: float) -> bool:
    """Whether the shifted entries, which reach ``R = hi - lo``, keep each entry to about
    ``2**-32`` of its own size (of 1 for entries below 1): ``R <= 2**20 * min(max(|x|, 1))``.

    Planner costs (minutes of the day or of the epoch, spread over a few thousand) pass; a
    shift by -1e17 would put an entry of 1 on top of 1e17, where it cannot be told from 0."""
    smallest = float(np.min(np.maximum(np.abs(finite), 1.0)))
    return hi - lo <= 2.0**20 * smallest


def _oriented(c: np.ndarray, forbidden: np.ndarray | None) -> AssignmentProblem:
    transposed = c.shape[0] > c.shape[1]
    work = np.ascontiguousarray(c.T) if transposed else c
    return AssignmentProblem(work, transposed, forbidden)


def finish_assignment(problem: AssignmentProblem,
                      col_of_row: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Map a solver's ``col_of_row`` (for ``problem.work``) back to ``(rows, cols)``.

    Penalty pairs are dropped and rows come out ascending, both as int64.
    """
    col_of_row = np.asarray(col_of_row, dtype=np.int64)
    first = np.arange(len(col_of_row), dtype=np.int64)
    if problem.transposed:
        order = np.argsort(col_of_row, kind="stable")
        rows, cols = col_of_row[order], first[order]
    else:
        rows, cols = first, col_of_row
    if problem.forbidden is not None and len(rows):
        keep = ~problem.forbidden[rows, cols]
        rows, cols = rows[keep], cols[keep]
    return np.ascontiguousarray(rows), np.ascontiguousarray(cols)


# ------------------------------------------------------------------------ travel / pickup


class Points(NamedTuple):
    x: np.ndarray
    y: np.ndarray


def points(x: object, y: object, name: str) -> Points:
    """Validated coordinate arrays ``name_x``, ``name_y`` of equal length."""
    px, py = coordinates(x, f"{name}_x"), coordinates(y, f"{name}_y")
    same_length(**{f"{name}_x": px, f"{name}_y": py})
    return Points(px, py)


def speed(value: object) -> float:
    """A travel speed ``meters_per_minute``: a real number > 0, and at least ``MIN_SPEED``."""
    x = scalar(value, "meters_per_minute", strict=True)
    if x < MIN_SPEED:
        raise ValueError(f"meters_per_minute must be >= {MIN_SPEED:g} (travel times beyond any clock), got {x!r}")
    return x


def minutes(value: object, name: str) -> float:
    """A service time in minutes: a real number in ``[0, MAX_MINUTES]``."""
    return scalar(value, name, maximum=MAX_MINUTES)


class PickupInputs(NamedTuple):
    rider: Points
    rider_free_at: np.ndarray
    rider_shift_end: np.ndarray
    site: Points
    site_ready_at: np.ndarray
    meters_per_minute: float
    half_pickup_service: float
    max_travel_min: float


def pickup_inputs(rider_x: object, rider_y: object, rider_free_at: object, rider_shift_end: object,
                  site_x: object, site_y: object, site_ready_at: object, meters_per_minute: object,
                  pickup_service_min: object, max_travel_min: object, *, site: str = "site") -> PickupInputs:
    """The arguments of ``pickup_times``, validated and converted (half the pickup service kept);
    ``site``: what the caller calls the sites in its argument names (``bundle`` for ``assignment_costs``)."""
    rider = points(rider_x, rider_y, "rider")
    free_at = times(rider_free_at, "rider_free_at")
    shift_end = times(rider_shift_end, "rider_shift_end", allow_inf=True)
    same_length(rider_x=rider.x, rider_free_at=free_at, rider_shift_end=shift_end)
    sites = points(site_x, site_y, site)
    ready_at = times(site_ready_at, f"{site}_ready_at")
    same_length(**{f"{site}_x": sites.x, f"{site}_ready_at": ready_at})
    return PickupInputs(
        rider, free_at, shift_end, sites, ready_at, speed(meters_per_minute),
        minutes(pickup_service_min, "pickup_service_min") / 2.0,
        scalar(max_travel_min, "max_travel_min", allow_inf=True),
    )


class CostInputs(NamedTuple):
    pickup: PickupInputs
    bundle_size: np.ndarray
    bundle_base: np.ndarray  # drop_sum - reward, per bundle
    wait_weight: float


def cost_inputs(rider_x: object, rider_y: object, rider_free_at: object, rider_shift_end: object,
                bundle_x: object, bundle_y: object, bundle_ready_at: object, bundle_size: object,
                bundle_drop_sum: object, bundle_reward: object, meters_per_minute: object,
                pickup_service_min: object, max_travel_min: object, wait_weight: object) -> CostInputs:
    """The arguments of ``assignment_costs``, validated and converted; drop sum minus reward is
    ``bundle_base``."""
    pickup = pickup_inputs(rider_x, rider_y, rider_free_at, rider_shift_end, bundle_x, bundle_y,
                           bundle_ready_at, meters_per_minute, pickup_service_min, max_travel_min, site="bundle")
    size = finite_values(bundle_size, "bundle_size", bound=MAX_MINUTES)
    bad = (size < 1) | (size != np.floor(size))
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"bundle_size[{i}] must be a whole number >= 1 (orders in the bundle), got {size[i]!r}")
    drop_sum = finite_values(bundle_drop_sum, "bundle_drop_sum", bound=MAX_MINUTES)
    reward = finite_values(bundle_reward, "bundle_reward", bound=MAX_MINUTES)
    same_length(bundle_x=pickup.site.x, bundle_size=size, bundle_drop_sum=drop_sum,
                bundle_reward=reward)
    weight = scalar(wait_weight, "wait_weight", maximum=MAX_MINUTES)
    return CostInputs(pickup, size, drop_sum - reward, weight)


class DensityInputs(NamedTuple):
    rider: Points
    site: Points
    site_weight: np.ndarray
    meters_per_minute: float
    tau_min: float


def density_inputs(rider_x: object, rider_y: object, site_x: object, site_y: object, site_weight: object,
                   meters_per_minute: object, tau_min: object) -> DensityInputs:
    """The arguments of ``demand_density``, validated and converted."""
    rider = points(rider_x, rider_y, "rider")
    site = points(site_x, site_y, "site")
    # Bounded like every other weight (MAX_MINUTES): a sum of S such terms stays finite.
    weight = finite_values(site_weight, "site_weight", bound=MAX_MINUTES)
    if (weight < 0).any():
        i = int(np.argmax(weight < 0))
        raise ValueError(f"site_weight[{i}] must be >= 0, got {weight[i]!r}")
    same_length(site_x=site.x, site_weight=weight)
    return DensityInputs(rider, site, weight, speed(meters_per_minute), scalar(tau_min, "tau_min", strict=True))


# ------------------------------------------------------------------------- drop sequences


class DropInputs(NamedTuple):
    start_x: float
    start_y: float
    drop: Points
    meters_per_minute: float
    dropoff_service_min: float
    weights: np.ndarray


def drop_inputs(start_x: object, start_y: object, drop_x: object, drop_y: object,
                meters_per_minute: object, dropoff_service_min: object, weights: object) -> DropInputs:
    """The arguments of ``best_drop_sequence``, validated and converted; no ``weights`` means all 1."""
    drop = points(drop_x, drop_y, "drop")
    if len(drop.x) > MAX_DROP_STOPS:
        raise ValueError(f"at most {MAX_DROP_STOPS} drop-off stops, got {len(drop.x)}")
    if weights is None:
        w = np.ones(len(drop.x))
    else:
        # Bounded (MAX_MINUTES): weight * offset and the sum over six stops stay finite, so the
        # search compares numbers, never inf or NaN (which left the first permutation standing).
        w = finite_values(weights, "weights", bound=MAX_MINUTES)
        same_length(drop_x=drop.x, weights=w)
    return DropInputs(
        coordinate(start_x, "start_x"), coordinate(start_y, "start_y"),
        drop, speed(meters_per_minute), minutes(dropoff_service_min, "dropoff_service_min"), w,
    )


# ------------------------------------------------------------------------------ bundling


class BundleInputs(NamedTuple):
    """Orders sorted for the greedy: ``order`` lists order indices grouped by site, each
    group by (ready_at, placed_at, index); ``group_start`` has len(groups) + 1 offsets and
    ``group_site`` each group's (validated) index into ``site``."""

    order: np.ndarray
    group_start: np.ndarray
    ready_at: np.ndarray
    drop: Points
    group_site: np.ndarray  # the site index of each group, one per group
    site: Points
    max_size: int
    max_ready_spread: float
    max_extra_min: float
    meters_per_minute: float
    dropoff_service_min: float


def bundle_inputs(site_of_order: object, ready_at: object, placed_at: object, drop_x: object,
                  drop_y: object, site_x: object, site_y: object, max_size: object,
                  max_ready_spread: object, max_extra_min: object, meters_per_minute: object,
                  dropoff_service_min: object) -> BundleInputs:
    """The arguments of ``bundle_orders_by_site``, validated, with the orders sorted into site groups
    for the greedy."""
    ready = times(ready_at, "ready_at")
    placed = times(placed_at, "placed_at")
    drop = points(drop_x, drop_y, "drop")
    site = points(site_x, site_y, "site")
    sites = np.asarray(site_of_order)
    if sites.ndim != 1:
        raise ValueError(f"site_of_order must be 1-dimensional, got shape {sites.shape}")
    if sites.dtype.kind not in "iu" and sites.size:
        raise TypeError(f"site_of_order must hold integers, got dtype {sites.dtype}")
    # Our own copy, checked below: the solver must not read site indices a caller's thread can
    # still change (module doc).
    sites = np.array(sites, dtype=np.int64, order="C", copy=True)
    same_length(ready_at=ready, placed_at=placed, drop_x=drop.x, site_of_order=sites)
    if len(sites) and (sites.min() < 0 or sites.max() >= len(site.x)):
        raise ValueError(f"site_of_order entries must index site_x (0..{len(site.x) - 1})")
    order = np.lexsort((np.arange(len(sites)), placed, ready, sites)).astype(np.int64)
    sorted_sites = sites[order]
    cuts = np.flatnonzero(np.diff(sorted_sites)) + 1
    group_start = np.concatenate(([0], cuts, [len(sites)])).astype(np.int64) if len(sites) \
        else np.zeros(1, dtype=np.int64)
    # Each group's site, read here from the sorted copy, so the compiled loop never indexes the
    # site coordinates with an order's entry.
    group_site = np.ascontiguousarray(sorted_sites[group_start[:-1]], dtype=np.int64)
    return BundleInputs(
        order, group_start, ready, drop, group_site, site, _bundle_size(max_size),
        scalar(max_ready_spread, "max_ready_spread", allow_inf=True),
        scalar(max_extra_min, "max_extra_min", allow_inf=True), speed(meters_per_minute),
        minutes(dropoff_service_min, "dropoff_service_min"),
    )


def _bundle_size(value: object) -> int:
    size = count(value, "max_size")
    if size > MAX_DROP_STOPS:
        raise ValueError(f"max_size must be <= {MAX_DROP_STOPS}, got {size}")
    return size


def split_bundles(members: np.ndarray, bundle_start: np.ndarray) -> list[np.ndarray]:
    """Cut the flat ``members`` array at ``bundle_start`` offsets into int64 arrays."""
    return [members[a:b].copy() for a, b in zip(bundle_start[:-1], bundle_start[1:])]
