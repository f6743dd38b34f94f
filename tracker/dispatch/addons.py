"""Add-ons: a rider on the way to a restaurant can take more of its orders (two-stage commitment).

A rider whose route is still uncollected (``RiderView.pickup_at_ms`` set, every order of one
restaurant) gets one extra row in the round's assignment problem: for every open bundle of
the same restaurant whose food is ready by the planned pickup, and which fits in the bag, the
cost of adding it. The pickup does not move; the drop-offs are re-sequenced over all orders;
no held order may be delayed by more than ``max_extra_min``; riders cooling down from an
order (declined or let expire) are not offered it this way either: the bundle is added without
it (as a fresh job is, ``planner._costs``), so they may still take its other orders. The cost is
the change in the sum of drop-off times minus the per-order reward, in the same units as a fresh
job, so the assignment weighs "add to that rider" against "send another rider".
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Protocol

import numpy as np

import dispatch_ext as kernel
from tracker.dispatch.model import MS_PER_MIN, Offer, OrderView, RiderView
from tracker.geo import LocalProjection


@dataclass(frozen=True)
class AddOnRow:
    """One rider's add-on costs over the round's bundles and the offer each would make."""

    cost: np.ndarray  # per bundle; +inf where it cannot join
    offers: dict[int, Offer]


class BundleView(Protocol):
    """What add-ons need of a bundle: its orders, restaurant site and ready time (min from now)."""

    orders: tuple[OrderView, ...]
    site: int
    ready: float


def addon_rows(riders: list[RiderView], orders_by_id: dict[str, OrderView], bundles: list[BundleView],
               sites: np.ndarray, proj: LocalProjection, now: int, *, meters_per_minute: float,
               pickup_service_min: float, dropoff_service_min: float, max_bundle: int,
               max_extra_min: float, serve_reward_min: float) -> list[AddOnRow]:
    """The add-on rows of every rider whose route can still grow."""
    site_of_merchant = {b.orders[0].merchant_id: b.site for b in bundles}
    rows = []
    for rider in riders:
        if rider.pickup_at_ms is None or rider.pickup_at_ms <= now or not rider.route:
            continue
        if rider.shift_end_ms is not None and rider.pickup_at_ms > rider.shift_end_ms:
            continue
        held = [orders_by_id.get(i) for i in rider.route]
        if any(o is None for o in held) or len(held) >= max_bundle:
            continue
        site = site_of_merchant.get(held[0].merchant_id)
        if site is None:
            continue
        pickup = (rider.pickup_at_ms - now) / MS_PER_MIN
        leave = pickup + pickup_service_min / 2
        sx, sy = float(sites[site, 0]), float(sites[site, 1])

        def drops(group: list[OrderView]) -> tuple[tuple[int, ...], tuple[float, ...]]:
            x, y = proj.to_xy(np.array([o.drop_lat for o in group]), np.array([o.drop_lng for o in group]))
            return _sequence(sx, sy, tuple(x.tolist()), tuple(y.tolist()), meters_per_minute, dropoff_service_min)

        held_seq, held_off = drops(held)
        held_drop = {held[int(k)].id: leave + float(x) for k, x in zip(held_seq, held_off)}
        cost = np.full(len(bundles), np.inf)
        offers: dict[int, Offer] = {}
        for b, bundle in enumerate(bundles):
            if bundle.site != site:
                continue
            new = [o for o in bundle.orders if rider.id not in o.blocked_riders]  # not those it declined lately
            if not new or len(held) + len(new) > max_bundle:
                continue
            ready = bundle.ready  # (without the declined ones: when the last of the others is)
            if len(new) < len(bundle.orders):
                ready = max(o.ready_at_ms - now for o in new) / MS_PER_MIN
            if ready > pickup:
                continue
            group = held + new
            seq, off = drops(group)
            drop = {group[int(k)].id: leave + float(x) for k, x in zip(seq, off)}
            if any(drop[i] - t > max_extra_min for i, t in held_drop.items()):
                continue
            cost[b] = sum(drop.values()) - sum(held_drop.values()) - serve_reward_min * len(new)
            sequence = tuple(group[int(k)].id for k in seq)
            offers[b] = Offer(
                rider_id=rider.id, order_ids=sequence, pickup_eta_ms=int(rider.pickup_at_ms),
                drop_eta_ms=tuple(int(now + drop[i] * MS_PER_MIN) for i in sequence),
                joins=tuple(rider.route),
            )
        if offers:
            rows.append(AddOnRow(cost, offers))
    return rows


@functools.lru_cache(maxsize=8192)
def _sequence(sx: float, sy: float, xs: tuple[float, ...], ys: tuple[float, ...], meters_per_minute: float,
              dropoff_service_min: float) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """The kernel's best drop sequence, remembered: the same bundles come up round after round."""
    seq, off = kernel.best_drop_sequence(sx, sy, np.array(xs), np.array(ys), meters_per_minute, dropoff_service_min)
    return tuple(int(k) for k in seq), tuple(float(v) for v in off)
