"""Orders: lifecycle, durable history, live channels with gapless resume, ETAs and prompts.

For other features (dispatch): :func:`load_order`, :func:`load_orders`, :func:`assign_orders`,
:func:`unassign_order`, :func:`still_to_collect`, :func:`open_orders_key`,
:func:`rider_orders_key`. They load on first use, so importing the sans-I/O core
(``machine``, ``resume``, ``eta``, ``route``) brings in no Redis or web code.
"""
from __future__ import annotations

from tracker.lazy_exports import lazy_exports

_HOME = {
    "assign_orders": "tracker.orders.service",
    "load_order": "tracker.orders.service",
    "load_orders": "tracker.orders.service",
    "still_to_collect": "tracker.orders.service",
    "unassign_order": "tracker.orders.service",
    "open_orders_key": "tracker.orders.store",
    "rider_orders_key": "tracker.locations.rider_fixes",
}
__all__ = sorted(_HOME)
__getattr__ = lazy_exports(__name__, _HOME)
