"""Riders in Redis: the record hash, the H3-region geosets, and reading a rider back.

Keys (braces are Redis Cluster hash tags):

- ``rider:{<rider>}`` hash: ``lat lng ts client_ts cell region available shift_end speed heading
  accuracy left_at left_ms`` (``left_at``: the last fix's ts when the rider's client left, or
  a time a little ahead when its token was revoked: fixes stamped up to it count as before
  it left; ``left_ms``: the server's time then); expires about a day after the rider's last write (the writer refreshes the
  TTL at most once an hour per rider, not with every fix).
- ``riders:{<region cell>}`` geoset: the riders whose last fix is in the region.
- ``seen:{<region cell>}`` sorted set rider -> server ts of its last fix: the staleness
  index used by nearby search and the cleanup sweep.
- ``regions:active`` set of region cells that hold riders (for the cleanup sweep).

A batch of fixes is written by one Lua script (``write_fixes.lua``) taking the whole batch,
key names included, as one JSON argument: one round trip, little work for the server's
Python, and one atomic step, so a rider moving into another region is never seen in two
regions or in none. The script touches keys of several hash slots, which a single Redis
allows. Each fix replaces the stored one only if ``guard_fix.lua`` lets it, in the same step:
received later, not taken earlier by the phone, and plausible from it (or confirmed, or the
stored fix stale), so an old fix, a batch written twice or another process's socket never
moves the rider back. On Redis Cluster, :func:`write_fixes_by_slot` makes the same writes per
node: the records through a one-key script each (guarded the same way), then the regions' sets
of the fixes written (each rider only if newer there) and, for riders who changed region, the
removals from the old ones, so a moving rider may briefly be in two regions' sets, never in
none (readers go by the record and drop duplicates).
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Collection, Iterable

import orjson
from redis.asyncio.cluster import RedisCluster

from tracker.geo import EARTH_RADIUS_M, geo_index_lat, region_cell, rider_cell
from tracker.locations.fix import Fix
from tracker.locations.sanity import MAX_ACCURACY_DISCOUNT_M
from tracker.redis_client import AnyRedis

RECORD_TTL_S = 24 * 3600
ACTIVE_REGIONS = "regions:active"


def record_key(rider_id: str) -> str:
    return f"rider:{{{rider_id}}}"


def pause_key(rider_id: str) -> str:
    """An operator's pause of the rider (:mod:`tracker.riders.pause`), in its record's slot."""
    return f"rider:{{{rider_id}}}:pause"


def geoset_key(region: str) -> str:
    return f"riders:{{{region}}}"


def seen_key(region: str) -> str:
    return f"seen:{{{region}}}"


# A rider whose client closed its socket (1000 or 1001) has left: its record keeps the ts of
# the last fix that socket sent, and counts as silent until a later fix (any socket's). The mark
# may come before that fix is written (the writer batches): the record then starts with it, and
# gets the record's TTL, so it never outlives the rider's data. A mark only ever moves forward:
# marks of several sockets (or of a revocation, which marks ahead) land in any order, and an
# earlier one landing last must not bring back a rider a later one took away.
_MARK_LEFT = """
local current = tonumber(redis.call('HGET', KEYS[1], 'left_at') or '')
if current == nil or tonumber(ARGV[1]) > current then
  redis.call('HSET', KEYS[1], 'left_at', ARGV[1], 'left_ms', ARGV[3])
end
if redis.call('TTL', KEYS[1]) < 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[2])
end
"""


def has_left(ts: str | int, left_at: str | int | None) -> bool:
    """True when the rider's client closed its socket (or its token was revoked) since its last fix ``ts``."""
    return left_at is not None and int(left_at) >= int(ts)


def is_silent(now_ms: int, ts: int, left_at: str | int | None, stale_after_ms: int) -> bool:
    """True when a rider's last fix is too old to count, or its client closed the socket since."""
    return now_ms - ts > stale_after_ms or has_left(ts, left_at)


async def mark_left(redis: AnyRedis, rider_id: str, last_fix_ts: int, now_ms: int) -> None:
    """Record that the rider's client closed the socket whose last fix had ``last_fix_ts``, at
    the server's ``now_ms``: every fix stamped up to ``last_fix_ts`` counts as before it left
    (a mark at or before the stored one changes nothing)."""
    await redis.eval(_MARK_LEFT, 1, record_key(rider_id), last_fix_ts, RECORD_TTL_S, now_ms)


