"""The live dispatch loop: per region, snapshot from Redis, plan in a thread, commit offers.

Every ``TRACKER_DISPATCH_INTERVAL_S`` of server time each process walks the regions that have
open orders (``open:{<region>}``). For each region it first takes the region's lease, so one
process plans a region at a time; then it builds a :class:`~tracker.dispatch.model.Snapshot`
(confirmed orders not on offer, available riders near the region with no pending offer,
planned from the end of their routes, the region's demand by restaurant), runs the very same :func:`~tracker.dispatch.planner.plan` the MDRP replay runs, in a
worker thread (the kernel releases the GIL), and commits each offer with
:meth:`OfferStore.create` (all-or-nothing per bundle), unless the round lost its lease or stood
still too long meanwhile (:attr:`Dispatcher.round_limit_ms`). Correctness never rests on the lease:
an order is claimed by one offer at a time and assigned by one atomic step, whichever process
acts. A separate sweep expires unanswered offers.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import h3
import orjson
from prometheus_client import Counter, Gauge, Histogram

from tracker.agreement import process_name
from tracker.dispatch.lease import Lease
from tracker.dispatch.demand import load_demand
from tracker.dispatch.model import Offer, OrderView, Snapshot
from tracker.dispatch.offers import ACCEPTED, EXPIRED, PENDING_KEY, WITHDRAWN, OfferRecord, OfferStore, new_offer_id
from tracker.dispatch.pacing import next_round_wait_s, sweep_wait_real_s
from tracker.dispatch.planner import Policy, plan
from tracker.dispatch.refusals import note_refusal
from tracker.dispatch.snapshot import load_region
from tracker.locations.store import has_left, pause_key, record_key
from tracker.logs import log_failure
from tracker.orders import unassign_order
from tracker.orders.estimate import UnplannedSince, Waiting, publish_estimates
from tracker.orders.store import DISPATCH_REGIONS_KEY, open_order_regions, store_of
from tracker.redis_client import REDIS_DOWN
from tracker.riders.inbox import inbox_channel
from tracker.runtime import Runtime

log = logging.getLogger("tracker.dispatch")

REGION_RESCAN_ROUNDS = 30  # dispatch intervals between scans for open-order regions missing from the index
LAST_ROUND_KEY = "dispatch:last_round"  # the newest round's figures, whichever process ran it
CLOCK_OFF_WAIT_S = 0.5  # how often the offer sweep and the loop's pause look whether this host's clock agrees
LEASE_FLOOR_REAL_S = 2.0  # the shortest lease, and the longest a round may stand still whatever the interval


@dataclass
class DispatchMetrics:
    """The loop's figures on ``/metrics``."""

    rounds: Counter
    offers: Counter
    round_seconds: Histogram
    solve_seconds: Histogram
    open_orders: Gauge
    free_riders: Gauge
    expired: Counter

    @classmethod
    def create(cls, registry: Any) -> "DispatchMetrics":
        return cls(
            rounds=Counter("tracker_dispatch_rounds", "Dispatch rounds planned", registry=registry),
            offers=Counter("tracker_dispatch_offers", "Offers by what became of them (sent, lost_race, stale: "
                           "planned by a round that lost its lease or stood still too long, never made; accepted, "
                           "declined, withdrawn; expired ones are tracker_dispatch_offers_expired)", ["outcome"],
                           registry=registry),
            round_seconds=Histogram(
                "tracker_dispatch_round_seconds", "Wall time of a round (snapshot, plan, commit)", registry=registry
            ),
            solve_seconds=Histogram("tracker_dispatch_solve_seconds", "Wall time of the planner", registry=registry),
            open_orders=Gauge("tracker_dispatch_open_orders", "Orders waiting for a rider in the regions this process "
                              "planned in its last pass (0 when none); summed over processes: the fleet's",
                              registry=registry),
            free_riders=Gauge("tracker_dispatch_free_riders", "Free riders (on shift, nothing to deliver) seen in the regions this "
                              "process planned in its last pass (0 when none; a rider near two regions counts in both)", registry=registry),
            expired=Counter("tracker_dispatch_offers_expired", "Offers that expired unanswered", registry=registry),
        )


