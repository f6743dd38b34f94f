"""The dispatch planner: a snapshot in, offers out. Pure: no I/O, no clock.

One round (docs/DISPATCH.md explains and measures the policy):

1. Open orders (no rider yet) are bundled per restaurant by the kernel's greedy insertion,
   with a target bundle size from the ratio of open orders ready within 20 minutes to riders
   free within 10 (as in Reyes et al. 2018): with riders to spare every order rides alone;
   when riders are scarce, orders of one restaurant that can be collected close together
   travel together. "Collected" is the later of the food's ready time and the earliest time
   any rider can reach the restaurant, so orders that will wait for the same late rider
   bundle even if they were ready apart.
2. Every (rider, bundle) pair gets its cost: the sum of the bundle's drop-off times if this
   rider served it (pickup at the later of the rider's arrival and the food's ready time,
   drop-offs in the best sequence), plus the rider's minutes spent waiting at the restaurant at
   a small weight, minus a reward per order served (so when riders are short, the fullest
   bundles and the orders that can be delivered soonest go first; an optional weight on the
   order's age favours old orders instead, which replay shows to cost click-to-door). Pairs
   the rider cannot serve (shift over, too far) are forbidden. A rider cooling down from some
   of a bundle's orders (declined, or let the offer expire) is costed, in that bundle's column,
   for the bundle without them: it may take the restaurant's other orders, never those.
   Each rider's jobs also carry a coverage penalty (``coverage.py``): taking a rider away
   from where orders come from costs a little, so among near-equal choices the rider in a
   quiet area goes.
3. Riders on their way to a restaurant whose bundle is not collected yet get an extra row:
   the cost of adding an open bundle of the same restaurant, ready by the planned pickup,
   to theirs (``addons.py``; the two-stage commitment of Reyes et al.).
4. The kernel's optimal linear assignment picks the pairs; a chosen add-on is offered at once.
5. Commitment: a chosen pair becomes an offer only when it must be acted on before the next
   round, that is when the rider is free by then and would have to leave by then to reach the
   restaurant by the food's ready time. Everything else waits for a round with more knowledge
   (new orders to bundle, riders becoming free), so a short interval makes the plan more
   precise, not more jittery: nothing is revised once offered, only grown by add-ons.
   Riders who announced a shift not yet begun are planned for from its start (so nobody
   else is sent across town for food they will be near) but offered nothing before it.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

import dispatch_ext as kernel
from tracker.dispatch.addons import addon_rows
from tracker.dispatch.coverage import coverage_penalty
from tracker.dispatch.model import MS_PER_MIN, Offer, OrderView, Plan, RiderView, Snapshot
from tracker.geo import LocalProjection


@dataclass(frozen=True)
class Policy:
    """Every knob of the planner. Times in minutes, distances in metres."""

    meters_per_minute: float = 320.0
    pickup_service_min: float = 4.0
    dropoff_service_min: float = 4.0
    interval_min: float = 1.0  # time until the next round: the commitment horizon
    max_bundle: int = 3
    max_ready_spread_min: float = 6.0
    max_extra_min: float = 12.0
    max_travel_min: float = math.inf
    wait_weight: float = 0.0  # per minute a rider waits at the restaurant
    serve_reward_min: float = 60.0
    age_weight: float = 0.0  # reward per minute an order has waited since it was placed
    commit_slack_min: float = 0.0  # commit this much earlier than strictly needed
    max_busy_min: float = math.inf  # riders busy for longer than this are left out of the round
    bundle_ratio_horizon_min: float = 10.0  # riders free within this count as "free soon"
    ratio_ready_horizon_min: float = 20.0  # orders ready within this count toward the bundle-size ratio
    bundle_on_reach: bool = True  # bundle on when food can be collected, not when it is ready
    add_ons: bool = True  # grow uncollected bundles of riders on their way
    coverage_weight: float = 2.0  # minutes per unit of relative demand density at the rider
    coverage_tau_min: float = 30.0  # how fast demand's pull fades with travel minutes

    @classmethod
    def from_settings(cls, settings: Any) -> "Policy":
        """The live server's policy: speeds and service times from its settings."""
        mpm = settings.rider_speed_mps * 60.0
        return cls(
            meters_per_minute=mpm,
            pickup_service_min=settings.pickup_service_s / 60.0,
            dropoff_service_min=settings.dropoff_service_s / 60.0,
            interval_min=settings.dispatch_interval_s / 60.0,
            max_travel_min=settings.dispatch_radius_m / mpm,
        )


def _minutes(ms: float, now_ms: int) -> float:
    return (ms - now_ms) / MS_PER_MIN


