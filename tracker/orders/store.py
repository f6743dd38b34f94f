"""Orders in Redis: the order hash, its event stream, the merchant feed, all in one Lua step.

Keys (braces are Redis Cluster hash tags; one merchant's orders share a slot):

- ``order:{m:<merchant>}:<order>`` hash: the order's current state;
- ``events:{m:<merchant>}:<order>`` stream: its durable history (kept as long as the order);
- ``feed:{m:<merchant>}`` stream: every event of the merchant's orders, trimmed by MINID to
  ``FEED_RETENTION_MS`` (3 h of real time, by Redis's clock like the entry ids, at least the
  2 h the merchant channel promises, however fast a replay runs the server's clock); beside
  it ``feed:{m:<merchant>}:last`` (its newest id, the ``prev`` of the next live message) and
  ``feed:{m:<merchant>}:origin`` (the first id it ever held: while it still holds that, it
  has lost nothing to trimming), and ``feed:{m:<merchant>}:open``, the merchant's orders that
  have not ended (the feed and its ids expire only once it is empty);
- ``orderidx:{<order>}`` -> merchant id: finds an order by id alone and makes ids unique;
- ``open:{<dispatch region>}`` ZSET: orders waiting for a rider (``confirmed``, no rider);
- ``placed:{<dispatch region>}`` ZSET: orders waiting for their kitchen (``placed``);
- ``unfinished:{<dispatch region>}`` ZSET: orders that have not ended, scored by their clock
  start (``clock_start_at``: the oldest are the first due);
- ``rider:{<rider>}:orders`` SET: orders a rider carries.

An order that ends (delivered, cancelled, failed) keeps its hash, its stream and its id for the
store's ``retention_ms`` (``TRACKER_ORDER_RETENTION_S``), then Redis drops them: the step sets
the first two to expire, :meth:`OrderStore.update_indexes` the id.

The Lua step (``order_step.lua``) checks and changes the state and appends the event in one
atomic script, and publishes the event on ``order:<id>:live`` and ``merchant:<id>:live``
with the previous event id of the same stream (``prev``) so live subscribers detect gaps.
The region and rider keys live in other slots; they are written right after the step and are
idempotent hints (the dispatcher re-checks the order itself).
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any, Callable, Iterable, NoReturn, Sequence

import orjson

from tracker.errors import ApiError
from tracker.geo import dispatch_region
from tracker.orders.lateness import clock_start
from tracker.orders.machine import FINAL
from tracker.redis_client import LUA_NOW_MS, AnyRedis, get_many

if TYPE_CHECKING:
    from tracker.runtime import Runtime

FEED_RETENTION_MS = 3 * 3600 * 1000
_SCRIPT = LUA_NOW_MS + resources.files("tracker.orders").joinpath("order_step.lua").read_text()
# The merchant feed's newest id, first entry's id and origin (KEYS: feed_last, feed, feed_origin),
# read at one moment: a step appends to the feed and sets all three at once (order_step.lua).
_FEED_ENDS = """
local first = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)[1]
return {redis.call('GET', KEYS[1]) or '', first and first[1] or '', redis.call('GET', KEYS[3]) or ''}
"""


def order_key(merchant_id: str, order_id: str) -> str:
    return f"order:{{m:{merchant_id}}}:{order_id}"


def events_key(merchant_id: str, order_id: str) -> str:
    return f"events:{{m:{merchant_id}}}:{order_id}"


def feed_key(merchant_id: str) -> str:
    return f"feed:{{m:{merchant_id}}}"


def feed_last_key(merchant_id: str) -> str:
    """The id of the merchant feed's newest entry (the ``prev`` of its next live message)."""
    return f"feed:{{m:{merchant_id}}}:last"


def feed_open_key(merchant_id: str) -> str:
    """The merchant's orders that have not ended (a set): while it holds any, the feed and its
    ids do not expire (set by the Lua step)."""
    return f"feed:{{m:{merchant_id}}}:open"


def feed_origin_key(merchant_id: str) -> str:
    """The id of the first entry the merchant feed ever held (set once, by the Lua step)."""
    return f"feed:{{m:{merchant_id}}}:origin"


def index_key(order_id: str) -> str:
    return f"orderidx:{{{order_id}}}"


def open_orders_key(region: str) -> str:
    return f"open:{{{region}}}"


def kitchen_queue_key(region: str) -> str:
    """The region's orders waiting for their kitchen to confirm them (``placed``), by placement
    time (the ops page's list; the same hash tag as the region's open orders)."""
    return f"placed:{{{region}}}"