def _lua(name: str) -> str:
    return resources.files("tracker.locations").joinpath(name).read_text()


WRITE_FIXES_SCRIPT = _lua("guard_fix.lua") + _lua("write_fixes.lua")
RECORD_FIX_SCRIPT = _lua("guard_fix.lua") + _lua("record_fix.lua")
INDEX_FIXES_SCRIPT = _lua("index_fixes.lua")


@dataclass(frozen=True)
class Refusal:
    """A fix the store would not take, and the rider's stored fix that outranked it."""

    rider_id: str
    why: str  # 'older' (not newer than the stored fix) or 'implausible' (too far from it)
    stored: Fix


def refusal(row: list) -> Refusal:
    """A :class:`Refusal` from a script's reply ``[rider, why, ts, lat, lng, client_ts, accuracy]``."""
    rider, why, ts, lat, lng, client_ts, accuracy = row
    stored = Fix(lat=float(lat), lng=float(lng), ts=int(ts), client_ts=int(client_ts) if client_ts else None,
                 accuracy=float(accuracy) if accuracy else None)
    return Refusal(rider, why, stored)


def fixes_payload(batch: dict[str, tuple[Fix, str | None]], renew_ttl: Collection[str] = (),
                  rule: dict[str, float] | None = None) -> tuple[dict, dict[str, str]]:
    """What ``write_fixes.lua`` takes (as JSON) for a batch of accepted fixes, and each rider's region.

    ``batch`` maps rider id -> (fix, region the rider is stored in now or ``None``); riders in
    ``renew_ttl`` also get their record's TTL renewed. Numbers travel as their ``repr`` so the
    record holds exactly what was accepted. ``rule`` is ``guard_fix.lua``'s (:func:`guard_rule`).
    """
    regions: dict[str, str] = {}
    rows = []
    region_keys: dict[str, tuple[str, str]] = {}
    for rider_id, (fix, previous_region) in batch.items():
        region = region_cell(fix.lat, fix.lng)
        regions[rider_id] = region
        for cell in (region, previous_region):
            if cell is not None and cell not in region_keys:
                region_keys[cell] = (geoset_key(cell), seen_key(cell))
        extra = {name: repr(value) for name in ("speed", "heading", "accuracy")
                 if (value := getattr(fix, name)) is not None}
        # The phone's own time of the fix, always (empty when it gave none): a fix resent after a
        # reconnect is recognised against the stored one (:func:`last_fix`), not taken as new.
        extra["client_ts"] = "" if fix.client_ts is None else str(fix.client_ts)
        rows.append((record_key(rider_id), rider_id, repr(fix.lat), repr(fix.lng), str(fix.ts),
                     rider_cell(fix.lat, fix.lng), region, previous_region or "", int(rider_id in renew_ttl), extra,
                     repr(geo_index_lat(fix.lat)), int(fix.confirmed), int(fix.backlog_ms)))
    # Every key name comes from this module, so the script knows no key layout of its own.
    payload = {"riders": rows, "region_keys": region_keys, "active": ACTIVE_REGIONS, "rule": rule or guard_rule()}
    return payload, regions


def guard_rule(max_speed_mps: float = 60.0, stale_after_ms: int = 30_000) -> dict[str, float]:
    """What ``guard_fix.lua`` judges a fix by: the sanity rule's speed limit and stale time."""
    return {"max_speed": max_speed_mps, "stale_ms": stale_after_ms, "earth_m": EARTH_RADIUS_M,
            "max_slack_m": MAX_ACCURACY_DISCOUNT_M}


