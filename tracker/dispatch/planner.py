"""The dispatch planner: a snapshot in, offers out. Pure: no I/O, no clock.

One round (docs/DISPATCH.md explains and measures the policy):

1. Open orders (no rider yet) are bundled per restaurant by the kernel's greedy insertion,
   with a target bundle size from the ratio of open orders to riders free soon (as in Reyes et
   al. 2018): with riders to spare every order rides alone; when riders are scarce, orders of
   one restaurant that are ready close together travel together.
2. Every (rider, bundle) pair gets its cost: the sum of the bundle's drop-off times if this
   rider served it (pickup at the later of the rider's arrival and the food's ready time,
   drop-offs in the best sequence), plus the rider's minutes spent waiting at the restaurant at
   a small weight, minus a reward per order served that grows with the order's age (so when
   riders are short, the oldest orders and fullest bundles go first). Pairs the rider cannot
   serve (shift over, too far, declined one of the orders recently) are forbidden.
3. The kernel's optimal linear assignment picks the pairs.
4. Commitment: a chosen pair becomes an offer only when it must be acted on before the next
   round, that is when the rider is free by then and would have to leave by then to reach the
   restaurant by the food's ready time. Everything else waits for a round with more knowledge
   (new orders to bundle, riders becoming free), so a short interval makes the plan more
   precise, not more jittery: nothing is revised once offered.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

import dispatch_ext as kernel
from tracker.dispatch.model import Offer, OrderView, Plan, RiderView, Snapshot
from tracker.geo import LocalProjection

MS_PER_MIN = 60_000.0


@dataclass(frozen=True)
class Policy:
    """Every knob of the planner. Times in minutes, distances in metres."""

    meters_per_minute: float = 320.0
    pickup_service_min: float = 4.0
    dropoff_service_min: float = 4.0
    interval_min: float = 1.0  # time until the next round: the commitment horizon
    max_bundle: int = 3
    max_ready_spread_min: float = 10.0
    max_extra_min: float = 12.0
    max_travel_min: float = math.inf
    wait_weight: float = 0.1
    serve_reward_min: float = 60.0
    commit_slack_min: float = 0.0  # commit this much earlier than strictly needed
    max_busy_min: float = math.inf  # riders busy for longer than this are left out of the round
    bundle_ratio_horizon_min: float = 10.0  # riders free within this count as "free soon"

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
    t0 = time.perf_counter()
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
    bundles, sites = _bundles(open_orders, riders, proj, now, policy)
    stats["bundles"] = len(bundles)
    cost, pickup, travel, free_at = _costs(bundles, riders, sites, proj, now, policy)
    rows, cols = kernel.linear_assignment(cost)
    offers = []
    for r, b in zip(rows.tolist(), cols.tolist()):
        if not math.isfinite(cost[r, b]):
            continue
        bundle = bundles[b]
        # Commit only what must start before the next round.
        latest_departure = bundle.ready - travel[r, b] - policy.pickup_service_min / 2
        if max(free_at[r], 0.0) > policy.interval_min or latest_departure > policy.interval_min + policy.commit_slack_min:
            continue
        pick = pickup[r, b]
        leave = pick + policy.pickup_service_min / 2
        offers.append(
            Offer(
                rider_id=riders[r].id,
                order_ids=tuple(o.id for o in bundle.orders),
                pickup_eta_ms=int(now + pick * MS_PER_MIN),
                drop_eta_ms=tuple(int(now + (leave + off) * MS_PER_MIN) for off in bundle.offsets),
            )
        )
    stats["offers"] = len(offers)
    stats["solve_ms"] = round((time.perf_counter() - t0) * 1000, 3)
    return Plan(offers=tuple(offers), stats=stats)


@dataclass(frozen=True)
class _Bundle:
    orders: tuple[OrderView, ...]  # in delivery sequence
    site: int
    ready: float  # minutes from now
    offsets: tuple[float, ...]  # drop-off minutes after leaving the restaurant
    placed_sum: float


def _bundles(orders: list[OrderView], riders: list[RiderView], proj: LocalProjection, now: int,
             policy: Policy) -> tuple[list[_Bundle], np.ndarray]:
    site_index: dict[str, int] = {}
    site_xy: list[tuple[float, float]] = []
    for o in orders:
        if o.merchant_id not in site_index:
            site_index[o.merchant_id] = len(site_xy)
            site_xy.append(proj.to_xy(o.pickup_lat, o.pickup_lng))
    sites = np.array(site_xy, dtype=np.float64)
    drops = np.array([proj.to_xy(o.drop_lat, o.drop_lng) for o in orders], dtype=np.float64)
    ready = np.array([_minutes(o.ready_at_ms, now) for o in orders])
    placed = np.array([_minutes(o.placed_at_ms, now) for o in orders])
    free_soon = sum(1 for r in riders if _minutes(r.busy_until_ms, now) <= policy.bundle_ratio_horizon_min)
    target = max(1, min(policy.max_bundle, math.ceil(len(orders) / max(1, free_soon))))
    groups = kernel.bundle_orders_by_site(
        np.array([site_index[o.merchant_id] for o in orders], dtype=np.int64), ready, placed,
        drops[:, 0], drops[:, 1], sites[:, 0], sites[:, 1], target, policy.max_ready_spread_min,
        policy.max_extra_min, policy.meters_per_minute, policy.dropoff_service_min,
    )
    out = []
    for group in groups:
        idx = [int(i) for i in group]
        site = site_index[orders[idx[0]].merchant_id]
        seq, offsets = kernel.best_drop_sequence(
            float(sites[site, 0]), float(sites[site, 1]), drops[idx, 0], drops[idx, 1],
            policy.meters_per_minute, policy.dropoff_service_min,
        )
        ordered = [idx[int(k)] for k in seq]
        out.append(_Bundle(
            orders=tuple(orders[i] for i in ordered), site=site, ready=float(ready[idx].max()),
            offsets=tuple(float(x) for x in offsets), placed_sum=float(placed[idx].sum()),
        ))
    return out, sites


def _costs(bundles: list[_Bundle], riders: list[RiderView], sites: np.ndarray, proj: LocalProjection,
           now: int, policy: Policy) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rxy = np.array([proj.to_xy(r.lat, r.lng) for r in riders], dtype=np.float64)
    free_at = np.array([max(0.0, _minutes(r.busy_until_ms, now)) for r in riders])
    shift_end = np.array([math.inf if r.shift_end_ms is None else _minutes(r.shift_end_ms, now) for r in riders])
    bx = np.array([sites[b.site, 0] for b in bundles])
    by = np.array([sites[b.site, 1] for b in bundles])
    ready = np.array([b.ready for b in bundles])
    pickup = kernel.pickup_times(rxy[:, 0], rxy[:, 1], free_at, shift_end, bx, by, ready,
                                 policy.meters_per_minute, policy.pickup_service_min, policy.max_travel_min)
    travel = kernel.travel_minutes(rxy[:, 0], rxy[:, 1], bx, by, policy.meters_per_minute)
    size = np.array([len(b.orders) for b in bundles], dtype=np.float64)
    drop_sum = np.array([sum(b.offsets) for b in bundles])
    placed_sum = np.array([b.placed_sum for b in bundles])
    leave = pickup + policy.pickup_service_min / 2
    drop_times = leave * size + drop_sum  # sum of the bundle's drop-off times (minutes from now)
    # When riders are fewer than bundles, the reward decides which bundles go first: every
    # order served earns ``serve_reward`` plus its age, so older orders and fuller bundles win.
    reward = policy.serve_reward_min * size - placed_sum
    waiting = pickup - (free_at[:, None] + travel + policy.pickup_service_min / 2)
    penalty = np.where(np.isfinite(waiting), policy.wait_weight * np.maximum(waiting, 0.0), 0.0)
    cost = drop_times - reward[None, :] + penalty
    index = {r.id: i for i, r in enumerate(riders)}
    for b, bundle in enumerate(bundles):
        for order in bundle.orders:
            for rider_id in order.blocked_riders:
                if rider_id in index:
                    cost[index[rider_id], b] = np.inf
    return cost, pickup, travel, free_at
