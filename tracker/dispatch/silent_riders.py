"""Take back the orders a silent rider has not collected yet, so another rider brings them.

A rider whose phone stops sending fixes while it carries orders (battery, signal, the app
killed) stays on the ops page as "busy, silent". Food still at the restaurant need not wait
for it: once the rider has been silent for ``TRACKER_SILENT_TAKE_BACK_S`` (0: never) since
both its last fix and the order's assignment (a rider assigned by hand that never connected
is silent from the assignment), each of its orders still ``assigned`` or ``at_pickup`` is taken back (``rider_unassigned`` by
``service``, reason "rider silent for N min"), the rider kept away from it for the decline
cooldown, and the next round offers it again. A rider whose app closed its socket on purpose
(or whose token was revoked) and has not come back is not merely quiet: its orders go after
:data:`LEFT_TAKE_BACK_S` (at most the setting) since it left and since the assignment, reason
"rider left N min ago". Food already picked up stays with the rider: only an operator can say
it is lost (``fail``). Every process sweeps every :func:`sweep_interval_s`; the take-back is one
atomic step that names the rider, so two processes never take an order back twice.
"""
from __future__ import annotations

import logging

from tracker.errors import ApiError
from tracker.locations import CARRYING_RIDERS, rider_orders_key
from tracker.locations.store import has_left, record_key
from tracker.orders.machine import TO_COLLECT
from tracker.orders.store import store_of
from tracker.runtime import Runtime

log = logging.getLogger("tracker.dispatch")


LEFT_TAKE_BACK_S = 60.0  # server seconds a rider that left keeps its uncollected orders


def silent_for_ms(now_ms: int, last_fix_ts: str | None, assigned_at: str | None) -> int:
    """How long the rider has been silent about an order: since the later of its last fix and
    the order's assignment (a rider assigned an order is given the whole time to show up)."""
    return now_ms - max(int(last_fix_ts or 0), int(assigned_at or 0))


def _span(ms: int) -> str:
    """A length for a reason: whole seconds under a minute, else whole minutes."""
    return f"{max(1, ms // 1000)} s" if ms < 60_000 else f"{ms // 60000} min"


def take_back_reason(now_ms: int, limit_ms: int, last_fix: str | None, left_at: str | None, left_ms: str | None,
                     assigned_at: str | None) -> str | None:
    """Why an uncollected order goes from its rider now, or ``None`` while it stays: the rider
    silent for ``limit_ms``, or gone (its client left since its last fix) for the shorter
    :data:`LEFT_TAKE_BACK_S`, each counted from the assignment at the earliest."""
    silent = silent_for_ms(now_ms, last_fix, assigned_at)
    if silent >= limit_ms:
        return f"rider silent for {_span(silent)}"
    if last_fix is None or left_ms is None or not has_left(last_fix, left_at):
        return None
    gone = now_ms - max(int(left_ms), int(assigned_at or 0))
    if gone >= min(limit_ms, int(LEFT_TAKE_BACK_S * 1000)):
        return f"rider left {_span(now_ms - int(left_ms))} ago"
    return None


async def take_back_from_silent_riders(rt: Runtime, now_ms: int) -> int:
    """Take back every uncollected order of riders silent (or gone) for long enough; returns how many."""
    limit_ms = int(rt.settings.silent_take_back_s * 1000)
    riders = sorted(await rt.redis.smembers(CARRYING_RIDERS))
    if not limit_ms or not riders:
        return 0
    pipe = rt.redis.pipeline(transaction=False)
    for rid in riders:
        pipe.hmget(record_key(rid), "ts", "left_at", "left_ms")
        pipe.smembers(rider_orders_key(rid))
    res = await pipe.execute()
    taken = 0
    dispatcher = rt.services["dispatcher"]
    soonest_ms = min(limit_ms, int(LEFT_TAKE_BACK_S * 1000))  # neither rule counts from before the last fix
    for rid, (last_fix, left_at, left_ms), carried in zip(riders, res[::2], res[1::2]):
        if not carried or (last_fix and now_ms - int(last_fix) < soonest_ms):
            continue
        for order in await store_of(rt).load_many(sorted(carried)):
            if order is None or order.get("rider_id") != rid or order.get("status") not in TO_COLLECT:
                continue
            reason = take_back_reason(now_ms, limit_ms, last_fix, left_at, left_ms, order.get("assigned_at"))
            if reason is None:
                continue
            try:
                await dispatcher.take_back(order["merchant_id"], order["id"], rid, by="service", reason=reason)
            except ApiError:  # picked up, or taken back by another process a moment ago
                continue
            taken += 1
            log.warning("order taken back from a silent rider", extra={
                "order_id": order["id"], "rider_id": rid, "reason": reason,
                "silent_s": silent_for_ms(now_ms, last_fix, order.get("assigned_at")) // 1000})
    return taken


def sweep_interval_s(silent_take_back_s: float) -> float:
    """Server seconds between sweeps: a tenth of the shorter wait (6 s at the defaults), at
    least 1 s, so an order goes soon after its time (a fifth of the setting had let it wait up
    to a minute longer)."""
    return max(1.0, min(silent_take_back_s, LEFT_TAKE_BACK_S) / 10)


async def sweep_forever(rt: Runtime) -> None:
    """Take back from silent riders every :func:`sweep_interval_s`."""
    while True:
        if rt.settings.silent_take_back_s and rt.clock_check.agrees:  # (not by a clock off Redis's)
            await take_back_from_silent_riders(rt, rt.clock.now_ms())
        await rt.clock.sleep(sweep_interval_s(rt.settings.silent_take_back_s))
