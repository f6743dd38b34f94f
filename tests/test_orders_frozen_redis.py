"""Order steps caught by a Redis that froze mid-request (SIGSTOP past the server's 5 s wait,
then SIGCONT), over real sockets and a real Redis.

The step's atomic Lua script was already on its way when Redis stopped, so the client is told
``redis_unavailable`` ("not known to be done") and Redis runs the step when it wakes: the order,
its history and the kitchen's feed then agree (taken whole, once), the keys derived from it
(dispatch's open orders, the kitchen queue) follow, and the same step sent again, as the client
is told to, answers ``invalid_transition`` saying the order took that very step already
(``already``) and where it stands (``order_status``), so a client can say "done" instead of an error.
"""
from __future__ import annotations

import asyncio
from typing import Any, Callable, Iterator

import httpx
import pytest

from tests.orders_helpers import Ops, confirmed_order, merchant, rider
from tests.redis_freeze import FreezingRelay
from tracker.embedded_redis import EmbeddedRedis, free_port
from tracker.launcher import ServerProcess


@pytest.fixture(scope="module")
def frozen_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FreezingRelay, ServerProcess]]:
    """A Redis of this module's own (it is frozen), a relay that freezes it on cue, a server behind it."""
    tmp = tmp_path_factory.mktemp("frozen")
    with EmbeddedRedis(tmp / "redis", port=free_port()) as redis, FreezingRelay(redis) as relay, \
            ServerProcess(redis_url=relay.url, data_dir=tmp / "server") as srv:
        yield relay, srv


def step_of(order_id: str, kind: str) -> tuple[bytes, bytes]:
    """Markers of the atomic step of ``kind`` on ``order_id`` on its way to Redis."""
    return b"EVALSHA", f'"order_id":"{order_id}","kind":"{kind}"'.encode()


async def when(read: Callable[[], Any], holds: Callable[[Any], bool], timeout: float = 30.0) -> Any:
    """What ``read()`` gives once ``holds`` it (reads that fail, Redis still waking, are tried again)."""
    deadline = asyncio.get_running_loop().time() + timeout
    last: Any = None
    while asyncio.get_running_loop().time() < deadline:
        try:
            last = await read()
            if holds(last):
                return last
        except (AssertionError, httpx.HTTPError):
            pass
        await asyncio.sleep(0.5)
    raise AssertionError(f"still not so after {timeout} s: {last!r}")


async def feed_kinds(srv: ServerProcess, merchant_id: str, order_id: str) -> list[str]:
    """The kinds of ``order_id``'s events in its kitchen's feed, read whole on a new socket."""
    kitchen = await merchant(srv, merchant_id)
    kinds = []
    try:
        while True:
            frame = await kitchen.recv(timeout=1.0)
            if frame.get("type") == "event" and frame.get("order_id") == order_id:
                kinds.append(frame["kind"])
    except asyncio.TimeoutError:
        return kinds
    finally:
        await kitchen.close()


async def snapshot(ops: Ops) -> dict[str, Any]:
    resp = await ops.client.get("/v1/ops/snapshot")
    assert resp.status_code == 200, resp.text
    return resp.json()


async def test_a_kitchens_confirm_caught_by_a_frozen_redis_lands_whole_and_a_second_press_says_it_was_done(
        frozen_world, uid) -> None:  # type: ignore[no-untyped-def]
    relay, srv = frozen_world
    ops = Ops(srv)
    oid, mid = uid("o"), uid("m")
    try:
        assert (await when(lambda: ops.create(oid, mid), lambda r: r.status_code == 201)).status_code == 201
        kitchen = await merchant(srv, mid)
        try:
            await kitchen.event(oid, "placed")
            relay.freeze_before(*step_of(oid, "confirmed"))
            await kitchen.confirm(oid)
            await relay.frozen()
            try:
                answer = await kitchen.expect(lambda f: f.get("ref") == f"confirm {oid}", timeout=20)
            finally:
                relay.thaw()
            assert answer["code"] == "redis_unavailable", answer
        finally:
            await kitchen.close()
        order = await when(lambda: ops.get(oid), lambda o: o["status"] == "confirmed")
        assert [e["kind"] for e in order["events"]] == ["placed", "confirmed"]  # once, with its event
        assert await feed_kinds(srv, mid, oid) == ["placed", "confirmed"]
        # what the server could not do after the step (it had answered already) is done all the same:
        # the order waits for a rider, no longer for its kitchen
        await when(lambda: snapshot(ops), lambda s: oid in {o["id"] for o in s["open_orders"]}
                   and oid not in {o["id"] for o in s["kitchen_queue"]})
        kitchen = await merchant(srv, mid)
        try:  # the kitchen presses again, as it was told: the answer says the confirm was done
            await kitchen.confirm(oid)
            again = await kitchen.expect(lambda f: f.get("ref") == f"confirm {oid}")
        finally:
            await kitchen.close()
        assert again["code"] == "invalid_transition" and "order_status" in again, again
        assert (again["order_id"], again["order_status"], again["already"]) == (oid, "confirmed", True), again
    finally:
        await ops.close()


