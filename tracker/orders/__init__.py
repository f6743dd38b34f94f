"""Orders: lifecycle, durable history, live channels with gapless resume, ETAs and prompts.

For other features (dispatch): :func:`load_order`, :func:`load_orders`, :func:`assign_orders`,
:func:`unassign_order`, :func:`open_orders_key`, :func:`rider_orders_key`.
"""
from tracker.locations import rider_orders_key
from tracker.orders.service import assign_orders, load_order, load_orders, still_to_collect, unassign_order
from tracker.orders.store import open_orders_key

__all__ = ["assign_orders", "load_order", "load_orders", "open_orders_key", "rider_orders_key", "still_to_collect", "unassign_order"]
