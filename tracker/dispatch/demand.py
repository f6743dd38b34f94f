"""Where orders come from, per dispatch region: each restaurant's order count (Redis side).

Keys (one hash tag per region, so both live in one Redis Cluster slot):

- ``demand:{<region>}:orders`` hash merchant -> orders placed there so far;
- ``demand:{<region>}:sites`` hash merchant -> ``lat,lng`` of its pickup.

Counted once per new order (:func:`record_order`, called when an order is created) and read
by each dispatch round as the planner's ``Snapshot.demand`` (``coverage.py`` uses it). The
counts never decay: only their ratios matter, and the MDRP replay measured a decaying count
no better (docs/DISPATCH.md).
"""
from __future__ import annotations

import logging
import math

from tracker.dispatch.model import DemandSite
from tracker.geo import dispatch_region
from tracker.logs import log_throttled
from tracker.redis_client import AnyRedis

log = logging.getLogger("tracker.dispatch")

MAX_SITES = 5000  # restaurants per region passed to the planner at most (the busiest)


def counts_key(region: str) -> str:
    """Order counts by merchant in ``region``."""
    return f"demand:{{{region}}}:orders"


def sites_key(region: str) -> str:
    """Pickup positions by merchant in ``region``."""
    return f"demand:{{{region}}}:sites"


# KEYS: the region's counts and sites (one slot); ARGV: the merchant, its ``lat,lng``. One step
# (a script rather than a MULTI, which on a cluster cannot follow a slot being migrated).
_RECORD = """
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return 0
"""


async def record_order(redis: AnyRedis, merchant_id: str, lat: float, lng: float) -> None:
    """Count one new order at ``merchant_id``'s restaurant (at ``lat``, ``lng``)."""
    region = dispatch_region(lat, lng)
    await redis.eval(_RECORD, 2, counts_key(region), sites_key(region), merchant_id, f"{lat!r},{lng!r}")


async def load_demand(redis: AnyRedis, region: str) -> tuple[DemandSite, ...]:
    """The region's restaurants with their order counts (largest first, at most MAX_SITES).

    An entry that does not read as a position and a count (written by something else) is left
    out and logged (throttled), not allowed to stop the region's rounds."""
    pipe = redis.pipeline(transaction=False)
    pipe.hgetall(counts_key(region))
    pipe.hgetall(sites_key(region))
    counts, sites = await pipe.execute()
    out = []
    for merchant, count in counts.items():
        where = sites.get(merchant)
        if where is None:
            continue
        site = _site(where, count)
        if site is None:
            log_throttled(log, "demand entry left out: not a position and a count",
                          f"region {region}, merchant {merchant!r}: {where!r}, {count!r}", level=logging.WARNING)
            continue
        out.append(site)
    out.sort(key=lambda d: -d.weight)
    return tuple(out[:MAX_SITES])


def _site(where: str, count: str) -> DemandSite | None:
    """``lat,lng`` and an order count as a :class:`DemandSite`, or None when they do not read as such."""
    try:
        lat, lng = (float(v) for v in where.split(","))
        weight = float(count)
    except ValueError:
        return None
    if not (-90.0 <= lat <= 90.0 and -180.0 <= lng <= 180.0 and math.isfinite(weight) and weight >= 0):
        return None
    return DemandSite(lat, lng, weight)
