"""Take back the orders a silent rider has not collected yet, so another rider brings them.

A rider whose phone stops sending fixes while it carries orders (battery, signal, the app
killed) stays on the ops page as "busy, silent". Food still at the restaurant need not wait
for it: once the rider has been silent for ``TRACKER_SILENT_TAKE_BACK_S`` (0: never) since
both its last fix and the order's assignment (a rider assigned by hand that never connected
is silent from the assignment), each of its orders still ``assigned`` or ``at_pickup`` is taken back (``rider_unassigned`` by
``service``, reason "rider silent for N min"), the rider kept away from it for the decline
cooldown, and the next round offers it again. Food already picked up stays with the rider:
only an operator can say it is lost (``fail``). Every process sweeps; the take-back is one
atomic step that names the rider, so two processes never take an order back twice.
"""
from __future__ import annotations

import logging

from tracker.errors import ApiError
from tracker.locations import CARRYING_RIDERS, rider_orders_key
from tracker.locations.store import record_key
from tracker.orders.machine import TO_COLLECT
from tracker.orders.store import store_of
from tracker.runtime import Runtime

log = logging.getLogger("tracker.dispatch")


def silent_for_ms(now_ms: int, last_fix_ts: str | None, assigned_at: str | None) -> int:
    """How long the rider has been silent about an order: since the later of its last fix and
    the order's assignment (a rider assigned an order is given the whole time to show up)."""
    return now_ms - max(int(last_fix_ts or 0), int(assigned_at or 0))


async def take_back_from_silent_riders(rt: Runtime, now_ms: int) -> int:
    """Take back every uncollected order of riders silent for the setting; returns how many."""
    limit_ms = int(rt.settings.silent_take_back_s * 1000)
    riders = sorted(await rt.redis.smembers(CARRYING_RIDERS))
    if not limit_ms or not riders:
        return 0
    pipe = rt.redis.pipeline(transaction=False)
    for rid in riders:
        pipe.hget(record_key(rid), "ts")
        pipe.smembers(rider_orders_key(rid))
    res = await pipe.execute()
    taken = 0
    dispatcher = rt.services["dispatcher"]
    for rid, last_fix, carried in zip(riders, res[::2], res[1::2]):
        if not carried or (last_fix and now_ms - int(last_fix) < limit_ms):
            continue
        for order in await store_of(rt).load_many(sorted(carried)):
            if order is None or order.get("rider_id") != rid or order.get("status") not in TO_COLLECT:
                continue
            silent = silent_for_ms(now_ms, last_fix, order.get("assigned_at"))
            if silent < limit_ms:
                continue
            reason = f"rider silent for {max(1, round(silent / 60000))} min"
            try:
                await dispatcher.take_back(order["merchant_id"], order["id"], rid, by="service", reason=reason)
            except ApiError:  # picked up, or taken back by another process a moment ago
                continue
            taken += 1
            log.warning("order taken back from a silent rider", extra={"order_id": order["id"], "rider_id": rid,
                                                                       "silent_s": silent // 1000})
    return taken


async def sweep_forever(rt: Runtime) -> None:
    """Take back from silent riders every fifth of the setting (at most every second of server time)."""
    while True:
        if rt.settings.silent_take_back_s:
            await take_back_from_silent_riders(rt, rt.clock.now_ms())
        await rt.clock.sleep(max(1.0, rt.settings.silent_take_back_s / 5))
