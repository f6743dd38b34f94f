"""Rider locations: fixes over the rider socket into H3-region geosets, nearby search.

For other features: :class:`Fix`, :func:`rider_orders_key`, :data:`CARRYING_RIDERS`, loaded on
first use, so importing the sans-I/O core (``fix``, ``sanity``, ``ratelimit``) brings in no
Redis or web code. The search is ``tracker.locations.nearby.nearby``: a package attribute named
like its module would be the module once that is imported.
"""
from __future__ import annotations

from tracker.lazy_exports import lazy_exports

_HOME = {
    "Fix": "tracker.locations.fix",
    "CARRYING_RIDERS": "tracker.locations.rider_fixes",
    "rider_orders_key": "tracker.locations.rider_fixes",
}
__all__ = sorted(_HOME)
__getattr__ = lazy_exports(__name__, _HOME)
