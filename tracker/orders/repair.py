"""Repair of order steps whose follow-up writes were lost (a supervised task in every process).

Every ``TRACKER_FOLLOWUP_REPAIR_S`` / 2 seconds it takes the journal's entries older than
``TRACKER_FOLLOWUP_REPAIR_S`` (:mod:`tracker.orders.followups`). Each entry is claimed for a
lease of as long (so two processes never repair the same step at once, and one that fails or
dies mid-repair leaves it to a later pass), then the order's derived keys
are brought in line with its record, read again until no step changed it meanwhile (a step
racing the repair cannot be undone by it), and, if the journaled step is indeed the order's
latest event, the riders concerned are told again and dispatch's step listeners run. An entry
whose repair fails is reported and comes due again when its lease ends.
The fleet-wide counts (orders by status, delivered, click-to-door) are brought in line too,
exactly once (:mod:`tracker.orders.counts`).

Once per Redis, :func:`journal_unjournaled` (the ``order-followup-rescan`` task) journals every
order whose record still holds a count change never applied (``count_pending``): earlier versions
took a step without its journal when the journal's node was down (on a cluster), and such a
step's count, open-order index and rider sets were then never repaired.
"""
from __future__ import annotations

import asyncio
import logging

import orjson
from prometheus_client import Counter

from tracker.orders import followups, machine
from tracker.orders.notices import tell_riders
from tracker.orders.service import FOLLOWUPS_TASK, sync_indexes
from tracker.orders.store import events_key, store_of
from tracker.redis_client import REDIS_DOWN, AnyRedis
from tracker.riders.inbox import RECHECK, inbox_channel
from tracker.runtime import Runtime

log = logging.getLogger("tracker.orders.repair")

MAX_PER_PASS = 1000
RESCANNED_KEY = "followups:{orders}:rescanned"  # set once :func:`journal_unjournaled` went through this Redis
RESCAN_KIND = "rescan"  # the journal entries it writes: no step kind, so their repair tells nobody
RESCAN_BATCH = 500  # order records read per round trip


class FollowupRepair:
    """Re-derives the keys of journaled order steps left unfinished."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.after_s = rt.settings.followup_repair_s
        self.repaired = Counter("tracker_order_steps_repaired",
                                "Order steps whose follow-up writes were re-derived after a failure",
                                registry=rt.registry)

    async def run_forever(self) -> None:
        """Repair what is overdue, forever (a supervised task). Redis being unreachable is
        reported and the next pass comes at the usual pace, so repair follows Redis's return."""
        while True:
            try:
                await self.repair_overdue()
            except REDIS_DOWN as exc:
                self.rt.supervisor.report(FOLLOWUPS_TASK, exc)
            await asyncio.sleep(self.after_s / 2)

    async def repair_overdue(self) -> int:
        """Repair the entries due (up to :data:`MAX_PER_PASS`); returns how many orders were re-derived."""
        redis, count = self.rt.redis, 0
        for member, score, order_id, kind in await followups.due(redis, MAX_PER_PASS):
            if not await followups.claim(redis, member, score, lease_s=self.after_s):
                continue  # another process has it
            try:
                count += await self.repair(order_id, kind)
            except Exception as exc:  # noqa: BLE001 - one order must not hold back the others
                self.rt.supervisor.report(FOLLOWUPS_TASK, exc, order=order_id)
                continue  # due again once the claim's lease ends
            await followups.end(redis, [member])
        if count:
            log.warning("re-derived the follow-up writes of %d order step(s) left unfinished", count)
        return count

    async def repair(self, order_id: str, kind: str) -> bool:
        """Bring one order's derived keys in line with its record and, if the step ``kind`` is
        its latest event, tell its riders again. False when there is no such order."""
        store = store_of(self.rt)
        order = await store.load(order_id) if order_id else None
        for _ in range(5):
            if order is None:
                return False
            await sync_indexes(self.rt, order)
            await self.rt.services["order_metrics"].count(self.rt.redis, order)
            again = await store.load(order_id)
            if again is not None and again.get("last_event_id") == order.get("last_event_id"):
                break
            order = again  # a step came in between: derive from the newer record
        else:
            raise RuntimeError(f"order {order_id!r} kept changing while it was repaired; trying again later")
        latest = await self.rt.redis.xrevrange(events_key(order["merchant_id"], order_id), count=1)
        event = orjson.loads(latest[0][1]["e"]) if latest else {}
        if kind in machine.RULES and event.get("kind") == kind:  # (a step that never ran tells nobody)
            old = "assigned" if order.get("rider_id") else ""  # (the status before is not recorded)
            await tell_riders(self.rt, order, kind, old, event)
            for rider in {order.get("rider_id"), order.get("last_rider_id")} - {None, ""}:
                # Frames the step's caller would have sent (``assigned`` after a hand assignment)
                # may be missing: the rider's connection re-reads and tells its route.
                await self.rt.pubsub.publish(inbox_channel(rider), RECHECK)
        self.repaired.inc()
        return True


async def journal_unjournaled(rt: Runtime) -> int:
    """Journal, for repair now, every order whose record holds a count change not applied
    (``count_pending``); once per Redis (:data:`RESCANNED_KEY`), as the ``order-followup-rescan``
    task at start. Returns how many orders were journaled.

    Versions before this one let a step go ahead unjournaled when the journal could not be
    written (a cluster's ``{orders}`` node down or failing over): its count failed with it and
    stayed pending in the record, and its open-order index and rider sets, if they failed too,
    were never re-derived (a confirmed order never dispatched). The repair of these entries
    re-derives both from the record and tells nobody. A change found pending because a count is
    under way, or whose entry is journaled already, is applied once all the same (by its tag).
    One pass over the keyspace (``SCAN``, every primary), so it is done once, not at every start."""
    redis = rt.redis
    if await redis.exists(RESCANNED_KEY):
        return 0
    found, batch = 0, []
    async for key in redis.scan_iter(match="order:{m:*}:*", count=1000, _type="hash"):
        batch.append(key)
        if len(batch) >= RESCAN_BATCH:
            found += await _journal_pending(redis, batch)
            batch = []
    found += await _journal_pending(redis, batch)
    await redis.set(RESCANNED_KEY, "1")
    if found:
        log.warning("journaled %d order(s) whose count (and perhaps their indexes) an earlier version left "
                    "unrepaired; the follow-up repair re-derives them now", found)
    return found


async def _journal_pending(redis: AnyRedis, keys: list[str]) -> int:
    """Journal, due now, the orders of ``keys`` (order records) holding a pending count change."""
    if not keys:
        return 0
    pipe = redis.pipeline(transaction=False)
    for key in keys:
        pipe.hmget(key, "id", "count_pending")
    ids = [oid for oid, pending in await pipe.execute() if oid and pending]
    if ids:
        await followups.begin(redis, ids, RESCAN_KIND, 0)
    return len(ids)
