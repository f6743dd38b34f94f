"""The planner's two-stage commitment (add-ons), coverage of demand, announced shifts, and
riders cooling down from an order (declined, or let its offer expire) still offered the rest."""
from __future__ import annotations

from dataclasses import replace

from tracker.dispatch.model import DemandSite, OrderView, RiderView, Snapshot
from tracker.dispatch.planner import Policy, plan
from tracker.geo import LocalProjection

PROJ = LocalProjection(40.0, -74.0)
NOW = 1_700_000_000_000
MIN = 60_000


def order(oid: str, rest_xy: tuple[float, float], drop_xy: tuple[float, float], ready_min: float,
          rest: str = "A") -> OrderView:
    (plat, plng), (dlat, dlng) = PROJ.to_latlng(*rest_xy), PROJ.to_latlng(*drop_xy)
    return OrderView(oid, rest, plat, plng, dlat, dlng, NOW - MIN, int(NOW + ready_min * MIN))


def rider(rid: str, xy: tuple[float, float], **kw: object) -> RiderView:
    lat, lng = PROJ.to_latlng(*xy)
    return RiderView(rid, lat, lng, True, None, **{"busy_until_ms": NOW, **kw})  # type: ignore[arg-type]


def offers(orders: list[OrderView], riders: list[RiderView], demand: tuple[DemandSite, ...] = (),
           **policy: object) -> list:  # type: ignore[type-arg]
    snap = Snapshot(NOW, PROJ.origin_lat, PROJ.origin_lng, tuple(orders), tuple(riders), demand)
    return list(plan(snap, Policy(**policy)).offers)  # type: ignore[arg-type]


def heading_to_a(pickup_min: float, held: OrderView) -> tuple[RiderView, OrderView]:
    """A rider on its way to restaurant A to collect ``held`` at ``pickup_min``."""
    on_route = replace(held, rider_id="r1")
    r = rider("r1", (1500, 0), route=(held.id,), pickup_at_ms=int(NOW + pickup_min * MIN),
              busy_until_ms=int(NOW + (pickup_min + 8) * MIN))
    return r, on_route


def test_a_rider_on_the_way_takes_another_order_of_that_restaurant_ready_by_its_pickup() -> None:
    r1, held = heading_to_a(6, order("h1", (0, 0), (1200, 600), ready_min=5))
    new = order("n1", (0, 0), (1300, 700), ready_min=3)
    far = rider("r2", (6000, 0))
    [offer] = offers([held, new], [r1, far])
    assert offer.rider_id == "r1" and offer.joins == ("h1",)
    assert set(offer.order_ids) == {"h1", "n1"} and offer.new_order_ids == ("n1",)
    assert offer.pickup_eta_ms == r1.pickup_at_ms  # the pickup does not move
    assert len(offer.drop_eta_ms) == 2 and all(t > offer.pickup_eta_ms for t in offer.drop_eta_ms)


def test_no_add_on_when_the_food_is_not_ready_by_the_pickup_or_would_delay_the_held_order() -> None:
    r1, held = heading_to_a(6, order("h1", (0, 0), (1200, 600), ready_min=5))
    late_food = order("n1", (0, 0), (1300, 700), ready_min=9)
    assert all(not o.joins for o in offers([held, late_food], [r1, rider("r2", (6000, 0))]))
    # Best served first, this one would put h1 about 11 minutes later than planned.
    r1, held = heading_to_a(6, order("h1", (0, 0), (4000, 0), ready_min=5))
    first = order("n2", (0, 0), (-1000, 0), ready_min=3)
    assert [o.joins for o in offers([held, first], [r1], max_extra_min=12)] == [("h1",)]
    assert all(not o.joins for o in offers([held, first], [r1, rider("r2", (6000, 0))], max_extra_min=8))
    assert all(not o.joins for o in offers([held, order("n3", (0, 0), (1300, 700), 3)], [r1], add_ons=False))
    declined = replace(order("n4", (0, 0), (1300, 700), 3), blocked_riders=frozenset({"r1"}))
    assert all(not o.joins for o in offers([held, declined], [r1]))  # cooling down: not as an add-on either
    leaving = replace(r1, shift_end_ms=r1.pickup_at_ms - MIN)  # its pickup is already past its shift
    assert all(not o.joins for o in offers([held, order("n5", (0, 0), (1300, 700), 3)], [leaving]))


