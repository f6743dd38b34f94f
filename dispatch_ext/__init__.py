"""The dispatch kernel: assignment, cost matrices and bundling.

The compiled Cython module is used when it was built (``pip install .``); otherwise the
pure-Python twin with the same API. ``IS_COMPILED`` says which is in use. Both share one
validation boundary (``_boundary``), so bad input raises the same ``TypeError``/``ValueError``
whichever runs. Its bounds keep every result a number or ``+inf``, never NaN: coordinates within
+-1e9 metres, times, service minutes, bundle sizes, drop sums, rewards and weights within +-1e15
(``MAX_MINUTES``; a limit such as ``rider_shift_end`` may be anything but NaN), speeds at least
1e-5 metres per minute (``MIN_SPEED``).

Public API (numpy in, numpy out; planar metres, minutes):

- ``linear_assignment(cost) -> (rows, cols)``
- ``travel_minutes(ax, ay, bx, by, meters_per_minute) -> float64[p, q]``
- ``pickup_times(rider_x, rider_y, rider_free_at, rider_shift_end, site_x, site_y,
  site_ready_at, meters_per_minute, pickup_service_min, max_travel_min) -> float64[R, S]``
- ``assignment_costs(rider_x, rider_y, rider_free_at, rider_shift_end, bundle_x, bundle_y,
  bundle_ready_at, bundle_size, bundle_drop_sum, bundle_reward, meters_per_minute,
  pickup_service_min, max_travel_min, wait_weight) -> float64[R, B]``: the planner's cost matrix
- ``demand_density(rider_x, rider_y, site_x, site_y, site_weight, meters_per_minute, tau_min)
  -> float64[R]``: demand near each rider (the coverage penalty's density), the same bits
  on every CPU, whatever BLAS or SIMD numpy uses (an ``exp`` of the kernel's own)
- ``best_drop_sequence(start_x, start_y, drop_x, drop_y, meters_per_minute,
  dropoff_service_min, weights=None) -> (order, offsets)``
- ``bundle_orders(ready_at, placed_at, drop_x, drop_y, site_x, site_y, max_size,
  max_ready_spread, max_extra_min, meters_per_minute, dropoff_service_min) -> [int64[...]]``
- ``bundle_orders_by_site(site_of_order, ready_at, placed_at, drop_x, drop_y, site_x, site_y,
  ...)``: the same for many restaurants in one call.
"""
from __future__ import annotations

try:  # the compiled kernel, built by setup.py
    from dispatch_ext import _kernel as _impl  # type: ignore[attr-defined]

    IS_COMPILED = True
except ImportError:  # pragma: no cover - exercised when the extension is not built
    from dispatch_ext import _pure as _impl  # type: ignore[no-redef]

    IS_COMPILED = False

from dispatch_ext._boundary import MAX_DROP_STOPS

linear_assignment = _impl.linear_assignment
travel_minutes = _impl.travel_minutes
pickup_times = _impl.pickup_times
assignment_costs = _impl.assignment_costs
demand_density = _impl.demand_density
best_drop_sequence = _impl.best_drop_sequence
bundle_orders = _impl.bundle_orders
bundle_orders_by_site = _impl.bundle_orders_by_site

__all__ = [
    "IS_COMPILED",
    "MAX_DROP_STOPS",
    "assignment_costs",
    "best_drop_sequence",
    "bundle_orders",
    "bundle_orders_by_site",
    "demand_density",
    "linear_assignment",
    "pickup_times",
    "travel_minutes",
]