class Dispatcher:
    """The loop and the sweep of one server process."""

    def __init__(self, rt: Runtime, policy: Policy | None = None) -> None:
        self.rt = rt
        self.policy = policy or Policy.from_settings(rt.settings)
        self.owner = process_name()  # (as the roll call of processes names it: an operator matches the two)
        interval_real_ms = rt.clock.real_seconds(rt.settings.dispatch_interval_s) * 1000
        self.lease_ttl_ms = int(max(LEASE_FLOOR_REAL_S * 1000, 3 * interval_real_ms))
        # How long (server ms) a round may stand still, from reading its region to its offers and
        # between two of them, before it is dropped (a process stopped or starved, a Redis answer
        # that came late): one interval, by when the next round, planned afresh, is due (a pass that
        # overran starts the next at once); at least the lease's floor in real time, so that a round
        # that merely takes longer than a short interval (a test's 0.3 s, a replay's sped-up clock)
        # still commits. Always within the lease's TTL (three intervals).
        self.round_limit_ms = int(max(rt.settings.dispatch_interval_s * 1000,
                                      LEASE_FLOOR_REAL_S * 1000 * rt.clock.scale))
        offer_real_ms = rt.clock.real_seconds(rt.settings.offer_timeout_s) * 1000
        self.store = OfferStore(rt.redis, rt.clock, safety_ttl_ms=int(max(60_000.0, 4 * offer_real_ms)))
        self.metrics = DispatchMetrics.create(rt.registry)
        self.last_round: dict[str, Any] = {}
        self._pass_counts: dict[str, tuple[int, int]] = {}  # region -> (open orders, free riders) this pass
        self._held: dict[str, Lease] = {}  # region -> the lease this process holds for it
        self._unplanned: dict[str, UnplannedSince] = {}  # region -> its waiting orders' grace
        self._stopping = False

    async def regions(self) -> list[str]:
        """Dispatch regions that have open orders now (from the region index)."""
        return await open_order_regions(self.rt.redis)

    async def rescan_forever(self) -> None:
        """Add to the region index every region with open orders, at start and every
        :data:`REGION_RESCAN_ROUNDS` dispatch intervals (5 minutes at the default 10 s): orders
        written before the index existed, or an index lost with a Redis node (a failover), would
        otherwise not be planned again until a process restarted. A task of its own (the
        supervised ``dispatch-region-rescan``), so a large keyspace's scan never delays a round."""
        while True:
            found = [key[len("open:{"):-1] async for key in self.rt.redis.scan_iter(match="open:{*}", count=1000)]
            if found:
                await self.rt.redis.sadd(DISPATCH_REGIONS_KEY, *found)
            await self.rt.clock.sleep(REGION_RESCAN_ROUNDS * self.rt.settings.dispatch_interval_s)

    async def run_forever(self) -> None:
        """Plan every region each interval (the supervised background task): passes start an
        interval apart, however long each takes (one that overran starts the next at once)."""
        while not self._stopping:
            started = self.rt.clock.now_ms()
            for region in await self.regions():
                if self._stopping or not self.rt.clock_check.agrees:
                    break
                lease = Lease(self.rt.redis, f"lease:dispatch:{{{region}}}", self.owner, self.lease_ttl_ms)
                if not await lease.hold():
                    self._held.pop(region, None)
                    self._unplanned.pop(region, None)  # another process plans it: its memory, not ours
                    continue
                if self._stopping:  # stopped while taking it
                    await lease.release()
                    break
                self._held[region] = lease
                try:
                    await self.run_round(region)
                except REDIS_DOWN:
                    raise  # no region can be planned: the supervisor reports it and retries
                except Exception as exc:  # noqa: BLE001 - one region's fault must not stop the others
                    self.rt.supervisor.report("dispatch-loop", exc, region=region)
            if not self.rt.clock_check.agrees:  # (its offers' deadlines would not be the fleet's: another plans)
                await self.let_go()
            self._note_pass()
            await self._pause(next_round_wait_s(started, self.rt.clock.now_ms(), self.rt.settings.dispatch_interval_s))

    async def _pause(self, server_s: float) -> None:
        """Sleep ``server_s`` seconds of server time, at most an interval (a clock set back must not
        stall the loop); sooner when this host's clock stops agreeing with Redis's while this
        process holds leases: it lets go of them at once, not an interval later."""
        deadline = time.monotonic() + self.rt.clock.real_seconds(min(server_s, self.rt.settings.dispatch_interval_s))
        while (left := deadline - time.monotonic()) > 0:
            await asyncio.sleep(min(left, CLOCK_OFF_WAIT_S))
            if self._held and not self.rt.clock_check.agrees:
                return

    def _note_pass(self) -> None:
        """Set the gauges to this pass's totals over the regions this process planned (0 for none)."""
        counts, self._pass_counts = self._pass_counts, {}
        self.metrics.open_orders.set(sum(orders for orders, _ in counts.values()))
        self.metrics.free_riders.set(sum(riders for _, riders in counts.values()))

    async def release_leases(self) -> int:
        """Stop planning and give up this process's region leases (a clean shutdown), so
        another process takes the regions over at its next round instead of when the leases
        lapse; returns how many were released."""
        self._stopping = True
        return await self.let_go()

    async def let_go(self) -> int:
        """Give up this process's region leases (and its memory of the regions' waiting orders):
        another process plans them from its next round; returns how many were released."""
        held, self._held = list(self._held.values()), {}
        self._unplanned.clear()
        released = 0
        for lease in held:
            try:
                released += await lease.release()
            except Exception as exc:  # noqa: BLE001 - the lease lapses on its own
                log_failure(log, "dispatch lease not released", exc, lease=lease.key)
        return released

    async def run_round(self, region: str) -> list[OfferRecord]:
        """One round for one region: snapshot, plan, commit; returns the offers sent."""
        t0 = time.perf_counter()
        now = self.rt.clock.now_ms()
        loaded = await load_region(self.rt, self.store, region, now_ms=now, radius_m=self.rt.settings.dispatch_radius_m)
        # (free: on shift with nothing to deliver; the round plans riders still delivering too,
        # from where their route ends, and riders whose announced shift has not begun)
        free = sum(1 for r in loaded.riders if not r.route and (r.shift_start_ms or 0) <= now)
        self._pass_counts[region] = (len(loaded.orders), free)
        if not loaded.orders or not loaded.riders:
            await self._publish_estimates(region, loaded.waiting, {}, now)  # no rider to plan them on
            await self._note_round(region, loaded.orders, loaded.riders, [], 0.0, time.perf_counter() - t0, now)
            return []
        lat, lng = h3.cell_to_latlng(region)
        snapshot = Snapshot(now_ms=now, origin_lat=lat, origin_lng=lng, orders=loaded.orders + loaded.held,
                            riders=loaded.riders, demand=await load_demand(self.rt.redis, region))
        t1 = time.perf_counter()
        decided = await asyncio.to_thread(plan, snapshot, self.policy)
        solve_s = time.perf_counter() - t1
        self.metrics.solve_seconds.observe(solve_s)
        previous = await self._may_commit(region, now, len(decided.offers))  # (when the round was last seen live)
        if previous is None:
            return []
        sent = []
        orders_by_id = {o.id: o for o in loaded.orders}
        for n, offer in enumerate(decided.offers):
            made = self.rt.clock.now_ms()  # each offer's time to answer counts from its own making
            if self._stood_still(region, made - previous, "between two of its offers", len(decided.offers) - n):
                break
            previous = made
            record = self._record(offer, [orders_by_id[oid] for oid in offer.new_order_ids], made)
            if await self.store.create(record):
                if await self._gone_meanwhile(record.rider_id):
                    # Paused, off duty, or gone (its app closed, its token revoked), while this round
                    # ran: the pause's, availability's or leaving's own withdrawal may have looked before this offer
                    # existed, so it is settled here, unsent (not left to expire with its orders).
                    await self.withdraw(record, tell=False)
                    continue
                if self._stood_still(region, self.rt.clock.now_ms() - made, "while it made an offer",
                                     len(decided.offers) - n):
                    await self.withdraw(record, tell=False)  # (its time to answer partly gone, unsent)
                    break
                if not await self.store.mark_sent(record, inbox_channel(record.rider_id),
                                                  orjson.dumps(record.frame()).decode()):
                    continue  # settled meanwhile (withdrawn: an order cancelled, the rider paused): not sent
                self.metrics.offers.labels("sent").inc()
                sent.append(record)
            else:
                self.metrics.offers.labels("lost_race").inc()
        await self._publish_estimates(region, loaded.waiting, decided.estimates, now)
        await self._note_round(region, loaded.orders, loaded.riders, sent, solve_s, time.perf_counter() - t0, now)
        return sent

    async def _may_commit(self, region: str, started_ms: int, planned: int) -> int | None:
        """The server time now if the round that read ``region`` at ``started_ms`` may make its
        ``planned`` offers: it still holds the region's lease (renewed now: it lapses if the round
        took longer than the lease, and another process may have planned the region since) and
        read the region at most :attr:`round_limit_ms` ago, and this host's clock still agrees
        with Redis's (a jump during the round). Else ``None``: the round is dropped, nothing sent."""
        lease = self._held.get(region)
        if lease is not None and not await lease.renew():
            self._drop(region, "its lease lapsed or was taken over meanwhile", planned)
            return None
        checked = self.rt.clock.now_ms()
        if not self.rt.clock_check.agrees:  # (after the time is read: a jump before it shows here)
            self._drop(region, "this host's clock stopped agreeing with Redis's during the round (its offers' "
                               "deadlines would not be the fleet's)", planned)
            return None
        return None if self._stood_still(region, checked - started_ms, "before its offers", planned) else checked

    def _stood_still(self, region: str, gap_ms: int, where: str, dropped: int) -> bool:
        """Whether ``gap_ms`` (server ms) with nothing done is more than a round may stand still;
        if so, the round's ``dropped`` offers left are dropped (logged, counted)."""
        if gap_ms <= self.round_limit_ms:
            return False
        self._drop(region, f"it stood still {gap_ms / 1000:.1f} s {where} (at most {self.round_limit_ms / 1000:g} s "
                           "of server time)", dropped)
        return True

    def _drop(self, region: str, why: str, dropped: int) -> None:
        """Count and log the offers a stale round does not make (its orders go to the next round)."""
        self.metrics.offers.labels("stale").inc(dropped)
        log.warning("dispatch round of region %s dropped, %d offers unsent: %s; the next round plans afresh",
                    region, dropped, why)

    async def _gone_meanwhile(self, rider_id: str) -> bool:
        """Whether the rider was paused, went off duty, or left (its app closed, its token
        revoked), since the round read it."""
        pipe = self.rt.redis.pipeline(transaction=False)
        pipe.exists(pause_key(rider_id))
        pipe.hmget(record_key(rider_id), "ts", "left_at", "available")
        paused, (ts, left_at, available) = await pipe.execute()
        return bool(paused) or available == "0" or (ts is not None and has_left(ts, left_at))

    async def _publish_estimates(self, region: str, waiting: Sequence[Waiting], planned: Mapping[str, int],
                                 now: int) -> None:
        """Tell the waiting orders' customers the round's estimates, after the grace for those left out."""
        grace = self._unplanned.get(region)
        if grace is None:
            grace = self._unplanned[region] = UnplannedSince(int(self.rt.settings.estimate_grace_s * 1000))
        await publish_estimates(self.rt.redis, waiting, grace.hold(waiting, planned, now), now)

    async def _note_round(self, region: str, orders: list, riders: list, sent: list[OfferRecord],
                          solve_s: float, total_s: float, now: int) -> None:
        """Count the round (if it planned anything) and publish its figures as the fleet's
        newest round (the ops page's)."""
        if orders and riders:
            self.metrics.rounds.inc()
            self.metrics.round_seconds.observe(total_s)
        self.last_round = {
            "region": region, "orders": len(orders), "riders": len(riders),
            "offers": len(sent), "bundles": sum(1 for r in sent if len(r.order_ids) > 1),
            "add_ons": sum(1 for r in sent if r.joins),
            "solve_ms": round(solve_s * 1000, 2), "total_ms": round(total_s * 1000, 2),
            "started": now, "ts": self.rt.clock.now_ms(),  # (at a scaled clock a long round is minutes)
            "process": self.owner,
        }
        await self.rt.redis.set(LAST_ROUND_KEY, orjson.dumps(self.last_round))
        log.debug("dispatch round", extra={"round": self.last_round})

    def _record(self, offer: Offer, orders: list[OrderView], now_ms: int) -> OfferRecord:
        """The offer made at ``now_ms``: its rider has ``TRACKER_OFFER_TIMEOUT_S`` from then."""
        timeout_ms = int(self.rt.settings.offer_timeout_s * 1000)
        drop_eta = dict(zip(offer.order_ids, offer.drop_eta_ms))
        return OfferRecord(
            offer_id=new_offer_id(),
            rider_id=offer.rider_id,
            joins=offer.joins,
            sequence=offer.order_ids if offer.joins else (),
            merchant_id=orders[0].merchant_id,
            order_ids=tuple(o.id for o in orders),
            expires_at=now_ms + timeout_ms,
            orders=tuple(
                {
                    "order_id": o.id, "merchant_id": o.merchant_id,
                    "pickup": {"lat": o.pickup_lat, "lng": o.pickup_lng},
                    "dropoff": {"lat": o.drop_lat, "lng": o.drop_lng},
                    # what the plan expects: the kitchen's ready time (if still ahead), the
                    # rider's pickup and this order's drop-off
                    "ready_at": o.ready_at_ms if o.ready_at_ms > now_ms else None,
                    "pickup_eta": offer.pickup_eta_ms, "eta": drop_eta.get(o.id),
                }
                for o in orders
            ),
        )

    async def sweep_forever(self) -> None:
        """Expire unanswered offers (the supervised background task), waking when the earliest
        pending entry falls due (at least every second of server time)."""
        while True:
            if not self.rt.clock_check.agrees:  # this host's clock is off Redis's: its "due" is not the fleet's
                await asyncio.sleep(CLOCK_OFF_WAIT_S)
                continue
            await self.expire_due()
            earliest = await self.rt.redis.zrange(PENDING_KEY, 0, 0, withscores=True)
            await asyncio.sleep(sweep_wait_real_s(self.rt.clock.now_ms(), earliest[0][1] if earliest else None,
                                                  self.rt.clock.scale))

    async def expire_due(self) -> int:
        """Expire every offer past its ``expires_at``; returns how many this process expired.

        Offers whose answer stopped half-way (claimed, never settled) are settled too, and offers
        never sent to their rider (not ``sent``: their dispatcher was killed between making and
        publishing them) are withdrawn instead, without the refusal and cooldown of an expiry.
        """
        count = 0
        due = await self.store.due(self.rt.clock.now_ms())
        for offer_id in due.stalled:
            await self.settle_stalled(offer_id)
        for offer_id in due.expired:
            record = await self.store.load(offer_id)
            if record is None:
                await self.store.forget(offer_id)
                continue
            if not await self.store.claim(record):
                continue
            if not record.sent:  # never reached its rider: its dispatcher stopped between making and sending it
                await self.settle(record, WITHDRAWN)  # (no cooldown, no refusal: the orders go to the next round)
                await self._tell_rider(record, "offer_withdrawn")  # (an offer_id the rider does not know: ignored)
                log.warning("offer %s expired unsent (its dispatcher stopped before sending it); settled as %s",
                            offer_id, WITHDRAWN)
                continue
            await self.cool_down(record.merchant_id, record.order_ids, record.rider_id)  # before they are open again
            await self.store.release(record, EXPIRED)
            await self._tell_rider(record, "offer_expired")
            self.metrics.expired.inc()
            try:
                await note_refusal(self.rt, record.rider_id, record.offer_id)
            except REDIS_DOWN as exc:  # (a figure for the operator: the offer itself is settled)
                log_failure(log, "offer expiry not counted for its rider", exc, rider=record.rider_id)
            count += 1
        return count

    async def settle_stalled(self, offer_id: str) -> None:
        """Settle an offer claimed by an answer that never finished (its process was killed
        between claiming the offer and settling it): ``accepted`` if its orders were assigned
        to its rider by then (the rider is sent the ``assigned`` frame its accept never got),
        else ``withdrawn`` (the rider is told; the orders go to the next round). Without this its orders stayed locked until the keys' safety TTL. A claimer still
        alive but slower than the lease then finds its locks gone: its assignment is refused
        (fenced), so the orders never go both ways."""
        if not await self.store.reclaim(offer_id):
            return  # another process took it
        record = await self.store.load(offer_id)
        if record is None:  # settled after all (the claimer's last write is the one that was lost)
            await self.store.forget_claim(offer_id)
            return
        orders = await store_of(self.rt).load_many(list(record.order_ids))
        # All or none were assigned (one step); one of them may have been cancelled since.
        assigned = any(o is not None and o.get("offer_id") == offer_id and o.get("rider_id") == record.rider_id
                       for o in orders)
        outcome = ACCEPTED if assigned else WITHDRAWN
        await self.settle(record, outcome)
        log.warning("offer %s was claimed but never settled (its process stopped); settled as %s",
                    offer_id, outcome)
        if assigned:  # the answer its accept never got (its other sockets learn it here too)
            await self._publish(record.rider_id, record.frame("assigned"))
        else:
            await self._tell_rider(record, "offer_withdrawn")

    async def take_back(self, merchant_id: str, order_id: str, rider_id: str, *, by: str, reason: str | None) -> None:
        """Take the order back from its rider before pickup (a release, or the operator's unassign).

        The rider is kept away from the order first: a round between the order reopening and
        the cooldown would offer it straight back to that rider (as a rule the closest).
        """
        await self.cool_down(merchant_id, (order_id,), rider_id)
        await unassign_order(self.rt, order_id, merchant_id=merchant_id, rider_id=rider_id, by=by, reason=reason)

    async def on_order_step(self, order: dict[str, Any], kind: str, former_rider: str | None = None) -> None:
        """Withdraw the offers an order's step made void (an order step listener; ``former_rider``:
        the rider a step that ends its hold took the order from).

        A cancelled order's offer, an offer of an order the operator assigned by hand, and an
        add-on that would join an order that was cancelled or taken back from its rider: the
        rider gets ``offer_withdrawn`` at once instead of a ``conflict`` when it accepts, and the
        offer's other orders go back to the next round.
        """
        if kind not in ("cancelled", "rider_unassigned", "assigned"):
            return
        void = []
        if kind in ("cancelled", "assigned"):
            holder = await self.store.holding(order["merchant_id"], order["id"])
            if holder is not None and holder.offer_id != order.get("offer_id"):  # not the offer accepted
                void.append(holder)
        if kind != "assigned" and (former_rider or order.get("last_rider_id")):
            # (read again after the step, the order may already name a new rider: the step's own word first)
            addon = await self.store.pending_for(former_rider or order["last_rider_id"])
            if addon is not None and order["id"] in addon.joins:
                void.append(addon)
        for record in void:
            await self.withdraw(record)

    async def withdraw_offer_of(self, rider_id: str) -> None:
        """Withdraw the rider's open offer, if it has one (its orders go back to the next round):
        a rider whose tokens were revoked, or whom the operator paused, is not left holding
        orders it can no longer take."""
        await self.withdraw(await self.store.pending_for(rider_id))

    async def withdraw(self, record: OfferRecord | None, *, tell: bool = True, claimed: bool = False) -> None:
        """Settle ``record`` as withdrawn (when nobody settled it first; ``claimed``: the caller
        claimed it already) and tell its rider (if ``tell``: an offer never sent is settled silently)."""
        if record is not None and (claimed or await self.store.claim(record)):
            await self.settle(record, WITHDRAWN)
            if tell:
                await self._tell_rider(record, "offer_withdrawn")

    async def settle(self, record: OfferRecord, outcome: str) -> None:
        """Release a claimed offer as ``outcome`` (``accepted``, ``declined``, ``withdrawn``) and count it."""
        await self.store.release(record, outcome)
        self.metrics.offers.labels(outcome).inc()

    async def _tell_rider(self, record: OfferRecord, frame_type: str) -> None:
        """Tell the offer's rider what became of it (``offer_expired``, ``offer_withdrawn``)."""
        await self._publish(record.rider_id, {"type": frame_type, "offer_id": record.offer_id})

    async def _publish(self, rider_id: str, frame: dict[str, Any]) -> None:
        """Send ``frame`` to the rider's inbox (its sockets, on whichever process)."""
        await self.rt.pubsub.publish(inbox_channel(rider_id), orjson.dumps(frame).decode())

    async def cool_down(self, merchant_id: str, order_ids: tuple[str, ...], rider_id: str) -> None:
        """Keep a rider who declined, let expire or gave back these orders away from them for a while."""
        length = int(self.rt.settings.decline_cooldown_s * 1000)  # server ms
        real = int(self.rt.clock.real_seconds(length))  # the key's real lifetime: shorter on a sped-up clock
        await self.store.cool_down(merchant_id, order_ids, rider_id, self.rt.clock.now_ms() + length, real)