def test_a_rider_gets_one_offer_a_round_even_when_an_add_on_and_a_later_job_both_fit() -> None:
    r1, held = heading_to_a(2, order("h1", (0, 0), (300, 0), ready_min=1))
    quick = replace(r1, busy_until_ms=NOW + 4 * MIN)  # free again soon after its pickup
    add = order("n1", (0, 0), (350, 0), ready_min=1)
    elsewhere = order("e1", (900, 0), (1200, 0), ready_min=7, rest="B")
    made = offers([held, add, elsewhere], [quick], interval_min=5)
    assert len(made) == len({o.rider_id for o in made}) == 1 and made[0].joins == ("h1",)


def test_coverage_sends_the_rider_from_the_quiet_side_when_travel_differs_little() -> None:
    food = order("o1", (0, 0), (0, 900), ready_min=0, rest="X")
    busy_side, quiet_side = rider("near-demand", (-600, 0)), rider("quiet", (700, 0))
    [plain] = offers([food], [busy_side, quiet_side])
    assert plain.rider_id == "near-demand"  # one minute closer
    hotspot = (DemandSite(*PROJ.to_latlng(-900, 0), 50.0),)
    [covered] = offers([food], [busy_side, quiet_side], hotspot, coverage_tau_min=5.0)
    assert covered.rider_id == "quiet"
    [off] = offers([food], [busy_side, quiet_side], hotspot, coverage_tau_min=5.0, coverage_weight=0.0)
    assert off.rider_id == "near-demand"


def test_a_rider_whose_shift_has_not_begun_is_planned_for_but_offered_nothing() -> None:
    food = order("o1", (0, 0), (800, 0), ready_min=10)
    far = rider("far", (7000, 0))  # must leave now to be there at 10 minutes
    assert [o.rider_id for o in offers([food], [far])] == ["far"]
    soon = rider("soon", (100, 0), shift_start_ms=NOW + 5 * MIN, busy_until_ms=NOW)
    assert offers([food], [far, soon]) == []  # nobody is sent across town for it
    assert offers([order("o2", (0, 0), (800, 0), ready_min=0)], [soon]) == []  # nothing before the shift
    started = replace(soon, shift_start_ms=NOW)
    assert [o.rider_id for o in offers([order("o2", (0, 0), (800, 0), ready_min=0)], [started])] == ["soon"]


def test_a_rider_cooling_down_from_one_order_is_still_offered_the_restaurants_other_orders() -> None:
    # One rider, two orders of one kitchen: short of riders, the round bundles them. The rider
    # declined o0 (or let its offer expire): that is no reason to keep o1 from it.
    declined = replace(order("o0", (0, 0), (1200, 600), ready_min=0), blocked_riders=frozenset({"r1"}))
    other = order("o1", (0, 0), (1300, 700), ready_min=0)
    r1 = rider("r1", (200, 0))
    [offer] = offers([declined, other], [r1])
    assert (offer.rider_id, offer.order_ids) == ("r1", ("o1",))
    assert len(offer.drop_eta_ms) == 1 and offer.drop_eta_ms[0] > offer.pickup_eta_ms
    # A rider free of cooldowns still takes the whole bundle; one cooling down from both gets nothing.
    [both] = offers([replace(declined, blocked_riders=frozenset()), other], [r1])
    assert sorted(both.order_ids) == ["o0", "o1"]
    assert offers([declined, replace(other, blocked_riders=frozenset({"r1"}))], [r1]) == []
    # Three to a bundle, two of them declined: the third goes on its own.
    third = order("o2", (0, 0), (1100, 800), ready_min=0)
    [offer] = offers([declined, replace(other, blocked_riders=frozenset({"r1"})), third], [r1])
    assert (offer.rider_id, offer.order_ids) == ("r1", ("o2",))
    # Another rider about: no order goes twice, and r1 never gets o0.
    for r2 in (rider("r2", (300, 0)), rider("r2", (2500, 0))):
        made = offers([declined, other, third], [r1, r2])
        ids = [oid for o in made for oid in o.order_ids]
        assert len(ids) == len(set(ids)) and made
        assert all("o0" not in o.order_ids for o in made if o.rider_id == "r1")


def test_a_rider_on_its_way_cooling_down_from_one_order_may_add_the_restaurants_others() -> None:
    r1, held = heading_to_a(6, order("h1", (0, 0), (1200, 600), ready_min=5))
    declined = replace(order("n0", (0, 0), (1300, 700), ready_min=3), blocked_riders=frozenset({"r1"}))
    other = order("n1", (0, 0), (1250, 650), ready_min=3)
    [offer] = offers([held, declined, other], [r1])
    assert offer.rider_id == "r1" and offer.joins == ("h1",) and offer.new_order_ids == ("n1",)
    assert set(offer.order_ids) == {"h1", "n1"} and len(offer.drop_eta_ms) == 2