def unfinished_orders_key(region: str) -> str:
    """The region's orders that have not ended (any status but delivered, cancelled or failed),
    by placement time: where the ops page finds the deliveries running late."""
    return f"unfinished:{{{region}}}"


# Every dispatch region that has ever held an open order (res-4 cells: a handful per city),
# so the dispatcher finds its regions without scanning the keyspace.
DISPATCH_REGIONS_KEY = "dispatch:regions"


async def open_order_regions(redis: AnyRedis, key: Callable[[str], str] = open_orders_key) -> list[str]:
    """The dispatch regions that hold open orders now (with ``key``: orders in that index of
    theirs, e.g. :func:`kitchen_queue_key`), sorted (from the region index)."""
    known = sorted(await redis.smembers(DISPATCH_REGIONS_KEY))
    if not known:
        return []
    pipe = redis.pipeline(transaction=False)
    for region in known:
        pipe.zcard(key(region))
    return [region for region, size in zip(known, await pipe.execute()) if size]


def order_channel(order_id: str) -> str:
    return f"order:{order_id}:live"


def merchant_channel(merchant_id: str) -> str:
    return f"merchant:{merchant_id}:live"


RESERVATION_MS = 10 * 60_000  # how long an order id stays bound to a merchant whose create did not complete


class OrderChanged(Exception):
    """A step computed from what was read met an order another step changed since (read again)."""


@dataclass(frozen=True)
class Step:
    """What a transition asks of the Lua step."""

    kind: str
    allowed: tuple[str, ...]
    new_status: str | None
    fields: dict[str, Any]
    event_extra: dict[str, Any]
    rider: str | None = None
    require_unassigned: bool = False
    per_order_fields: tuple[dict[str, Any], ...] = ()
    require_unset: tuple[str, str] | None = None  # (hash field that must still be empty, why it is refused)
    fence: tuple[str, list[str]] | None = None  # (offer id, the orders' lock keys): those locks must hold it
    unchanged: dict[str, str] | None = None  # hash fields every order must still hold as read (else OrderChanged)
    done: str | None = None  # the hash field the step stamps: set on a refused order, it took this very step before


def _strings(fields: dict[str, Any]) -> bytes:
    return orjson.dumps({k: ("" if v is None else str(v)) for k, v in fields.items()})


def _refused(step: Step, order_id: str, status: str, *, already: bool) -> NoReturn:
    """The ``invalid_transition`` of a step the order's status does not allow, saying where the
    order stands (``status``) and whether it took this very step already (``already``: a press
    repeated after an answer that left it unknown whether the first one was done)."""
    why = f"it is '{status}'" + (f" (it took '{step.kind}' already)" if already else "")
    raise ApiError("invalid_transition", f"cannot apply '{step.kind}' to order {order_id!r}: {why}",
                   order_id=order_id, order_status=status, already=already)