def plan(snapshot: Snapshot, policy: Policy) -> Plan:
    """Decide this round's offers for ``snapshot`` under ``policy``."""
    now = snapshot.now_ms
    open_orders = [o for o in snapshot.orders if o.rider_id is None and not o.picked_up]
    riders = [
        r for r in snapshot.riders
        if r.available and (r.shift_end_ms is None or r.shift_end_ms > now)
        and _minutes(r.busy_until_ms, now) <= policy.max_busy_min
    ]
    stats: dict[str, Any] = {"orders": len(open_orders), "riders": len(riders), "bundles": 0, "offers": 0}
    if not open_orders or not riders:
        return Plan(stats=stats)
    proj = LocalProjection(snapshot.origin_lat, snapshot.origin_lng)
    fleet = _Fleet.of(riders, proj, now)
    bundles, sites = _bundles(open_orders, fleet, proj, now, policy)
    stats["bundles"] = len(bundles)
    cost, without = _costs(bundles, fleet, sites, proj, now, policy)
    cost += coverage_penalty(fleet.x, fleet.y, snapshot.demand, proj, policy.meters_per_minute,
                             policy.coverage_tau_min, policy.coverage_weight)[:, None]
    extra = _addon_rows(snapshot, riders, bundles, sites, proj, policy) if policy.add_ons else []
    if extra:
        cost = np.vstack([cost] + [row.cost[None, :] for row in extra])
    rows, cols = kernel.linear_assignment(cost)
    chosen = np.isfinite(cost[rows, cols])
    rows, cols = rows[chosen], cols[chosen]
    offers = [extra[r - len(riders)].offers[b] for r, b in zip(rows.tolist(), cols.tolist()) if r >= len(riders)]
    stats["add_ons"] = len(offers)
    growing = {o.rider_id for o in offers}  # one offer per rider and round: the add-on first
    own = np.array([r < len(riders) and riders[r].id not in growing for r in rows.tolist()], dtype=bool)
    rows, cols = rows[own], cols[own]
    # (a rider cooling down from some of a bundle's orders takes the bundle without them)
    jobs = [without.get((r, b), bundles[b]) for r, b in zip(rows.tolist(), cols.tolist())]
    site_of = np.array([b.site for b in jobs], dtype=np.int64)
    ready = np.array([b.ready for b in jobs], dtype=np.float64)
    dx, dy = fleet.x[rows] - sites[site_of, 0], fleet.y[rows] - sites[site_of, 1]
    travel = np.ceil(np.sqrt(dx * dx + dy * dy) / policy.meters_per_minute)
    half = policy.pickup_service_min / 2
    pickup = np.maximum(ready, fleet.free_at[rows] + travel + half)
    # Commit only what must start before the next round.
    latest_departure = ready - travel - half
    commit = fleet.on_shift[rows] & (fleet.free_at[rows] <= policy.interval_min) & (
        latest_departure <= policy.interval_min + policy.commit_slack_min)
    estimates = {oid: eta for offer in offers for oid, eta in zip(offer.order_ids, offer.drop_eta_ms)
                 if oid not in offer.joins}  # the add-ons' new orders
    for r, bundle, pick, now_due in zip(rows.tolist(), jobs, pickup.tolist(), commit.tolist()):
        offer = Offer(
            rider_id=riders[r].id,
            order_ids=tuple(o.id for o in bundle.orders),
            pickup_eta_ms=int(now + pick * MS_PER_MIN),
            drop_eta_ms=tuple(int(now + (pick + half + off) * MS_PER_MIN) for off in bundle.offsets),
        )
        estimates.update(zip(offer.order_ids, offer.drop_eta_ms))
        if now_due:
            offers.append(offer)
    stats["offers"] = len(offers)
    return Plan(offers=tuple(offers), stats=stats, estimates=estimates)


def _addon_rows(snapshot: Snapshot, riders: list[RiderView], bundles: list["_Bundle"], sites: np.ndarray,
                proj: LocalProjection, policy: Policy) -> list:
    return addon_rows(
        riders, {o.id: o for o in snapshot.orders}, bundles, sites, proj, snapshot.now_ms,
        meters_per_minute=policy.meters_per_minute, pickup_service_min=policy.pickup_service_min,
        dropoff_service_min=policy.dropoff_service_min, max_bundle=policy.max_bundle,
        max_extra_min=policy.max_extra_min, serve_reward_min=policy.serve_reward_min,
    )


@dataclass(frozen=True)
class _Bundle:
    orders: tuple[OrderView, ...]  # in delivery sequence
    site: int
    ready: float  # minutes from now
    offsets: tuple[float, ...]  # drop-off minutes after leaving the restaurant
    placed_sum: float

    @property
    def drop_sum(self) -> float:
        return sum(self.offsets)