async def write_fixes_by_slot(redis: RedisCluster, payload: dict, ttl_s: int) -> list[Refusal]:
    """Redis Cluster: the writes of ``write_fixes.lua`` for ``payload``, as per-node pipelines:
    the guarded records first, then the index of the fixes written, then the removals from the
    regions those riders left. Returns the fixes refused."""
    rows = payload["riders"]
    rule = orjson.dumps(payload["rule"])
    pipe = redis.pipeline(transaction=False)
    for row in rows:  # (EVAL, not EVALSHA: the cluster pipeline routes it by its one key)
        pipe.eval(RECORD_FIX_SCRIPT, 1, row[0], orjson.dumps(row), rule, ttl_s)
    replies = await pipe.execute()
    refused: list[Refusal] = []
    geo: dict[str, list[list[str]]] = {}
    leaving: dict[str, list[str]] = {}
    for row, reply in zip(rows, replies):
        key, rider, lat, lng, ts, cell, region, previous, renew, extra, geo_lat, *_ = row
        if reply[0] == "refused":
            refused.append(refusal(reply[1:]))
            continue
        geo.setdefault(region, []).append([rider, lng, geo_lat, ts])
        if reply[1] and reply[1] != region:
            leaving.setdefault(reply[1], []).append(rider)
    keys = payload["region_keys"]
    if geo:
        pipe = redis.pipeline(transaction=False)
        for region, entries in geo.items():
            pipe.eval(INDEX_FIXES_SCRIPT, 2, *keys[region], orjson.dumps(entries))
        pipe.sadd(payload["active"], *geo)
        await pipe.execute()
    if leaving:  # only now: a rider on its way to another region is never in none
        pipe = redis.pipeline(transaction=False)
        for region, riders in leaving.items():
            old = keys.get(region) or (geoset_key(region), seen_key(region))
            pipe.zrem(old[0], *riders)
            pipe.zrem(old[1], *riders)
        await pipe.execute()
    return refused


# KEYS[1]: the rider's record; ARGV: available (1 or 0), shift start and end ('' to forget one),
# the record's TTL. One step (a script: a MULTI cannot follow a slot being migrated on a cluster).
_AVAILABILITY = """
redis.call('HSET', KEYS[1], 'available', ARGV[1])
local names = {'shift_start', 'shift_end'}
for i = 1, 2 do
  if ARGV[i + 1] == '' then redis.call('HDEL', KEYS[1], names[i]) else redis.call('HSET', KEYS[1], names[i], ARGV[i + 1]) end
end
redis.call('EXPIRE', KEYS[1], ARGV[4])
return 0
"""


async def set_availability(redis: AnyRedis, rider_id: str, available: bool, shift_end: int | None, *,
                           shift_start: int | None = None) -> None:
    """Store whether the rider takes offers (and when its shift starts and ends, if known)."""
    await redis.eval(_AVAILABILITY, 1, record_key(rider_id), int(available),
                     "" if shift_start is None else shift_start, "" if shift_end is None else shift_end, RECORD_TTL_S)


async def last_fix(redis: AnyRedis, rider_id: str) -> tuple[Fix | None, str | None, bool]:
    """The stored last good fix, its region and availability (used when a rider reconnects)."""
    h = await redis.hgetall(record_key(rider_id))
    available = h.get("available", "1") == "1"
    if "lat" not in h:
        return None, None, available
    fix = Fix(lat=float(h["lat"]), lng=float(h["lng"]), ts=int(h["ts"]),
              client_ts=int(h["client_ts"]) if h.get("client_ts") else None)
    return fix, h["region"], available


# One region's riders silent since before ARGV[1], at most ARGV[2] of them, out of its geoset
# (KEYS[1]) and staleness index (KEYS[2]; one hash slot) in one step: a fix written meanwhile
# (a fresher score) keeps its rider, where a read, then a removal, would drop it until its next fix.
_SWEEP = """
local dead = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
if #dead > 0 then
  redis.call('ZREM', KEYS[1], unpack(dead))
  redis.call('ZREM', KEYS[2], unpack(dead))
end
return #dead
"""
SWEEP_BATCH = 1000  # riders removed per script call (well within Lua's unpack limit)


async def sweep_stale(redis: AnyRedis, now_ms: int, stale_after_ms: int, regions: Iterable[str] | None = None) -> int:
    """Drop riders silent for longer than ``stale_after_ms`` from every region; returns how many."""
    if regions is None:
        regions = await redis.smembers(ACTIVE_REGIONS)
    removed = 0
    cutoff = now_ms - stale_after_ms
    for region in regions:
        while True:
            dropped = int(await redis.eval(_SWEEP, 2, geoset_key(region), seen_key(region), cutoff, SWEEP_BATCH))
            removed += dropped
            if dropped < SWEEP_BATCH:
                break
        if not await redis.exists(seen_key(region)):
            await redis.srem(ACTIVE_REGIONS, region)
            if await redis.exists(seen_key(region)):  # a first fix there meanwhile: keep the region listed
                await redis.sadd(ACTIVE_REGIONS, region)
    return removed
