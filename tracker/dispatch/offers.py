"""Offers in Redis: claiming orders for one rider at a time, expiry, decline cooldowns.

Keys (the braces are Redis Cluster hash tags):

- ``offerlock:{m:<merchant>}:<order>`` -> offer id. An order is on offer to at most one
  rider: a bundle's locks (one merchant, so one slot) are taken all-or-nothing by a Lua
  script, and only the offer holding them may turn into an assignment.
- ``offer:{<offer id>}`` -> the offer record (JSON): rider, merchant, orders, expiry, and
  ``sent`` once the offer frame was published to the rider (or shown to it on reconnecting): an
  offer that expires never sent was never the rider's to answer (:meth:`OfferStore.mark_sent`).
- ``offer:{<offer id>}:settled`` -> ``"<rider> <outcome>"`` once the offer is settled
  (accepted, declined, expired, withdrawn), kept as long as a record's safety TTL, so a late
  answer is told what became of the offer (``conflict``) rather than that it never existed.
- ``rideroffer:{<rider>}`` -> the offer a rider is considering (one at a time).
- ``offers:pending`` ZSET offer id -> ``expires_at``: the expiry sweep's work list. Claiming
  an offer (to settle it) moves its entry to ``claimed:<offer id>`` -> the claim's deadline in
  the same key, atomically; settling removes it. An entry still there after its deadline is an
  answer whose process died between claim and settlement: the sweep settles it
  (:meth:`OfferStore.reclaim`), so its orders are not held until the safety TTL. An offer being
  created is claimed from its first write until its last, so a creation cut short is settled
  (``withdrawn``) the same way.
- ``cooldown:{m:<merchant>}:<order>`` ZSET rider -> until (server ms): riders who declined
  or let the order's offer expire, or gave the order back, are kept away from it for a while.

Expiry times are server time (``expires_at``); Redis key TTLs are only a safety net against
leaks and are set in real time with a margin (a replay clock may run faster).
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass, replace

import orjson

from tracker.clock import Clock
from tracker.dispatch.lease import COMPARE_AND_DELETE
from tracker.orders.store import order_key
from tracker.redis_client import AnyRedis

PENDING_KEY = "offers:pending"
CLAIMED = "claimed:"  # prefix of a claimed offer's entry in PENDING_KEY
CLAIM_LEASE_S = 15.0  # real seconds a claimed offer may take to be settled before the sweep does it

# How an offer ends; a later answer to it is told which (``conflict``).
ACCEPTED, DECLINED, EXPIRED, WITHDRAWN = "accepted", "declined", "expired", "withdrawn"

# KEYS: the n orders' locks, the n orders' hashes, then the hashes of the m orders an add-on
# joins (one merchant: one hash slot). ARGV: offer id, ttl ms, n, rider, m. All or nothing: 0 if
# an order is locked or no longer open (cancelled or assigned since the round's snapshot), or a
# joined order is no longer this rider's to collect (cancelled, given back, picked up).
_CLAIM = """
local n, m = tonumber(ARGV[3]), tonumber(ARGV[5])
for i = 1, n do
  if redis.call('EXISTS', KEYS[i]) == 1 then return 0 end
  local o = redis.call('HMGET', KEYS[n + i], 'status', 'rider_id')
  if o[1] ~= 'confirmed' or (o[2] and o[2] ~= '') then return 0 end
end
for j = 1, m do
  local o = redis.call('HMGET', KEYS[2 * n + j], 'status', 'rider_id')
  if o[2] ~= ARGV[4] or (o[1] ~= 'assigned' and o[1] ~= 'at_pickup') then return 0 end
end
for i = 1, n do
  redis.call('SET', KEYS[i], ARGV[1], 'PX', ARGV[2])
end
return 1
"""

# KEYS: the offer's record. ARGV: the record as made, the same marked sent, then the rider's inbox
# channel and the offer frame (or two empty strings: the mark alone). While the offer is open (its
# record there: not settled), marks it sent (unless it is already) and publishes the frame, in one
# step: the frame goes out only with the mark, and a process killed before this step leaves an
# offer unmarked that its rider never got. 0 (nothing done) when the offer is settled.
_SEND = """
local raw = redis.call('GET', KEYS[1])
if not raw then return 0 end
if raw == ARGV[1] then redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL') end
if ARGV[3] ~= '' then redis.call('PUBLISH', ARGV[3], ARGV[4]) end
return 1
"""

# KEYS: offers:pending. ARGV: offer id, claim deadline, the claimed entry. Exactly one caller
# moves a pending entry to its claimed form (one key: atomic on a cluster too); 0 for the rest.
# Creating an offer runs it the other way (claimed entry -> pending entry, scored expires_at).
_TAKE = """
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
return 1
"""

# KEYS: offers:pending. ARGV: a claimed entry, the server's time, a new deadline. Exactly one caller
# finds the claim's deadline passed and moves it on; the entry stays until the offer is settled,
# so a takeover that fails half-way is taken over again.
_TAKE_OVER = """
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not s or tonumber(s) > tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], 'XX', ARGV[3], ARGV[1])
return 1
"""

# KEYS: order locks. ARGV: offer id. Deletes the locks this offer still holds; returns how many.
_RELEASE = """
local n = 0
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[1] then
    redis.call('DEL', KEYS[i])
    n = n + 1
  end