def _bundles(orders: list[OrderView], fleet: "_Fleet", proj: LocalProjection, now: int,
             policy: Policy) -> tuple[list[_Bundle], np.ndarray]:
    site_index: dict[str, int] = {}
    site_xy: list[tuple[float, float]] = []
    for o in orders:
        if o.merchant_id not in site_index:
            site_index[o.merchant_id] = len(site_xy)
            site_xy.append(proj.to_xy(o.pickup_lat, o.pickup_lng))
    sites = np.array(site_xy, dtype=np.float64)
    site_of = np.array([site_index[o.merchant_id] for o in orders], dtype=np.int64)
    dx, dy = proj.to_xy(np.array([o.drop_lat for o in orders]), np.array([o.drop_lng for o in orders]))
    ready = (np.array([o.ready_at_ms for o in orders], dtype=np.float64) - now) / MS_PER_MIN
    placed = (np.array([o.placed_at_ms for o in orders], dtype=np.float64) - now) / MS_PER_MIN
    free_soon = int(np.count_nonzero(fleet.free_at <= policy.bundle_ratio_horizon_min))
    due = int(np.count_nonzero(ready <= policy.ratio_ready_horizon_min))
    target = max(1, min(policy.max_bundle, math.ceil(due / max(1, free_soon))))
    collectable = ready
    if policy.bundle_on_reach and target > 1:
        # Food waiting for a rider who cannot be there yet is, for bundling, ready when the
        # first rider can collect it: orders a late rider will collect together bundle.
        reach = kernel.pickup_times(
            fleet.x, fleet.y, fleet.free_at, fleet.shift_end, sites[:, 0], sites[:, 1],
            np.zeros(len(sites)), policy.meters_per_minute, policy.pickup_service_min, policy.max_travel_min,
        ).min(axis=0)
        collectable = np.maximum(ready, np.where(np.isfinite(reach), reach, 0.0)[site_of])
    groups = kernel.bundle_orders_by_site(
        site_of, collectable, placed, dx, dy, sites[:, 0], sites[:, 1], target, policy.max_ready_spread_min,
        policy.max_extra_min, policy.meters_per_minute, policy.dropoff_service_min,
    )
    # A lone order's drop-off: the leg from its restaurant plus half the drop-off service
    # (what ``best_drop_sequence`` gives for one stop), for all orders at once.
    lx, ly = dx - sites[site_of, 0], dy - sites[site_of, 1]
    alone = np.ceil(np.sqrt(lx * lx + ly * ly) / policy.meters_per_minute) + policy.dropoff_service_min / 2
    # (Python lists: a short-staffed day makes hundreds of bundles a round, and numpy's per-call
    # cost on arrays of one to three took most of the loop.)
    site_l, ready_l, placed_l, alone_l = site_of.tolist(), ready.tolist(), placed.tolist(), alone.tolist()
    dx_l, dy_l, sites_l = dx.tolist(), dy.tolist(), sites.tolist()
    out = []
    for group in groups:
        idx = group.tolist()
        if len(idx) == 1:
            i = idx[0]
            out.append(_Bundle((orders[i],), site_l[i], ready_l[i], (alone_l[i],), placed_l[i]))
            continue
        site = site_l[idx[0]]
        seq, offsets = _drop_sequence(sites_l[site][0], sites_l[site][1], tuple(dx_l[i] for i in idx),
                                      tuple(dy_l[i] for i in idx), policy.meters_per_minute, policy.dropoff_service_min)
        out.append(_Bundle(
            orders=tuple(orders[idx[k]] for k in seq), site=site, ready=max(ready_l[i] for i in idx),
            offsets=offsets, placed_sum=float(sum(placed_l[i] for i in idx)),
        ))
    return out, sites


@dataclass(frozen=True)
class _Fleet:
    """The round's riders as arrays: where and when (minutes from now) each is free."""

    x: np.ndarray
    y: np.ndarray
    free_at: np.ndarray
    shift_end: np.ndarray
    on_shift: np.ndarray  # False for riders whose announced shift has not begun
    index: dict[str, int]

    @classmethod
    def of(cls, riders: list[RiderView], proj: LocalProjection, now: int) -> "_Fleet":
        x, y = proj.to_xy(np.array([r.lat for r in riders]), np.array([r.lng for r in riders]))
        start = np.array([now if r.shift_start_ms is None else r.shift_start_ms for r in riders], dtype=np.float64)
        busy = np.maximum(np.array([r.busy_until_ms for r in riders], dtype=np.float64), start)
        free_at = np.maximum(0.0, (busy - now) / MS_PER_MIN)
        shift_end = np.array([math.inf if r.shift_end_ms is None else _minutes(r.shift_end_ms, now) for r in riders])
        return cls(x, y, free_at, shift_end, start <= now, {r.id: i for i, r in enumerate(riders)})