async def test_an_operators_cancel_caught_by_a_frozen_redis_lands_whole_and_a_second_one_says_it_was_done(
        frozen_world, uid) -> None:  # type: ignore[no-untyped-def]
    relay, srv = frozen_world
    ops = Ops(srv)
    oid, mid = uid("o"), uid("m")
    try:
        assert (await when(lambda: ops.create(oid, mid), lambda r: r.status_code == 201)).status_code == 201
        relay.freeze_before(*step_of(oid, "cancelled"))
        try:
            first = await ops.cancel(oid)
        finally:
            relay.thaw()
        assert first.status_code == 503 and first.json()["error"]["code"] == "redis_unavailable", first.text
        order = await when(lambda: ops.get(oid), lambda o: o["status"] == "cancelled")
        assert [e["kind"] for e in order["events"]] == ["placed", "cancelled"]
        assert await feed_kinds(srv, mid, oid) == ["placed", "cancelled"]
        await when(lambda: snapshot(ops), lambda s: oid not in {o["id"] for o in s["kitchen_queue"]})
        again = await ops.cancel(oid)
        assert again.status_code == 409, again.text
        error = again.json()["error"]
        assert (error["code"], error["order_id"], error["order_status"], error["already"]) == (
            "invalid_transition", oid, "cancelled", True), error
    finally:
        await ops.close()


async def test_a_riders_pickup_caught_by_a_frozen_redis_lands_whole_and_a_second_report_says_it_was_done(
        frozen_world, uid) -> None:  # type: ignore[no-untyped-def]
    relay, srv = frozen_world
    ops = Ops(srv)
    oid, mid, rid = uid("o"), uid("m"), uid("r")
    courier = None
    try:
        await when(lambda: ops.create(oid, mid), lambda r: r.status_code == 201)
        await confirmed_order(srv, ops, oid, mid)  # (created already: the same body again is fine)
        assert (await ops.assign(oid, rid)).status_code == 200
        courier = await rider(srv, rid)
        await courier.progress(oid, "at_pickup")
        await when(lambda: ops.get(oid), lambda o: o["status"] == "at_pickup")
        relay.freeze_before(*step_of(oid, "picked_up"))
        await courier.progress(oid, "picked_up")
        await relay.frozen()
        try:
            answer = await courier.expect(lambda f: f.get("ref") == f"picked_up {oid}", timeout=20)
        finally:
            relay.thaw()
        assert answer["code"] == "redis_unavailable", answer
        order = await when(lambda: ops.get(oid), lambda o: o["status"] == "picked_up")
        assert [e["kind"] for e in order["events"]] == ["placed", "confirmed", "assigned", "at_pickup", "picked_up"]
        await courier.progress(oid, "picked_up")  # reported again, as the rider was told
        again = await courier.expect(lambda f: f.get("ref") == f"picked_up {oid}")
        assert (again["code"], again["order_id"], again["order_status"], again["already"]) == (
            "invalid_transition", oid, "picked_up", True), again
        await courier.progress(oid, "delivered")  # a step skipped is no step taken: not "already"
        skipped = await courier.expect(lambda f: f.get("ref") == f"delivered {oid}")
        assert (skipped["code"], skipped["order_status"], skipped["already"]) == ("invalid_transition", "picked_up", False)
    finally:
        if courier is not None:
            await courier.close()
        await ops.close()
