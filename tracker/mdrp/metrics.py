"""Headline metrics of an MDRP solution (README "Headline metrics"), from the solution files."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from tracker.mdrp.instance import Instance


@dataclass(frozen=True)
class Metrics:
    orders: int
    delivered: int
    undelivered_pct: float
    ctd_mean: float
    ctd_p90: float
    over_40_pct: float
    over_90_pct: float
    r2p_mean: float
    r2p_p90: float
    overage_mean: float
    orders_per_bundle: float
    utilisation_pct: float
    pay_total: float
    cost_per_order: float
    lower_bound_ctd: float

    def as_dict(self) -> dict[str, Any]:
        """The metrics as a dict, field name to value."""
        return asdict(self)


def percentile(values: list[float], q: float) -> float:
    """The q-quantile by linear interpolation (numpy's default)."""
    if not values:
        return math.nan
    xs = sorted(values)
    pos = (len(xs) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def mean(values: list[float]) -> float:
    """The arithmetic mean; NaN when there are no values."""
    return sum(values) / len(values) if values else math.nan


def lower_bound_ctd(inst: Instance, delivered: object = None) -> float:
    """Mean click-to-door if a courier already waited at the restaurant for every order: over
    the orders in ``delivered`` (ids; every order when ``None``), so that it bounds the mean
    click-to-door of the same orders; NaN when there are none."""
    p = inst.params
    return mean([
        max(o.ready, o.placement + p.pickup_service / 2) + p.pickup_service / 2
        + inst.travel(inst.restaurants[o.restaurant], (o.x, o.y)) + p.dropoff_service / 2 - o.placement
        for oid, o in inst.orders.items() if delivered is None or oid in delivered  # type: ignore[operator]
    ])


def compute_metrics(inst: Instance, assignments: list[tuple[float, float, str, list[str]]],
                    order_rows: dict[str, tuple[float, float, str]],
                    moves: dict[str, list[tuple[float, str, str]]]) -> Metrics:
    """Metrics from parsed solution rows (orders file rows: pickup, dropoff, courier).

    Figures with nothing to measure are NaN: per-delivery figures on a day with no deliveries,
    the undelivered share on a day with no orders. Moves to unknown places add no travel.
    """
    p = inst.params
    ctd, r2p, per_courier = [], [], {c: 0 for c in inst.couriers}
    busy = {c: 0.0 for c in inst.couriers}
    for oid, (pickup, drop, cid) in order_rows.items():
        o = inst.orders.get(oid)
        if o is None:
            continue
        ctd.append(drop - o.placement)
        r2p.append(max(0.0, pickup - o.ready))
        per_courier[cid] = per_courier.get(cid, 0) + 1
    for cid, path in moves.items():
        c = inst.couriers.get(cid)
        if c is None:
            continue
        for depart, origin, dest in path:
            try:
                leg = inst.travel(inst.place_of(origin, c), inst.place_of(dest, c))
            except KeyError:  # a move the checker rejects (rule 5): no travel to count
                continue
            service = p.dropoff_service if dest in inst.orders else p.pickup_service
            busy[cid] = busy.get(cid, 0.0) + leg + service
    pay = sum(
        max(p.pay_per_order * per_courier.get(c.id, 0), p.pay_per_hour * (c.off - c.on) / 60)
        for c in inst.couriers.values()
    )
    shift = sum(c.off - c.on for c in inst.couriers.values())
    delivered = len(ctd)
    none = math.nan  # a figure with nothing to measure (no orders, no deliveries)
    return Metrics(
        orders=len(inst.orders), delivered=delivered,
        undelivered_pct=100.0 * (len(inst.orders) - delivered) / len(inst.orders) if inst.orders else none,
        ctd_mean=mean(ctd), ctd_p90=percentile(ctd, 0.9),
        over_40_pct=100.0 * sum(x > p.target_ctd for x in ctd) / delivered if delivered else none,
        over_90_pct=100.0 * sum(x > p.max_ctd for x in ctd) / delivered if delivered else none,
        r2p_mean=mean(r2p), r2p_p90=percentile(r2p, 0.9),
        overage_mean=mean([max(0.0, x - p.target_ctd) for x in ctd]),
        orders_per_bundle=delivered / max(1, len(assignments)) if delivered else none,
        utilisation_pct=100.0 * sum(busy.values()) / max(1.0, shift),
        pay_total=pay, cost_per_order=pay / delivered if delivered else none,
        lower_bound_ctd=lower_bound_ctd(inst, order_rows.keys()),  # (the delivered orders': what ctd_mean counts)
    )
