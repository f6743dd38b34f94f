"""The customer's estimate while an order waits for a rider: the dispatcher's planned drop-off.

Every dispatch round plans each open order it can (:attr:`tracker.dispatch.model.Plan.estimates`:
the drop-off the round's plan gives it, with the rider offered it now or only planned, its food
not ready yet or its rider still delivering). The order keeps that time in its hash
(``planned_eta``) and its channel hears an ``estimate`` frame when the order first has one, when
it moves by :data:`ESTIMATE_STEP_MS` or more, and when the plan has had none for it for
``TRACKER_ESTIMATE_GRACE_S`` (``eta`` null: no rider can be planned for it now). The grace
(:class:`UnplannedSince`) keeps the customer's page from flicking between a time and "finding a
rider" while its planned rider is briefly away: considering another offer, or a decline about to
be answered by the next rider. Only while the order is confirmed with no rider: once a rider has
it, its ``eta`` (:mod:`tracker.orders.live`) takes over.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import orjson

from tracker.orders.store import order_channel, order_key
from tracker.redis_client import AnyRedis

ESTIMATE_STEP_MS = 60_000  # a new estimate is told only when it moves by a minute or more

# The order KEYS[1]'s planned_eta set to ARGV[1] ('' for none) and the frame ARGV[4] published on
# its channel ARGV[3], if the order still waits for a rider and the estimate changed by ARGV[2] ms
# or more (or appeared, or went). Checked here, not only by the caller: another process may have
# planned the region a moment ago, or a rider taken the order since the round read it.
_SET_PLANNED_ETA = """
local h = redis.call('HMGET', KEYS[1], 'status', 'rider_id', 'planned_eta')
if h[1] ~= 'confirmed' or (h[2] and h[2] ~= '') then return 0 end
local old, new = h[3] or '', ARGV[1]
if old == new then return 0 end
if old ~= '' and new ~= '' and math.abs(tonumber(old) - tonumber(new)) < tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], 'planned_eta', new)
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1
"""


@dataclass(frozen=True)
class Waiting:
    """An order waiting for a rider, with the estimate its customer was last told (ms or None)."""

    merchant_id: str
    order_id: str
    shown: int | None


class UnplannedSince:
    """When each waiting order of one region lost its place in the plan (this process's memory of
    its rounds; a region that moves to another process starts the grace afresh)."""

    def __init__(self, grace_ms: int) -> None:
        self.grace_ms = grace_ms
        self._since: dict[str, int] = {}

    def hold(self, waiting: Iterable[Waiting], planned: Mapping[str, int], now_ms: int) -> dict[str, int]:
        """The round's estimates, with the one shown kept for each order the plan has left out for
        less than the grace (so its customer is not told "no rider" for a moment's absence)."""
        held = dict(planned)
        still: dict[str, int] = {}
        for order in waiting:
            if order.order_id in planned or order.shown is None:
                continue
            since = still[order.order_id] = self._since.get(order.order_id, now_ms)
            if now_ms - since < self.grace_ms:
                held[order.order_id] = order.shown
        self._since = still  # (orders planned again, taken, on offer or gone are forgotten)
        return held


def estimate_frame(order_id: str, eta: int | None, now_ms: int) -> dict[str, Any]:
    """The ``estimate`` frame of an order's channel: the planned drop-off (ts, or None) as of ``now_ms``."""
    return {"type": "estimate", "order_id": order_id, "eta": eta, "ts": now_ms}


def worth_telling(shown: int | None, planned: int | None) -> bool:
    """Whether a newly planned drop-off differs enough from the one shown to tell the customer."""
    if shown is None or planned is None:
        return shown != planned
    return abs(planned - shown) >= ESTIMATE_STEP_MS


async def publish_estimates(redis: AnyRedis, waiting: Iterable[Waiting], planned: Mapping[str, int],
                            now_ms: int) -> int:
    """Store and announce the round's estimates of the ``waiting`` orders (``None`` for those the
    plan has no rider for); returns how many were sent to the orders' channels."""
    pipe = redis.pipeline(transaction=False)
    queued = 0
    for order in waiting:
        eta = planned.get(order.order_id)
        if not worth_telling(order.shown, eta):
            continue
        frame = orjson.dumps(estimate_frame(order.order_id, eta, now_ms))
        pipe.eval(_SET_PLANNED_ETA, 1, order_key(order.merchant_id, order.order_id), "" if eta is None else eta,
                  ESTIMATE_STEP_MS, order_channel(order.order_id), frame)
        queued += 1
    if not queued:
        return 0
    return sum(int(done) for done in await pipe.execute())
