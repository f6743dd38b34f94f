"""The public kernel API, written once over a pluggable core (compiled or pure Python).

Each public function validates and converts its input (``_boundary``), calls the core
function of the implementation it is bound to, and post-processes the result. ``_kernel``
and ``_pure`` both expose ``bind_all(core)``'s functions, so the two implementations share
one boundary and differ only in their solver loops.

A core is any object with these attributes (all inputs already validated):

``solve_assignment(work) -> col_of_row``
    ``work`` a finite C-contiguous float64 n x m matrix with n <= m; returns int64[n].
``travel(ax, ay, bx, by, meters_per_minute) -> float64[len(a), len(b)]``
``pickup(inputs: PickupInputs) -> float64[R, S]``
``costs(inputs: CostInputs) -> float64[R, B]``
``density(inputs: DensityInputs) -> float64[R]``
``drop_sequence(inputs: DropInputs) -> (order, offsets)``
``bundle(inputs: BundleInputs) -> (members, bundle_start)``
    the greedy on every site group; members are order indices, bundle_start offsets.
"""
from __future__ import annotations

import functools
import inspect
from typing import Any, Callable

import numpy as np

from dispatch_ext import _boundary as b


def linear_assignment(core: Any, cost: object) -> tuple[np.ndarray, np.ndarray]:
    """Solve the rectangular linear assignment problem (minimum total cost).

    Parameters
    ----------
    cost : array_like, shape (n, m)
        Real costs (converted to float64). Either dimension may be larger and either may be 0.
        ``+inf`` marks a forbidden pair.

    Returns
    -------
    rows, cols : ndarray of int64
        Matched pairs ``(rows[k], cols[k])``, rows ascending. For a finite matrix there are
        ``min(n, m)`` pairs and their total is optimal (the same as
        ``scipy.optimize.linear_sum_assignment``). With forbidden pairs the result never uses
        one, matches as many rows as possible and, among such matchings, has the least cost.

    Raises
    ------
    TypeError
        If ``cost`` does not hold real numbers.
    ValueError
        If ``cost`` is not 2-D, or an entry is NaN or ``-inf`` (the message names it).

    Notes
    -----
    A Jonker-Volgenant shortest augmenting path solver (column reduction, reduction transfer
    and augmenting row reduction, then Dijkstra augmentation); the compiled kernel releases
    the GIL while it solves.
    """
    problem = b.prepare_assignment(cost)
    n, m = problem.work.shape
    if n == 0 or m == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty.copy()
    return b.finish_assignment(problem, core.solve_assignment(problem.work))


def travel_minutes(core: Any, ax: object, ay: object, bx: object, by: object,
                   meters_per_minute: float) -> np.ndarray:
    """Pairwise travel minutes by the MDRP rule ``ceil(euclidean / meters_per_minute)``.

    Parameters
    ----------
    ax, ay : array_like, shape (p,)
        Planar coordinates (metres) of the origins.
    bx, by : array_like, shape (q,)
        Planar coordinates (metres) of the destinations.
    meters_per_minute : float
        Travel speed, at least ``MIN_SPEED`` (1e-5).

    Returns
    -------
    ndarray of float64, shape (p, q)
        Whole minutes from each origin to each destination.
    """
    a, dst = b.points(ax, ay, "a"), b.points(bx, by, "b")
    return core.travel(a.x, a.y, dst.x, dst.y, b.speed(meters_per_minute))


def pickup_times(core: Any, rider_x: object, rider_y: object, rider_free_at: object,
                 rider_shift_end: object, site_x: object, site_y: object,
                 site_ready_at: object, meters_per_minute: float, pickup_service_min: float,
                 max_travel_min: float) -> np.ndarray:
    """Earliest pickup time of each rider at each restaurant site.

    ``pickup = max(site_ready_at, rider_free_at + travel + pickup_service_min / 2)`` where
    ``travel`` follows ``travel_minutes``.

    Parameters
    ----------
    rider_x, rider_y : array_like, shape (R,)
        Where each rider becomes free (metres).
    rider_free_at : array_like, shape (R,)
        When each rider becomes free (minutes).
    rider_shift_end : array_like, shape (R,)
        Each rider's off time (minutes; ``+inf`` for none); nothing is picked up after it.
    site_x, site_y, site_ready_at : array_like, shape (S,)
        Restaurant positions and when their food is ready.
    meters_per_minute : float
        Travel speed, at least ``MIN_SPEED`` (1e-5).
    pickup_service_min : float
        Pickup service time; half of it is spent before the pickup instant.
    max_travel_min : float
        Longest allowed travel from rider to site (``inf`` for no limit).

    Returns
    -------
    ndarray of float64, shape (R, S)
        Pickup minutes; ``+inf`` where the travel exceeds ``max_travel_min`` or the pickup
        would be after the rider's shift end.
    """
    inputs = b.pickup_inputs(rider_x, rider_y, rider_free_at, rider_shift_end, site_x, site_y,
                             site_ready_at, meters_per_minute, pickup_service_min,
                             max_travel_min)
    return core.pickup(inputs)


