"""Two people acting on one order at the same moment (two operators' tabs, an operator and a
kitchen, a rider accepting as the order is cancelled): whichever way the steps fall, the rider's
last word about the order is what the order says, and its rider's set is right for dispatch,
the ops page and the silent-rider take-back. Each race is run a number of rounds, since the
steps interleave differently each time: on the old code the cancel race went wrong in every
round where both calls went through (a quarter of them); the two take-back races are rarer
(about 1 round in 20 to 70 with a probe's script) and are run here as guards."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, AsyncIterator

import pytest

from clients.rider import RiderClient
from tests.orders_helpers import Ops, carried_after_frames, confirm_all, platform_kitchen, rider
from tests.test_dispatch_live import FAST, offered, rider_near_restaurant
from tracker.launcher import ServerProcess

ROUNDS = 15


@dataclass
class Scene:
    """An operator's client, a connected rider and ROUNDS confirmed orders of one kitchen, on a
    server whose dispatcher offers nothing (the rider never sends a position)."""

    srv: ServerProcess
    ops: Ops
    rider_id: str
    courier: RiderClient
    order_ids: list[str]


@pytest.fixture
async def scene(own_redis, start_server, uid) -> AsyncIterator[Scene]:  # type: ignore[no-untyped-def]
    srv = start_server({}, redis=own_redis)
    ops = Ops(srv)
    mid, rid = uid("m"), uid("r")
    oids = [uid(f"o{i}") for i in range(ROUNDS)]
    courier = await rider(srv, rid)
    kitchen = await platform_kitchen(srv, mid)
    try:
        for oid in oids:
            assert (await ops.create(oid, mid)).status_code == 201
        await confirm_all(kitchen, *oids)
        await kitchen.close()
        yield Scene(srv, ops, rid, courier, oids)
    finally:
        await courier.close()
        await ops.close()


async def _both(*calls: Any) -> list[int]:
    return [resp.status_code for resp in await asyncio.gather(*calls)]


async def test_taken_from_one_rider_as_another_is_assigned_it_the_other_really_has_it(scene: Scene, uid) -> None:  # type: ignore[no-untyped-def]
    """The take-back's follow-up once dropped the order from the *new* rider's set (it read the
    order again after the new assignment): the order stayed assigned with no rider holding it,
    out of its rider's route, its ETAs and the silent-rider take-back, for good."""
    ops, lost = scene.ops, []
    for i, oid in enumerate(scene.order_ids):
        first, second = uid(f"ra{i}"), uid(f"rb{i}")
        assert (await ops.assign(oid, first)).status_code == 200
        codes = await _both(ops.client.post(f"/v1/orders/{oid}/unassign", json={"rider_id": first}),
                            ops.assign(oid, second))
        if (await ops.get(oid))["rider_id"] != second:
            continue  # the assignment came first and was refused (409): nothing to check
        assert codes == [200, 200], codes
        courier = await rider(scene.srv, second, keep_route=True)
        try:
            if oid not in await carried_after_frames(courier):
                lost.append(oid)
        finally:
            await courier.close()
    assert not lost, f"assigned to a rider whose route does not hold them: {lost}"


async def test_an_order_cancelled_as_it_is_assigned_is_not_left_on_the_riders_screen(scene: Scene) -> None:
    """Its ``order_cancelled`` could reach the rider before the ``assigned`` frame: the rider's
    app then showed a dead job until it reconnected."""
    ops, wrong = scene.ops, []
    for oid in scene.order_ids:
        codes = await _both(ops.assign(oid, scene.rider_id), ops.cancel(oid))
        if oid in await carried_after_frames(scene.courier):
            wrong.append((oid, codes))
        assert (await ops.get(oid))["status"] == "cancelled"
    assert not wrong, f"the rider was left holding cancelled orders: {wrong}"


async def test_taken_back_and_given_again_to_the_same_rider_it_is_the_riders(scene: Scene) -> None:
    """Two operators: one takes the order back from the rider, the other assigns it to the same
    rider again. Whichever lands last, the rider's last word and its set agree with the order."""
    ops, rid, wrong = scene.ops, scene.rider_id, []
    for oid in scene.order_ids:
        assert (await ops.assign(oid, rid)).status_code == 200
        await _both(ops.client.post(f"/v1/orders/{oid}/unassign", json={"rider_id": rid}), ops.assign(oid, rid))
        believes = oid in await carried_after_frames(scene.courier)
        has = (await ops.get(oid))["rider_id"] == rid
        if believes != has:
            wrong.append((oid, believes, has))
    assert not wrong, f"(order, the rider believes it has it, it has it): {wrong}"
    again = await rider(scene.srv, rid, keep_route=True)  # a fresh connection reads the rider's set
    try:
        route = await carried_after_frames(again)
    finally:
        await again.close()
    assert route == {oid for oid in scene.order_ids if (await ops.get(oid))["rider_id"] == rid}


async def test_an_order_cancelled_as_the_rider_accepts_it_is_not_left_on_its_screen(own_redis, start_server, uid) -> None:  # type: ignore[no-untyped-def]
    """The accept's own ``assigned`` frame could follow the ``order_cancelled`` (2 rounds in 12
    with a probe's script on the old code)."""
    srv = start_server({**FAST, "TRACKER_OFFER_TIMEOUT_S": "30"}, redis=own_redis)
    ops, mid = Ops(srv), uid("m")
    courier = await rider_near_restaurant(srv, uid("r"), 0.002)
    try:
        wrong = []
        for i in range(ROUNDS // 2):
            oid = uid(f"o{i}")
            offer = await offered(ops, courier, oid, mid)
            courier.received.clear()
            await asyncio.gather(courier.accept(offer["offer_id"]), ops.cancel(oid))
            if oid in await carried_after_frames(courier):
                wrong.append(oid)
            assert (await ops.get(oid))["status"] == "cancelled"
        assert not wrong, f"the rider was left holding cancelled orders: {wrong}"
    finally:
        await courier.close()
        await ops.close()


async def test_two_take_backs_at_once_the_loser_hears_the_order_has_no_rider(scene: Scene) -> None:
    """Two operators take the order back from its rider at once: one does it; the other is told
    what the same call made afterwards says ("has no rider to take it from"), not "changed
    riders meanwhile; try again", whose retry would only say that."""
    ops, rid, answers = scene.ops, scene.rider_id, []
    for oid in scene.order_ids:
        assert (await ops.assign(oid, rid)).status_code == 200
        both = await asyncio.gather(*(ops.client.post(f"/v1/orders/{oid}/unassign", json={"rider_id": rid})
                                      for _ in range(2)))
        answers.append(sorted((resp.status_code, resp.json().get("error", {}).get("code")) for resp in both))
        assert (await ops.get(oid))["status"] == "confirmed"
    assert all(pair == [(200, None), (409, "invalid_transition")] for pair in answers), answers