end
return n
"""

# KEYS: the offer's settled note, its record (one slot). ARGV: "<rider> <outcome>", the note's TTL
# in ms. The record becomes the note in one step (a script: a MULTI cannot follow a migrating slot).
_SETTLE = """
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('DEL', KEYS[2])
return 0
"""


def lock_key(merchant_id: str, order_id: str) -> str:
    """The key that says which offer holds ``order_id``."""
    return f"offerlock:{{m:{merchant_id}}}:{order_id}"


def cooldown_key(merchant_id: str, order_id: str) -> str:
    """Riders kept away from ``order_id`` until a server time."""
    return f"cooldown:{{m:{merchant_id}}}:{order_id}"


def rider_offer_key(rider_id: str) -> str:
    """The offer ``rider_id`` is considering now, if any."""
    return f"rideroffer:{{{rider_id}}}"


def offer_key(offer_id: str) -> str:
    """The record of one offer."""
    return f"offer:{{{offer_id}}}"


def settled_key(offer_id: str) -> str:
    """What became of a settled offer (same slot as its record)."""
    return f"offer:{{{offer_id}}}:settled"


def new_offer_id() -> str:
    """A fresh, unguessable offer id."""
    return "of-" + secrets.token_hex(8)


@dataclass(frozen=True)
class OfferRecord:
    """An offer as stored: which rider, which orders (delivery sequence), until when.

    An add-on offer also names the orders it ``joins`` (already the rider's, same restaurant,
    not yet collected) and the whole new delivery ``sequence``; only ``order_ids`` are locked.
    """

    offer_id: str
    rider_id: str
    merchant_id: str
    order_ids: tuple[str, ...]
    expires_at: int
    orders: tuple[dict, ...]  # the wire form of each order, as sent in the offer frame
    joins: tuple[str, ...] = ()
    sequence: tuple[str, ...] = ()  # the delivery sequence of an add-on, held orders included
    sent: bool = False  # published to the rider (or shown to it on reconnecting): see OfferStore.mark_sent

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "offer_id": self.offer_id, "rider_id": self.rider_id, "merchant_id": self.merchant_id,
                "order_ids": list(self.order_ids), "expires_at": self.expires_at, "orders": list(self.orders),
                "joins": list(self.joins), "sequence": list(self.sequence), "sent": self.sent,
            }
        )

    @classmethod
    def from_json(cls, raw: str | bytes) -> "OfferRecord":
        d = orjson.loads(raw)
        return cls(
            offer_id=d["offer_id"], rider_id=d["rider_id"], merchant_id=d["merchant_id"],
            order_ids=tuple(d["order_ids"]), expires_at=int(d["expires_at"]), orders=tuple(d["orders"]),
            joins=tuple(d.get("joins", ())), sequence=tuple(d.get("sequence", ())), sent=bool(d.get("sent")),
        )

    def frame(self, kind: str = "offer") -> dict:
        """The ``offer`` frame sent to the rider (``assigned`` once accepted)."""
        out = {"type": kind, "offer_id": self.offer_id, "orders": list(self.orders)}
        if kind == "offer":
            out["expires_at"] = self.expires_at
        if self.joins:
            out["joins"], out["sequence"] = list(self.joins), list(self.sequence)
        return out

    @property
    def lock_keys(self) -> list[str]:
        return [lock_key(self.merchant_id, oid) for oid in self.order_ids]


@dataclass(frozen=True)
class DueOffers:
    """What the expiry sweep has to settle: offers past ``expires_at``, and claimed offers whose
    settlement is overdue (the process that claimed them stopped in between)."""

    expired: list[str]
    stalled: list[str]


class OfferStore:
    """The Redis adapter for offers; ``safety_ttl_ms`` bounds every key's real lifetime.

    Times in ``offers:pending`` are server time (``clock``), like ``expires_at``.
    """

    def __init__(self, redis: AnyRedis, clock: Clock, *, safety_ttl_ms: int) -> None:
        self.redis = redis
        self.clock = clock
        self.safety_ttl_ms = int(safety_ttl_ms)
        self._claim = redis.register_script(_CLAIM)
        self._take = redis.register_script(_TAKE)
        self._take_over = redis.register_script(_TAKE_OVER)
        self._release = redis.register_script(_RELEASE)
        self._compare_and_delete = redis.register_script(COMPARE_AND_DELETE)
        self._settle = redis.register_script(_SETTLE)
        self._send = redis.register_script(_SEND)

    async def create(self, offer: OfferRecord) -> bool:
        """Claim the offer's orders and the rider; False (nothing left held) if either is taken, or
        an order changed since the round read it (``_CLAIM``), or the sweep settled it meanwhile.

        Its keys span slots (rider, restaurant, offer), so this is several steps. The record and a
        claimed entry in ``offers:pending`` come first: a process stopped before the last step
        leaves a claim the sweep settles as ``withdrawn`` after ``CLAIM_LEASE_S`` (freeing the rider
        and the orders), as for a stalled answer, not keys held until the safety TTL. The last step
        turns the claim into the pending entry only if it is still there (one key: atomic)."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.set(offer_key(offer.offer_id), offer.to_json(), px=self.safety_ttl_ms)
        pipe.zadd(PENDING_KEY, {CLAIMED + offer.offer_id: self._deadline()})
        await pipe.execute()
        rider_key = rider_offer_key(offer.rider_id)
        hashes = [order_key(offer.merchant_id, oid) for oid in (*offer.order_ids, *offer.joins)]
        if (await self.redis.set(rider_key, offer.offer_id, nx=True, px=self.safety_ttl_ms)
                and await self._claim(keys=offer.lock_keys + hashes,
                                      args=[offer.offer_id, self.safety_ttl_ms, len(offer.order_ids),
                                            offer.rider_id, len(offer.joins)])
                and await self._take(keys=[PENDING_KEY],
                                     args=[CLAIMED + offer.offer_id, offer.expires_at, offer.offer_id])):
            return True
        await self._release(keys=offer.lock_keys, args=[offer.offer_id])
        await self._compare_and_delete(keys=[rider_key], args=[offer.offer_id])
        await self.redis.delete(offer_key(offer.offer_id))
        await self.forget_claim(offer.offer_id)
        return False

    async def mark_sent(self, offer: OfferRecord, channel: str = "", message: str = "") -> bool:
        """Mark the offer sent to its rider and, given a ``channel``, publish ``message`` there, in
        one step; False (nothing done) when the offer is settled already. Its expiry counts as the
        rider's refusal only if it was sent (``sent``): one whose dispatcher died before sending it
        is withdrawn instead. Answers never wait for the mark (an accept may race it)."""
        made = replace(offer, sent=False).to_json()
        return bool(await self._send(keys=[offer_key(offer.offer_id)],
                                     args=[made, replace(offer, sent=True).to_json(), channel, message]))

    async def load(self, offer_id: str) -> OfferRecord | None:
        """The offer record, or ``None`` when unknown or already settled."""
        raw = await self.redis.get(offer_key(offer_id))
        return None if raw is None else OfferRecord.from_json(raw)

    async def holding(self, merchant_id: str, order_id: str) -> OfferRecord | None:
        """The pending offer that holds ``order_id``, if any."""
        return await self._named_by(lock_key(merchant_id, order_id))

    async def pending_for(self, rider_id: str) -> OfferRecord | None:
        """The offer ``rider_id`` is considering, if any."""
        return await self._named_by(rider_offer_key(rider_id))

    async def is_claimed(self, offer_id: str) -> bool:
        """Whether the offer is being answered or settled (claimed, not yet released): no longer
        open to its rider, even while its record and ``rideroffer`` key still stand."""
        return await self.redis.zscore(PENDING_KEY, CLAIMED + offer_id) is not None

    async def _named_by(self, key: str) -> OfferRecord | None:
        """The offer whose id ``key`` holds (a lock or a rider's claim), if both still exist."""
        offer_id = await self.redis.get(key)
        return None if offer_id is None else await self.load(offer_id)

    async def claim(self, offer: OfferRecord) -> bool:
        """Take the right to settle the offer (accept, decline, expire, withdraw).

        Exactly one caller gets True; the orders stay locked until :meth:`release`, so
        nobody can offer them elsewhere while the winner acts. Should the winner's process
        stop before it releases, the sweep settles the offer after ``CLAIM_LEASE_S``.
        """
        return bool(await self._take(keys=[PENDING_KEY], args=[offer.offer_id, self._deadline(), CLAIMED + offer.offer_id]))

    async def reclaim(self, offer_id: str) -> bool:
        """Take over a claim whose settlement is overdue; exactly one caller gets True. Its entry
        stays (with a new deadline) until :meth:`release` or :meth:`forget_claim`."""
        return bool(await self._take_over(keys=[PENDING_KEY],
                                          args=[CLAIMED + offer_id, self.clock.now_ms(), self._deadline()]))

    async def forget_claim(self, offer_id: str) -> None:
        """Drop the claimed entry of an offer settled already."""
        await self.redis.zrem(PENDING_KEY, CLAIMED + offer_id)

    def _deadline(self) -> int:
        """When a claim made now is overdue (server time)."""
        return self.clock.now_ms() + int(CLAIM_LEASE_S * 1000 * self.clock.scale)

    async def release(self, offer: OfferRecord, outcome: str) -> None:
        """Free the orders and the rider held by a claimed offer; its record becomes ``outcome``."""
        await self._release(keys=offer.lock_keys, args=[offer.offer_id])
        await self._compare_and_delete(keys=[rider_offer_key(offer.rider_id)], args=[offer.offer_id])
        # One step: never a moment with neither key.
        await self._settle(keys=[settled_key(offer.offer_id), offer_key(offer.offer_id)],
                           args=[f"{offer.rider_id} {outcome}", self.safety_ttl_ms])
        await self.forget_claim(offer.offer_id)  # (another slot than the above)

    async def settled(self, offer_id: str) -> tuple[str, str] | None:
        """``(rider, outcome)`` of an offer settled lately, or ``None`` (never made, or long ago)."""
        raw = await self.redis.get(settled_key(offer_id))
        if not raw:
            return None
        rider, _, outcome = raw.partition(" ")
        return rider, outcome

    async def due(self, now_ms: int, limit: int = 500) -> DueOffers:
        """Offers whose ``expires_at`` has passed, and claimed offers overdue for settlement."""
        entries = await self.redis.zrangebyscore(PENDING_KEY, "-inf", now_ms, start=0, num=limit)
        return DueOffers(expired=[e for e in entries if not e.startswith(CLAIMED)],
                         stalled=[e[len(CLAIMED):] for e in entries if e.startswith(CLAIMED)])

    async def forget(self, offer_id: str) -> None:
        """Drop a pending entry whose record is gone (its safety TTL ran out)."""
        await self.redis.zrem(PENDING_KEY, offer_id)

    async def cool_down(self, merchant_id: str, order_ids: tuple[str, ...], rider_id: str, until_ms: int,
                        length_ms: int) -> None:
        """Keep ``rider_id`` away from these orders (of one merchant) until ``until_ms`` (server time).

        ``length_ms`` is how long that is in real time: the key outlives it (and the offer safety net).
        """
        pipe = self.redis.pipeline(transaction=False)
        for oid in order_ids:
            key = cooldown_key(merchant_id, oid)
            pipe.zadd(key, {rider_id: until_ms})
            pipe.pexpire(key, max(self.safety_ttl_ms * 4, length_ms + 60_000))
        await pipe.execute()

    async def blocked_riders(self, orders: list[tuple[str, str]], now_ms: int) -> dict[str, set[str]]:
        """For (merchant, order) pairs: riders still cooling down, by order id."""
        pipe = self.redis.pipeline(transaction=False)
        for mid, oid in orders:
            pipe.zrangebyscore(cooldown_key(mid, oid), now_ms, "+inf")
        results = await pipe.execute()
        return {oid: set(riders) for (_, oid), riders in zip(orders, results) if riders}

    async def locked(self, orders: list[tuple[str, str]]) -> set[str]:
        """The order ids (of (merchant, order) pairs) currently on offer."""
        pipe = self.redis.pipeline(transaction=False)
        for mid, oid in orders:
            pipe.exists(lock_key(mid, oid))
        results = await pipe.execute()
        return {oid for (_, oid), hit in zip(orders, results) if hit}

    async def riders_with_offers(self, rider_ids: list[str]) -> set[str]:
        """The riders among ``rider_ids`` already considering an offer."""
        pipe = self.redis.pipeline(transaction=False)
        for rid in rider_ids:
            pipe.exists(rider_offer_key(rid))
        results = await pipe.execute()
        return {rid for rid, hit in zip(rider_ids, results) if hit}
