"""Rider locations: fixes over the rider socket into H3-region geosets, nearby search.

For other features: :func:`nearby`, :func:`get_rider`, :class:`Fix`, :func:`rider_orders_key`, :data:`CARRYING_RIDERS`.
"""
from tracker.locations.fix import Fix, RiderRecord
from tracker.locations.nearby import NearbyRider, nearby
from tracker.locations.rider_fixes import CARRYING_RIDERS, rider_orders_key
from tracker.locations.store import get_rider

__all__ = ["CARRYING_RIDERS", "Fix", "NearbyRider", "RiderRecord", "get_rider", "nearby", "rider_orders_key"]