class OrderStore:
    """The Redis adapter of the orders feature."""

    def __init__(self, redis: AnyRedis, retention_ms: int) -> None:
        """``retention_ms``: how long an order that ended is kept (``TRACKER_ORDER_RETENTION_S``)."""
        self.redis = redis
        self.retention_ms = max(1, retention_ms)  # (0 would delete an order in the step that ends it)
        self._step = redis.register_script(_SCRIPT)
        self._feed_ends = redis.register_script(_FEED_ENDS)

    async def merchant_of(self, order_id: str) -> str | None:
        return await self.redis.get(index_key(order_id))

    async def reserve_id(self, order_id: str, merchant_id: str) -> None:
        """Bind an order id to its merchant (for good once :meth:`create` stored the order; a
        reservation whose create failed lapses after :data:`RESERVATION_MS`, so the id is not
        held for a merchant that never got the order); ``conflict`` if bound to another one."""
        if not await self.redis.set(index_key(order_id), merchant_id, nx=True, px=RESERVATION_MS):
            if await self.redis.get(index_key(order_id)) != merchant_id:
                raise ApiError("conflict", f"order {order_id!r} already exists with a different body")

    async def create(self, order_id: str, merchant_id: str, fields: dict[str, Any], fingerprint: str,
                     event: dict[str, Any], now_ms: int) -> bool:
        """Store a new order and its ``placed`` event; False if it existed with this body."""
        result = await self._run(
            "create", merchant_id, [order_id], now_ms, allowed=(), new_status="placed",
            rider=None, unassigned=False, fields={**fields, "body": fingerprint}, fingerprint=fingerprint,
            events=[event], per_order=[{}], unset=None,
        )
        if result[0] == "conflict":
            raise ApiError("conflict", f"order {order_id!r} already exists with a different body")
        # An id used again may still carry the expiry of the ended order it named before: the
        # new order keeps its id for good (checked again on a repeated create, whose first try
        # may have failed right here), an order that has ended meanwhile keeps its expiry.
        if result[0] != "exists" or await self.redis.pttl(order_key(merchant_id, order_id)) == -1:
            await self.redis.persist(index_key(order_id))
        return result[0] != "exists"

    async def apply(self, merchant_id: str, order_ids: list[str], step: Step, now_ms: int) -> list[dict[str, Any]]:
        """Apply ``step`` to every order (all or none); returns the events with their ids.

        Each event also carries ``_from``, the order's status before the step (not on the wire).
        """
        events = [{"order_id": oid, "kind": step.kind, "ts": now_ms, **step.event_extra} for oid in order_ids]
        per_order = list(step.per_order_fields) or [{} for _ in order_ids]
        result = await self._run(
            "step", merchant_id, order_ids, now_ms, allowed=step.allowed, new_status=step.new_status,
            rider=step.rider, unassigned=step.require_unassigned, fields=step.fields, fingerprint="",
            events=events, per_order=per_order, unset=step.require_unset[0] if step.require_unset else None,
            fence=step.fence, unchanged=step.unchanged, done=step.done,
        )
        outcome = result[0]
        if outcome == "changed":
            raise OrderChanged(result[1])
        if outcome == "not_found":
            raise ApiError("not_found", f"no order {result[1]!r}")
        if outcome == "invalid_transition":
            return _refused(step, result[1], result[2], already=bool(result[3]) if len(result) > 3 else False)
        if outcome == "forbidden":
            raise ApiError("forbidden", f"order {result[1]!r} is not assigned to this rider")
        if outcome == "conflict":
            raise ApiError("conflict", f"order {result[1]!r} already has a rider")
        if outcome == "fenced":
            raise ApiError("conflict", f"order {result[1]!r} is no longer held by this offer (it was settled meanwhile)")
        if outcome == "already":
            why = step.require_unset[1] if step.require_unset else "already done"
            raise ApiError("invalid_transition", f"cannot apply '{step.kind}' to order {result[1]!r}: {why}",
                           order_id=result[1], order_status=result[2],
                           already=step.require_unset is not None and step.done == step.require_unset[0])
        ids, olds = result[1::2], result[2::2]
        return [{"id": eid, **event, "_from": old} for eid, old, event in zip(ids, olds, events)]

    async def _run(self, mode: str, merchant_id: str, order_ids: list[str], now_ms: int, *, allowed: Iterable[str],
                   new_status: str | None, rider: str | None, unassigned: bool, fields: dict[str, Any],
                   fingerprint: str, events: list[dict[str, Any]], per_order: list[dict[str, Any]],
                   unset: str | None, fence: tuple[str, list[str]] | None = None,
                   unchanged: dict[str, str] | None = None, done: str | None = None) -> list[str]:
        keys = [feed_key(merchant_id), feed_last_key(merchant_id), feed_origin_key(merchant_id), feed_open_key(merchant_id)]
        args: list[Any] = [
            mode, merchant_id, now_ms, FEED_RETENTION_MS, " ".join(allowed), new_status or "",
            rider or "", "1" if unassigned else "0", _strings(fields), fingerprint, unset or "", self.retention_ms,
            fence[0] if fence else "", _strings(unchanged) if unchanged else "", done or "",
        ]
        for oid, event, own in zip(order_ids, events, per_order):
            keys += [order_key(merchant_id, oid), events_key(merchant_id, oid)]
            args += [oid, orjson.dumps(event), _strings(own)]
        if fence:
            keys += fence[1]  # the orders' offer locks, in the orders' {m:<merchant>} slot
        return list(await self._step(keys=keys, args=args))

    async def load(self, order_id: str) -> dict[str, str] | None:
        """The raw order hash, or ``None``."""
        merchant = await self.merchant_of(order_id)
        return None if merchant is None else await self.load_of(merchant, order_id)

    async def load_of(self, merchant_id: str, order_id: str) -> dict[str, str] | None:
        """The raw order hash of ``merchant_id``'s order (known to the caller: one round trip,
        not :meth:`load`'s two), or ``None``."""
        return await self.redis.hgetall(order_key(merchant_id, order_id)) or None

    async def load_many(self, order_ids: Sequence[str]) -> list[dict[str, str] | None]:
        """The raw order hashes of ``order_ids`` (``None`` where there is none), in two round
        trips however many (never one connection per order)."""
        merchants = await get_many(self.redis, [index_key(oid) for oid in order_ids])
        pipe = self.redis.pipeline(transaction=False)
        found = [(oid, mid) for oid, mid in zip(order_ids, merchants) if mid is not None]
        for oid, mid in found:
            pipe.hgetall(order_key(mid, oid))
        hashes = dict(zip([oid for oid, _ in found], await pipe.execute())) if found else {}
        return [hashes.get(oid) or None for oid in order_ids]

    async def history(self, merchant_id: str, order_id: str, after: str | None = None, count: int | None = None) -> list[dict[str, Any]]:
        """The order's events after ``after`` (all when ``None``), oldest first."""
        start = "-" if after is None else f"({after}"
        entries = await self.redis.xrange(events_key(merchant_id, order_id), min=start, count=count)
        return [{"id": eid, **orjson.loads(f["e"])} for eid, f in entries]

    async def feed(self, merchant_id: str, after: str | None, count: int) -> list[dict[str, Any]]:
        """The merchant feed's events after ``after`` (feed ids), oldest first."""
        start = "-" if after is None else f"({after}"
        entries = await self.redis.xrange(feed_key(merchant_id), min=start, count=count)
        return [{"id": eid, "order_event_id": f["o"], **orjson.loads(f["e"])} for eid, f in entries]

    async def feed_orders_before(self, merchant_id: str, before: str, window_ms: int, most: int) -> set[str]:
        """The ids of the orders with events in the merchant feed up to ``before`` (a feed id)
        and at most ``window_ms`` older than it, from at most the ``most`` newest of them."""
        low = max(0, int(before.split("-")[0]) - window_ms)
        entries = await self.redis.xrevrange(feed_key(merchant_id), max=before, min=str(low), count=most)
        return {orjson.loads(f["e"])["order_id"] for _, f in entries}

    async def feed_ends(self, merchant_id: str) -> tuple[str | None, str | None, bool]:
        """The merchant feed's newest id (``None``: none, or forgotten), its first entry's id
        (``None``: it holds none), and whether it may have dropped entries (its first entry is not
        the first it ever held; a feed from before that was recorded counts as trimmed, one that
        never held anything has lost nothing), all read at one moment. (Read one at a time, an
        order placed in between had a brand-new feed look trimmed: its first read still empty,
        then its origin already set.)"""
        newest, first, origin = (v or None for v in await self._feed_ends(
            keys=[feed_last_key(merchant_id), feed_key(merchant_id), feed_origin_key(merchant_id)]))
        trimmed = first is not None if origin is None else origin != first
        return newest, first, trimmed

    async def update_indexes(self, order: dict[str, str]) -> None:
        """Bring the open-order index, the kitchen queue and the unfinished orders in line with
        the order's state, and let the id of an order that ended expire with its record
        (idempotent)."""
        region = dispatch_region(float(order["pickup_lat"]), float(order["pickup_lng"]))
        oid, status = order["id"], order.get("status")
        placed, start = int(order["placed_at"]), clock_start(order)
        listed = {open_orders_key(region): (status == "confirmed" and not order.get("rider_id"), placed),
                  kitchen_queue_key(region): (status == "placed", placed),
                  unfinished_orders_key(region): (status not in FINAL, start)}  # (the late list reads the first due)
        pipe = self.redis.pipeline(transaction=False)
        for key, (member, score) in listed.items():
            if member:
                pipe.zadd(key, {oid: score})
            else:
                pipe.zrem(key, oid)
        if any(member for member, _ in listed.values()):
            pipe.sadd(DISPATCH_REGIONS_KEY, region)
        if status in FINAL:  # (the record's time to live, in the same round trip)
            pipe.pttl(order_key(order["merchant_id"], oid))
        res = await pipe.execute()
        if status in FINAL:
            await self._expire_index_with_record(order, res[-1])

    async def _expire_index_with_record(self, order: dict[str, str], left_ms: int) -> None:
        """The id of an order that ended expires when its record does (``left_ms``, its PTTL),
        not later (a repair may come long after the step): an index outliving its record would,
        once the id is used again, take the new order's index with it."""
        oid, merchant = order["id"], order["merchant_id"]
        if left_ms == -1:  # ended before records expired (an earlier version): from now on
            pipe = self.redis.pipeline(transaction=False)
            pipe.pexpire(order_key(merchant, oid), self.retention_ms)
            pipe.pexpire(events_key(merchant, oid), self.retention_ms)
            await pipe.execute()
            left_ms = self.retention_ms
        if left_ms > 0:
            await self.redis.pexpire(index_key(oid), left_ms)


def store_of(rt: Runtime) -> OrderStore:
    """The process's order store (made on first use)."""
    store = rt.services.get("order_store")
    if store is None:
        store = rt.services["order_store"] = OrderStore(rt.redis, int(rt.settings.order_retention_s * 1000))
    return store
