"""The order a rider serves its orders in (``tracker.orders.route.rider_trips``, sans-I/O): what
its route frame lists and what its ETAs and kitchen prompts are planned from."""
from __future__ import annotations

from tracker.orders.route import rider_trips


def order(oid: str, status: str, merchant: str, assigned_at: int, seq: int = 0, bundle: str = "") -> dict[str, str]:
    return {"id": oid, "status": status, "merchant_id": merchant, "assigned_at": str(assigned_at),
            "route_seq": str(seq), "bundle": bundle}


def ids(trips: list[list[dict[str, str]]]) -> list[list[str]]:
    return [[h["id"] for h in trip] for trip in trips]


def test_an_add_on_takes_the_place_its_bundle_gave_it() -> None:
    bundle = "b,a"  # the add-on b (assigned later) is delivered first
    mine = [order("a", "assigned", "m1", 100, 1, bundle), order("b", "assigned", "m1", 200, 0, bundle)]
    assert ids(rider_trips(mine)) == [["b", "a"]]


def test_a_second_restaurant_comes_after_the_first_trip_and_what_is_picked_up_goes_first() -> None:
    mine = [order("later", "assigned", "m2", 300), order("first", "assigned", "m1", 100),
            order("bag", "picked_up", "m0", 50)]
    assert ids(rider_trips(mine)) == [["bag"], ["first"], ["later"]]


def test_the_restaurant_the_rider_is_at_comes_first() -> None:
    mine = [order("bag", "picked_up", "m0", 50), order("here", "at_pickup", "m2", 300),
            order("next", "assigned", "m1", 100)]
    assert ids(rider_trips(mine)) == [["here"], ["bag"], ["next"]]


def test_a_bundle_partly_in_the_bag_leaves_the_restaurant_whole_in_its_sequence() -> None:
    """The rider holds the first order of a bundle and waits at the counter for the second: it
    delivers them as the bundle says (first, then second), not the one it waits for first."""
    bundle = "first,second"
    mine = [order("second", "at_pickup", "m1", 100, 1, bundle), order("first", "picked_up", "m1", 100, 0, bundle)]
    assert ids(rider_trips(mine)) == [["first", "second"]]
    mine.append(order("bag", "picked_up", "m0", 50))  # another restaurant's order, collected before: its own trip
    assert ids(rider_trips(mine)) == [["first", "second"], ["bag"]]


def test_the_door_the_rider_is_at_comes_first_in_its_trip() -> None:
    """The bundle said first then second; the rider reports it is at the second's door: that is
    the next drop-off (its customer is not told another delivery comes first)."""
    bundle = "first,second"
    mine = [order("first", "picked_up", "m1", 100, 0, bundle), order("second", "at_dropoff", "m1", 100, 1, bundle)]
    assert ids(rider_trips(mine)) == [["second", "first"]]
