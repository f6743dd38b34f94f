"""Two people acting on one order at the same moment (two operators' tabs, an operator and a
kitchen, a rider accepting as the order is cancelled): whichever way the steps fall, the rider's
last word about the order is what the order says, and its rider's set is right for dispatch,
the ops page and the silent-rider take-back. Each race is run a number of rounds, since the
steps interleave differently each time: on the old code the cancel race went wrong in every
round where both calls went through (a quarter of them); the two take-back races are rarer
(about 1 round in 20 to 70 with a probe's script) and are run here as guards."""
from __future__ import annotations

import asyncio
from typing import Any

import pytest

from clients.rider import RiderClient
from tests.orders_helpers import Ops, carried_after_frames, confirm_all, platform_kitchen, rider
from tracker.launcher import ServerProcess

ROUNDS = 15


@pytest.fixture
async def quiet_server(own_redis, start_server) -> ServerProcess:  # type: ignore[no-untyped-def]
    """A server whose dispatcher offers nothing (its riders never send a position)."""
    return start_server({}, redis=own_redis)


async def _confirmed_orders(srv: ServerProcess, ops: Ops, mid: str, oids: list[str]) -> None:
    kitchen = await platform_kitchen(srv, mid)
    try:
        for oid in oids:
            assert (await ops.create(oid, mid)).status_code == 201
        await confirm_all(kitchen, *oids)
    finally:
        await kitchen.close()


async def _both(*calls: Any) -> list[int]:
    return [resp.status_code for resp in await asyncio.gather(*calls)]


async def test_taken_from_one_rider_as_another_is_assigned_it_the_other_really_has_it(quiet_server, uid) -> None:  # type: ignore[no-untyped-def]
    """The take-back's follow-up once dropped the order from the *new* rider's set (it read the
    order again after the new assignment): the order stayed assigned with no rider holding it,
    out of its rider's route, its ETAs and the silent-rider take-back, for good."""
    ops = Ops(quiet_server)
    mid = uid("m")
    oids = [uid(f"o{i}") for i in range(ROUNDS)]
    try:
        await _confirmed_orders(quiet_server, ops, mid, oids)
        lost = []
        for i, oid in enumerate(oids):
            first, second = uid(f"ra{i}"), uid(f"rb{i}")
            assert (await ops.assign(oid, first)).status_code == 200
            codes = await _both(ops.client.post(f"/v1/orders/{oid}/unassign", json={"rider_id": first}),
                                ops.assign(oid, second))
            order = await ops.get(oid)
            if order["rider_id"] != second:
                continue  # the assignment came first and was refused (409): nothing to check
            assert codes == [200, 200], codes
            courier = await rider(quiet_server, second, keep_route=True)
            try:
                if oid not in await carried_after_frames(courier):
                    lost.append(oid)
            finally:
                await courier.close()
        assert not lost, f"assigned to a rider whose route does not hold them: {lost}"
    finally:
        await ops.close()


async def test_an_order_cancelled_as_it_is_assigned_is_not_left_on_the_riders_screen(quiet_server, uid) -> None:  # type: ignore[no-untyped-def]
    """Its ``order_cancelled`` could reach the rider before the ``assigned`` frame: the rider's
    app then showed a dead job until it reconnected."""
    ops = Ops(quiet_server)
    mid, rid = uid("m"), uid("r")
    oids = [uid(f"o{i}") for i in range(ROUNDS)]
    courier: RiderClient = await rider(quiet_server, rid)
    try:
        await _confirmed_orders(quiet_server, ops, mid, oids)
        wrong = []
        for oid in oids:
            codes = await _both(ops.assign(oid, rid), ops.cancel(oid))
            if oid in await carried_after_frames(courier):
                wrong.append((oid, codes))
            assert (await ops.get(oid))["status"] == "cancelled"
        assert not wrong, f"the rider was left holding cancelled orders: {wrong}"
    finally:
        await courier.close()
        await ops.close()


async def test_taken_back_and_given_again_to_the_same_rider_it_is_the_riders(quiet_server, uid) -> None:  # type: ignore[no-untyped-def]
    """Two operators: one takes the order back from the rider, the other assigns it to the same
    rider again. Whichever lands last, the rider's last word and its set agree with the order."""
    ops = Ops(quiet_server)
    mid, rid = uid("m"), uid("r")
    oids = [uid(f"o{i}") for i in range(ROUNDS)]
    courier: RiderClient = await rider(quiet_server, rid)
    try:
        await _confirmed_orders(quiet_server, ops, mid, oids)
        wrong = []
        for oid in oids:
            assert (await ops.assign(oid, rid)).status_code == 200
            await _both(ops.client.post(f"/v1/orders/{oid}/unassign", json={"rider_id": rid}), ops.assign(oid, rid))
            believes = oid in await carried_after_frames(courier)
            has = (await ops.get(oid))["rider_id"] == rid
            if believes != has:
                wrong.append((oid, believes, has))
        assert not wrong, f"(order, the rider believes it has it, it has it): {wrong}"
        again = await rider(quiet_server, rid, keep_route=True)  # a fresh connection reads the rider's set
        try:
            route = await carried_after_frames(again)
        finally:
            await again.close()
        held = {oid for oid in oids if (await ops.get(oid))["rider_id"] == rid}
        assert route == held
    finally:
        await courier.close()
        await ops.close()