def assignment_costs(core: Any, rider_x: object, rider_y: object, rider_free_at: object,
                     rider_shift_end: object, bundle_x: object, bundle_y: object,
                     bundle_ready_at: object, bundle_size: object, bundle_drop_sum: object,
                     bundle_reward: object, meters_per_minute: float, pickup_service_min: float,
                     max_travel_min: float, wait_weight: float) -> np.ndarray:
    """The dispatch cost of every (rider, bundle) pair, in one pass.

    With ``pickup`` and ``arrive`` as in ``pickup_times`` (the bundle's restaurant and latest
    ready time playing the site)::

        cost = (pickup + pickup_service_min / 2) * bundle_size
               + (bundle_drop_sum - bundle_reward)
               + wait_weight * (pickup - arrive)

    that is the sum of the bundle's drop-off times when ``bundle_drop_sum`` holds the
    drop-offs' minutes after leaving the restaurant, minus a reward, plus the rider's minutes
    waiting for the food at a weight.

    Parameters
    ----------
    rider_x, rider_y, rider_free_at, rider_shift_end : array_like, shape (R,)
        As in ``pickup_times``.
    bundle_x, bundle_y, bundle_ready_at : array_like, shape (B,)
        Each bundle's restaurant and the time its last order is ready.
    bundle_size : array_like, shape (B,)
        Orders in each bundle (>= 1).
    bundle_drop_sum : array_like, shape (B,)
        Sum of the bundle's drop-off offsets (minutes after leaving the restaurant).
    bundle_reward : array_like, shape (B,)
        Minutes subtracted from the bundle's cost (finite).
    meters_per_minute, pickup_service_min, max_travel_min : float
        As in ``pickup_times``.
    wait_weight : float
        Weight (>= 0) of the minutes a rider waits at the restaurant.

    Returns
    -------
    ndarray of float64, shape (R, B)
        Costs; ``+inf`` where ``pickup_times`` is ``+inf`` (too far, or after the shift).
    """
    return core.costs(b.cost_inputs(rider_x, rider_y, rider_free_at, rider_shift_end, bundle_x,
                                    bundle_y, bundle_ready_at, bundle_size, bundle_drop_sum,
                                    bundle_reward, meters_per_minute, pickup_service_min,
                                    max_travel_min, wait_weight))


def demand_density(core: Any, rider_x: object, rider_y: object, site_x: object, site_y: object,
                   site_weight: object, meters_per_minute: float, tau_min: float) -> np.ndarray:
    """Demand near each rider: ``sum_j site_weight[j] * exp(-minutes_ij / tau_min)``, where
    ``minutes_ij`` is the straight-line distance over ``meters_per_minute`` (not rounded up).

    The sum runs over the sites in the order given (no BLAS, no numpy SIMD variant), with an
    ``exp`` of the kernel's own (within 1 ulp): the same bits on every CPU, whatever BLAS or SIMD
    level numpy uses. The C library's ``exp`` was not: glibc picks an FMA or a non-FMA one at
    load time, and they differ in the last bit for some arguments, which turned a near tie in a
    replay (1 day in 40 measured).

    Parameters
    ----------
    rider_x, rider_y : array_like, shape (R,)
        Planar coordinates (metres) of the riders.
    site_x, site_y, site_weight : array_like, shape (S,)
        Planar coordinates of the sites and their weights (finite, >= 0, at most 1e15).
    meters_per_minute, tau_min : float
        Travel speed (at least ``MIN_SPEED``, 1e-5) and the decay's time constant (> 0).

    Returns
    -------
    ndarray of float64, shape (R,)
    """
    return core.density(b.density_inputs(rider_x, rider_y, site_x, site_y, site_weight, meters_per_minute, tau_min))


def best_drop_sequence(core: Any, start_x: float, start_y: float, drop_x: object,
                       drop_y: object, meters_per_minute: float, dropoff_service_min: float,
                       weights: object = None) -> tuple[np.ndarray, np.ndarray]:
    """The drop-off order minimising the weighted sum of drop-off times.

    The drop-off time of the k-th stop (minutes after leaving the start) is the travel of the
    legs so far (``travel_minutes`` rule per leg) plus ``dropoff_service_min / 2`` plus a full
    ``dropoff_service_min`` for each earlier stop. All permutations are tried; ties go to the
    lexicographically first.

    Parameters
    ----------
    start_x, start_y : float
        Where the rider leaves from (the restaurant).
    drop_x, drop_y : array_like, shape (k,)
        Drop-off points, at most 6.
    meters_per_minute : float
        Travel speed, at least ``MIN_SPEED`` (1e-5).
    dropoff_service_min : float
        Service time at each drop-off.
    weights : array_like, shape (k,), optional
        Weight of each stop's drop-off time (default 1); finite, within +-1e15.

    Returns
    -------
    order : ndarray of int64, shape (k,)
        Stop indices in visiting order.
    offsets : ndarray of float64, shape (k,)
        Drop-off time of each visited stop, in visiting order.

    Raises
    ------
    ValueError
        With more than 6 stops, or a weight that is not finite or beyond +-1e15.
    """
    return core.drop_sequence(b.drop_inputs(start_x, start_y, drop_x, drop_y, meters_per_minute,
                                            dropoff_service_min, weights))


