"""Batched fix writes: every fix accepted within a few milliseconds goes in one round trip.

Socket handlers never await Redis per fix: :meth:`FixWriter.submit` records the rider's
latest fix (a newer fix of the same rider replaces an unwritten older one, so memory is
bounded by the number of riders) and returns. One background task drains what has been
submitted into one call of a Lua script (one round trip, one atomic step, the batch as one
JSON argument; on Redis Cluster, per-node pipelines instead), then the next batch. A slow or dead rider connection has nothing to do with
it; a write that fails because Redis cannot take it now (unreachable, out of memory, a
read-only replica, a full disk) is logged, counted and retried with the next batch. A batch
Redis refuses for its data (:data:`DATA_REFUSALS`, which retrying cannot cure) is written in
halves until each refused fix is alone: those are dropped, logged (a line per 10 s at most)
and counted (``tracker_fixes_refused``), all others written. A fix the store's guard refuses
(not newer than, or implausible from, the rider's stored fix: another socket's or process's,
or a batch written twice) is not written either: counted (``tracker_fixes_overruled``) and
handed to ``on_overruled`` with the stored fix, so the rider's next fixes are judged from it.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace
from typing import Callable

import orjson
from prometheus_client import Counter, Histogram
from redis.exceptions import ResponseError

from tracker.locations.fix import Fix
from tracker.logs import log_throttled
from tracker.locations.store import (RECORD_TTL_S, WRITE_FIXES_SCRIPT, fixes_payload, guard_rule, refusal,
                                     write_fixes_by_slot)
from tracker.redis_client import AnyRedis, is_cluster

log = logging.getLogger("tracker.locations")

TTL_REFRESH_S = 3600.0  # renew a rider record's one-day TTL at most this often

Batch = dict[str, tuple[Fix, str | None]]


# Replies that depend on the data written, not on the state of Redis: the same fixes would be
# refused again (a key of another type in the way, a position a geoset cannot hold). Anything
# else (unreachable, out of memory, read-only, MISCONF, BUSY...) is "not now": retried.
DATA_REFUSALS = ("WRONGTYPE", "invalid longitude", "invalid latitude")


def _refused(exc: BaseException) -> bool:
    """True when Redis refused the fixes themselves, so writing them again would fail again."""
    return isinstance(exc, ResponseError) and any(reason in str(exc) for reason in DATA_REFUSALS)


class FixWriter:
    """Coalesces fixes from all connections of a process and writes them in batches."""

    def __init__(self, redis: AnyRedis, registry: object, *, is_here: Callable[[str], bool], linger_s: float = 0.002,
                 max_speed_mps: float = 60.0, stale_after_ms: int = 30_000,
                 on_overruled: Callable[[str, Fix], None] | None = None) -> None:
        """``is_here(rider)``: whether the rider still has a socket on this process (riders_here.py),
        so that what a batch learns of a rider that left meanwhile is not kept for good."""
        self.redis = redis
        self.linger_s = linger_s
        self._rule = guard_rule(max_speed_mps, stale_after_ms)
        self.on_overruled = on_overruled
        self._is_here = is_here
        self._pending: dict[str, tuple[Fix, str | None]] = {}
        self._wake = asyncio.Event()
        self.regions: dict[str, str] = {}  # rider -> region of its last written fix
        self.accepted = Counter(
            "tracker_fixes_accepted", "Location fixes accepted from riders (a newer fix of a rider replaces an "
            "older one not yet written)", registry=registry,
        )
        self.written = Counter("tracker_fixes_written", "Location fixes written to Redis", registry=registry)
        self.refused = Counter(
            "tracker_fixes_refused", "Location fixes Redis refused to store (each is logged and dropped)",
            registry=registry,
        )
        self.overruled = Counter(
            "tracker_fixes_overruled", "Location fixes not stored because the rider's stored fix outranks them (newer, "
            "or too far away to reach since), e.g. another socket's or server process's", registry=registry,
        )
        self._submitted = 0
        self._script = redis.register_script(WRITE_FIXES_SCRIPT)
        self._ttl_set_at: dict[str, float] = {}  # rider -> monotonic time its record's TTL was renewed
        self.batch_size = Histogram(
            "tracker_fix_batch_size", "Fixes per Redis round trip",
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000), registry=registry,
        )

    def submit(self, rider_id: str, fix: Fix) -> None:
        """Queue a fix for writing; never blocks. A fix replacing an unwritten confirmed one
        (sanity.py) stays confirmed: it was judged from that one, which the store never saw; so
        does the time a backlog may have held that one back (``backlog_ms``)."""
        waiting = self._pending.get(rider_id)
        if waiting is not None and waiting[0].confirmed and not fix.confirmed:
            fix = replace(fix, confirmed=True)
        if waiting is not None and waiting[0].backlog_ms > fix.backlog_ms:
            fix = replace(fix, backlog_ms=waiting[0].backlog_ms)
        self._pending[rider_id] = (fix, self.regions.get(rider_id))
        self._submitted += 1
        self._wake.set()

    def known_region(self, rider_id: str, region: str | None) -> None:
        """Tell the writer that a rider connected, and which region it is stored in."""
        if region is not None:
            self.regions.setdefault(rider_id, region)

    def forget(self, rider_id: str) -> None:
        """The rider's last socket here closed: drop what the writer remembers of it (while it has
        another, that one still moves it between regions)."""
        self.regions.pop(rider_id, None)
        self._ttl_set_at.pop(rider_id, None)

    async def run(self) -> None:
        """The background task: wait for fixes, write each batch in one round trip."""
        while True:
            await self._wake.wait()
            await asyncio.sleep(self.linger_s)
            self._wake.clear()
            batch, self._pending = self._pending, {}
            self.accepted.inc(self._submitted)
            self._submitted = 0
            if batch:
                await self._write(batch)

    async def _write(self, batch: Batch) -> None:
        settled: set[str] = set()  # riders whose fix is written or refused
        try:
            await self._write_or_isolate(batch, settled)
        except Exception:
            # Put back what is not settled (newer fixes win) so nothing accepted is lost, then
            # let the supervisor log, count and restart us with backoff.
            for rid, item in batch.items():
                if rid not in settled:
                    self._pending.setdefault(rid, item)
            self._wake.set()
            raise

    async def _write_or_isolate(self, batch: Batch, settled: set[str]) -> None:
        """Write ``batch``; if Redis refuses it, write its halves the same way, down to single fixes."""
        try:
            await self._write_batch(batch)
        except Exception as exc:
            if not _refused(exc):
                raise
            if len(batch) == 1:
                ((rider_id, (fix, _)),) = batch.items()
                self.refused.inc()
                log_throttled(log, "location fix refused by Redis and dropped", str(exc), rider_id=rider_id)
            else:
                items = list(batch.items())
                for part in (items[: len(items) // 2], items[len(items) // 2:]):
                    await self._write_or_isolate(dict(part), settled)
                return
        settled.update(batch)

    async def _write_batch(self, batch: Batch) -> None:
        now = time.monotonic()
        stale_ttl = {rid for rid in batch if self._ttl_set_at.get(rid, -TTL_REFRESH_S) <= now - TTL_REFRESH_S}
        payload, new_regions = fixes_payload(batch, stale_ttl, self._rule)
        if is_cluster(self.redis):
            refused = await write_fixes_by_slot(self.redis, payload, RECORD_TTL_S)
        else:
            refused = [refusal(row) for row in await self._script(args=[orjson.dumps(payload), RECORD_TTL_S])]
        for r in refused:
            new_regions.pop(r.rider_id, None)  # still where its stored fix is
            stale_ttl.discard(r.rider_id)
            if self.on_overruled is not None:
                self.on_overruled(r.rider_id, r.stored)
        self.overruled.inc(len(refused))
        # Only riders still connected here are remembered: one whose last socket closed while
        # its fix was being written was forgotten meanwhile, and would otherwise stay for good.
        self.regions.update((rid, region) for rid, region in new_regions.items() if self._is_here(rid))
        self._ttl_set_at.update((rid, now) for rid in stale_ttl if self._is_here(rid))
        self.written.inc(len(batch) - len(refused))
        self.batch_size.observe(len(batch))
