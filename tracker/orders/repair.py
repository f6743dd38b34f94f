"""Repair of order steps whose follow-up writes were lost (a supervised task in every process).

Every ``TRACKER_FOLLOWUP_REPAIR_S`` / 2 seconds it takes the journal's entries older than
``TRACKER_FOLLOWUP_REPAIR_S`` (:mod:`tracker.orders.followups`), brings each order's derived
keys in line with its record, tells the riders concerned, and drops the entries. Re-deriving is
idempotent, so two processes repairing at once, or an entry whose step did finish but whose
removal failed, do no harm. Counters of ``/metrics`` (orders by status, click-to-door) are
not repaired: whether a lost step was counted cannot be known.
"""
from __future__ import annotations

import asyncio
import logging

from prometheus_client import Counter

from tracker.orders import followups, machine
from tracker.orders.service import store_of, sync_indexes, tell_riders
from tracker.runtime import Runtime

log = logging.getLogger("tracker.orders.repair")


class FollowupRepair:
    """Re-derives the keys of journaled order steps left unfinished."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.after_s = rt.settings.followup_repair_s
        self.repaired = Counter("tracker_order_steps_repaired",
                                "Order steps whose follow-up writes were re-derived after a failure",
                                registry=rt.registry)

    async def run_forever(self) -> None:
        """Repair what is overdue, forever (a supervised task)."""
        while True:
            await self.repair_overdue()
            await asyncio.sleep(self.after_s / 2)

    async def repair_overdue(self) -> int:
        """Repair every overdue entry; returns how many orders were re-derived.

        An entry whose repair fails is reported (log, ``/readyz``) and kept for the next pass;
        the others go on.
        """
        count = 0
        while entries := await followups.overdue(self.rt.redis, self.after_s):
            failed = False
            for member, order_id, kind in entries:
                try:
                    count += await self.repair(order_id, kind)
                except Exception as exc:  # noqa: BLE001 - one order must not hold back the others
                    self.rt.supervisor.report("order-followup-repair", exc, order=order_id)
                    failed = True
                    continue
                await followups.end(self.rt.redis, [member])
            if failed:
                break  # what failed waits for the next pass
        if count:
            log.warning("re-derived the follow-up writes of %d order step(s) left unfinished", count)
        return count

    async def repair(self, order_id: str, kind: str) -> bool:
        """Bring one order's derived keys in line with its record and tell its riders again."""
        store = store_of(self.rt)
        order = await store.load(order_id) if order_id else None
        if order is None:
            return False
        await sync_indexes(self.rt, order)
        last = await store.history(order["merchant_id"], order_id)
        event = last[-1] if last and last[-1].get("kind") == kind else {}
        old = "assigned" if order.get("rider_id") else ""  # (the status before is not recorded)
        if kind in machine.RULES:
            await tell_riders(self.rt, order, kind, old, event)
        self.repaired.inc()
        return True