def bundle_orders_by_site(core: Any, site_of_order: object, ready_at: object,
                          placed_at: object, drop_x: object, drop_y: object, site_x: object,
                          site_y: object, max_size: int, max_ready_spread: float,
                          max_extra_min: float, meters_per_minute: float,
                          dropoff_service_min: float) -> list[np.ndarray]:
    """Bundle the open orders of many restaurants in one call (see ``bundle_orders``).

    Parameters
    ----------
    site_of_order : array_like of int, shape (n,)
        Index into ``site_x``/``site_y`` of each order's restaurant.
    site_x, site_y : array_like, shape (S,)
        Restaurant positions.
    ready_at, placed_at, drop_x, drop_y, max_size, max_ready_spread, max_extra_min, \
meters_per_minute, dropoff_service_min
        As in ``bundle_orders``.

    Returns
    -------
    list of ndarray of int64
        Bundles (order indices in delivery sequence), grouped by ascending site index and,
        within a site, in the order the greedy opened them.
    """
    inputs = b.bundle_inputs(site_of_order, ready_at, placed_at, drop_x, drop_y, site_x,
                             site_y, max_size, max_ready_spread, max_extra_min,
                             meters_per_minute, dropoff_service_min)
    return b.split_bundles(*core.bundle(inputs))


def bundle_orders(core: Any, ready_at: object, placed_at: object, drop_x: object,
                  drop_y: object, site_x: float, site_y: float, max_size: int,
                  max_ready_spread: float, max_extra_min: float, meters_per_minute: float,
                  dropoff_service_min: float) -> list[np.ndarray]:
    """Group the open orders of ONE restaurant into bundles a rider can carry together.

    The rule (greedy insertion, deterministic):

    1. Orders are taken by ascending ``ready_at``, then ``placed_at``, then index.
    2. An order alone would be dropped at ``ready_at + travel + dropoff_service_min / 2``.
    3. A bundle is picked up at the latest ready time of its orders and delivered in the
       ``best_drop_sequence`` order (unit weights).
    4. A bundle qualifies for the order if, with it, the bundle stays within ``max_size``
       orders and ``max_ready_spread`` minutes between its earliest and latest ready time,
       and no order is dropped more than ``max_extra_min`` later than it would be alone.
    5. The order joins the qualifying bundle with the least insertion cost: the minutes it
       adds to the customers (sum of the bundle's drop-off times with it, minus without it,
       minus its own alone time) plus the minutes it adds to the rider (how much later the
       bundle's last drop-off happens). Ties go to the older bundle; if no bundle qualifies,
       the order opens a new one.

    Parameters
    ----------
    ready_at, placed_at : array_like, shape (n,)
        When each order is ready at the restaurant and when it was placed (minutes).
    drop_x, drop_y : array_like, shape (n,)
        Drop-off points (metres).
    site_x, site_y : float
        The restaurant's position.
    max_size : int
        Largest bundle, 1..6.
    max_ready_spread : float
        Largest gap between the earliest and latest ready time in a bundle.
    max_extra_min : float
        Largest delay a bundle may add to any of its orders versus going alone.
    meters_per_minute : float
        Travel speed, at least ``MIN_SPEED`` (1e-5).
    dropoff_service_min : float
        Service time at each drop-off.

    Returns
    -------
    list of ndarray of int64
        Each bundle's order indices in delivery sequence; every order is in exactly one.
    """
    sx, sy = b.coordinate(site_x, "site_x"), b.coordinate(site_y, "site_y")
    n = len(b.times(ready_at, "ready_at"))
    return bundle_orders_by_site(core, np.zeros(n, dtype=np.int64), ready_at, placed_at, drop_x,
                                 drop_y, [sx], [sy], max_size, max_ready_spread, max_extra_min,
                                 meters_per_minute, dropoff_service_min)


PUBLIC = (linear_assignment, travel_minutes, pickup_times, assignment_costs, demand_density, best_drop_sequence,
          bundle_orders, bundle_orders_by_site)


def bind(generic: Callable[..., Any], core: Any) -> Callable[..., Any]:
    """``generic`` with its ``core`` argument fixed, keeping name, docstring and signature."""

    @functools.wraps(generic)
    def bound(*args: Any, **kwargs: Any) -> Any:
        return generic(core, *args, **kwargs)

    params = list(inspect.signature(generic).parameters.values())[1:]
    bound.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    del bound.__wrapped__
    return bound


def bind_all(core: Any) -> dict[str, Callable[..., Any]]:
    """Every public function bound to ``core``, by name."""
    return {f.__name__: bind(f, core) for f in PUBLIC}
