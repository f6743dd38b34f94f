"""Riders in Redis: the record hash, the H3-region geosets, and reading a rider back.

Keys (braces are Redis Cluster hash tags):

- ``rider:{<rider>}`` hash: ``lat lng ts cell region available shift_end speed heading
  accuracy``; expires a day after the rider's last write.
- ``riders:{<region cell>}`` geoset: the riders whose last fix is in the region.
- ``seen:{<region cell>}`` sorted set rider -> server ts of its last fix: the staleness
  index used by nearby search and the cleanup sweep.
- ``regions:active`` set of region cells that hold riders (for the cleanup sweep).

A fix that moves a rider into another region writes the new geoset and removes the old
member in the same MULTI/EXEC as everything else of that batch, so a reader never sees the
rider in two regions or in none. (On Redis Cluster the keys live in different slots; there the
write adds before it removes and readers de-duplicate by rider id, see docs/architecture.md.)
"""
from __future__ import annotations

from typing import Iterable

import redis.asyncio as aioredis

from tracker.geo import region_cell, rider_cell
from tracker.locations.fix import Fix, RiderRecord

RECORD_TTL_S = 24 * 3600
ACTIVE_REGIONS = "regions:active"


def record_key(rider_id: str) -> str:
    return f"rider:{{{rider_id}}}"


def geoset_key(region: str) -> str:
    return f"riders:{{{region}}}"


def seen_key(region: str) -> str:
    return f"seen:{{{region}}}"


def queue_fix(pipe: aioredis.client.Pipeline, rider_id: str, fix: Fix, previous_region: str | None) -> str:
    """Add the commands storing one accepted fix to ``pipe``; returns the fix's region."""
    region = region_cell(fix.lat, fix.lng)
    fields: dict[str, str | float | int] = {
        "lat": repr(fix.lat), "lng": repr(fix.lng), "ts": fix.ts,
        "cell": rider_cell(fix.lat, fix.lng), "region": region,
    }
    for name in ("speed", "heading", "accuracy"):
        value = getattr(fix, name)
        if value is not None:
            fields[name] = repr(value)
    key = record_key(rider_id)
    pipe.hset(key, mapping=fields)
    pipe.expire(key, RECORD_TTL_S)
    pipe.geoadd(geoset_key(region), (fix.lng, fix.lat, rider_id))
    pipe.zadd(seen_key(region), {rider_id: fix.ts})
    if previous_region is not None and previous_region != region:
        pipe.zrem(geoset_key(previous_region), rider_id)
        pipe.zrem(seen_key(previous_region), rider_id)
    pipe.sadd(ACTIVE_REGIONS, region)
    return region


async def set_availability(redis: aioredis.Redis, rider_id: str, available: bool, shift_end: int | None) -> None:
    """Store whether the rider takes offers (and until when its shift runs, if known)."""
    key = record_key(rider_id)
    pipe = redis.pipeline(transaction=True)
    pipe.hset(key, mapping={"available": int(available)})
    if shift_end is None:
        pipe.hdel(key, "shift_end")
    else:
        pipe.hset(key, "shift_end", shift_end)
    pipe.expire(key, RECORD_TTL_S)
    await pipe.execute()


def record_from_hash(rider_id: str, h: dict[str, str], now_ms: int, stale_after_ms: int) -> RiderRecord | None:
    """A :class:`RiderRecord` from the rider hash, or ``None`` if it holds no fix."""
    if not h or "lat" not in h:
        return None
    ts = int(h["ts"])
    return RiderRecord(
        id=rider_id, lat=float(h["lat"]), lng=float(h["lng"]), ts=ts, cell=h["cell"], region=h["region"],
        available=h.get("available", "1") == "1", stale=now_ms - ts > stale_after_ms,
        shift_end=int(h["shift_end"]) if h.get("shift_end") else None,
    )


async def get_rider(redis: aioredis.Redis, rider_id: str, *, now_ms: int, stale_after_ms: int) -> RiderRecord | None:
    """The rider's record (last good fix, cells, availability, stale flag), or ``None``."""
    return record_from_hash(rider_id, await redis.hgetall(record_key(rider_id)), now_ms, stale_after_ms)


async def last_fix(redis: aioredis.Redis, rider_id: str) -> tuple[Fix | None, str | None, bool]:
    """The stored last good fix, its region and availability (used when a rider reconnects)."""
    h = await redis.hgetall(record_key(rider_id))
    available = h.get("available", "1") == "1"
    if "lat" not in h:
        return None, None, available
    fix = Fix(lat=float(h["lat"]), lng=float(h["lng"]), ts=int(h["ts"]))
    return fix, h["region"], available


async def sweep_stale(redis: aioredis.Redis, now_ms: int, stale_after_ms: int, regions: Iterable[str] | None = None) -> int:
    """Drop riders silent for longer than ``stale_after_ms`` from every region; returns how many."""
    if regions is None:
        regions = await redis.smembers(ACTIVE_REGIONS)
    removed = 0
    cutoff = now_ms - stale_after_ms
    for region in regions:
        dead = await redis.zrangebyscore(seen_key(region), "-inf", f"({cutoff}", start=0, num=10_000)
        if dead:
            pipe = redis.pipeline(transaction=True)
            pipe.zrem(geoset_key(region), *dead)
            pipe.zrem(seen_key(region), *dead)
            await pipe.execute()
            removed += len(dead)
        if not await redis.exists(seen_key(region)):
            await redis.srem(ACTIVE_REGIONS, region)
    return removed