def _costs(bundles: list[_Bundle], fleet: _Fleet, sites: np.ndarray, proj: LocalProjection, now: int,
           policy: Policy) -> tuple[np.ndarray, dict[tuple[int, int], _Bundle]]:
    """The (rider, bundle) cost matrix, ``+inf`` for pairs the rider cannot serve, and the jobs
    that stand in for a bundle for one rider: ``(rider, bundle) -> the bundle without the orders
    that rider is cooling down from`` (it declined them or let their offer expire).

    A cooldown forbids the order, not its bundle: a rider who declined one order of a kitchen
    is costed, in that bundle's column, for the rest of it (and forbidden only when nothing is
    left), so the assignment can still give it the kitchen's other orders. One column, one job:
    no order can go to two riders. Riders with cooldowns are few; a round without (the replay)
    computes exactly what it did before.
    """
    cost = _job_costs(bundles, fleet, sites, policy)
    rests: list[_Bundle] = []
    rest_of: dict[tuple[int, tuple[str, ...]], int] = {}  # (bundle, orders left) -> index in rests
    chosen: dict[tuple[int, int], int] = {}  # (rider, bundle) -> index in rests
    for b, bundle in enumerate(bundles):
        cooling = {rid for o in bundle.orders for rid in o.blocked_riders if rid in fleet.index}
        for rider_id in sorted(cooling):
            r = fleet.index[rider_id]
            cost[r, b] = np.inf
            rest = tuple(o for o in bundle.orders if rider_id not in o.blocked_riders)
            if rest:
                key = (b, tuple(o.id for o in rest))
                if key not in rest_of:  # (several riders may have declined the same order)
                    rest_of[key] = len(rests)
                    rests.append(_sub_bundle(rest, bundle.site, sites, proj, now, policy))
                chosen[r, b] = rest_of[key]
    if chosen:
        alt = _job_costs(rests, fleet, sites, policy)
        for (r, b), k in chosen.items():
            cost[r, b] = alt[r, k]
    return cost, {pair: rests[k] for pair, k in chosen.items()}


def _job_costs(bundles: list[_Bundle], fleet: _Fleet, sites: np.ndarray, policy: Policy) -> np.ndarray:
    """What every rider would cost serving each bundle (the kernel's ``assignment_costs``)."""
    site = np.array([b.site for b in bundles], dtype=np.int64)
    size = np.array([len(b.orders) for b in bundles], dtype=np.float64)
    # When riders are fewer than bundles, the reward decides which bundles go first: every
    # order served earns ``serve_reward`` (plus ``age_weight`` per minute of its age).
    reward = policy.serve_reward_min * size - policy.age_weight * np.array([b.placed_sum for b in bundles])
    return kernel.assignment_costs(
        fleet.x, fleet.y, fleet.free_at, fleet.shift_end, sites[site, 0], sites[site, 1],
        np.array([b.ready for b in bundles]), size, np.array([b.drop_sum for b in bundles]), reward,
        policy.meters_per_minute, policy.pickup_service_min, policy.max_travel_min, policy.wait_weight,
    )


@functools.lru_cache(maxsize=16384)
def _drop_sequence(start_x: float, start_y: float, drop_x: tuple[float, ...], drop_y: tuple[float, ...],
                   meters_per_minute: float, dropoff_service_min: float) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """``kernel.best_drop_sequence`` as tuples, remembered: a backlog's bundles come back round
    after round (a short-staffed day re-bundles hundreds of open orders every round, and their
    sequencing, most of it checking the kernel's inputs, took nine tenths of its replay)."""
    seq, offsets = kernel.best_drop_sequence(start_x, start_y, np.array(drop_x), np.array(drop_y),
                                             meters_per_minute, dropoff_service_min)
    return tuple(int(k) for k in seq), tuple(float(x) for x in offsets)


def _sub_bundle(orders: tuple[OrderView, ...], site: int, sites: np.ndarray, proj: LocalProjection, now: int,
                policy: Policy) -> _Bundle:
    """Some of a bundle's orders as a bundle of their own: ready when the last is, re-sequenced."""
    dx, dy = proj.to_xy(np.array([o.drop_lat for o in orders]), np.array([o.drop_lng for o in orders]))
    seq, offsets = _drop_sequence(float(sites[site, 0]), float(sites[site, 1]), tuple(dx.tolist()), tuple(dy.tolist()),
                                  policy.meters_per_minute, policy.dropoff_service_min)
    return _Bundle(
        orders=tuple(orders[k] for k in seq), site=site,
        ready=max(_minutes(o.ready_at_ms, now) for o in orders),
        offsets=offsets, placed_sum=sum(_minutes(o.placed_at_ms, now) for o in orders),
    )
