"""Resume: a subscriber cut at any point gets exactly what it missed, then live; gaps resync."""
from __future__ import annotations

import asyncio
import random
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clients.customer import CustomerClient
from tests.orders_helpers import Ops, confirm_all, customer, deliver, events_until, merchant, platform_kitchen, rider
from tests.test_pubsub import kill_pubsub_connections
from tracker.launcher import ServerProcess
from tracker.redis_client import connect
from tracker.orders.resume import GAP, Resume


async def _delivered_order(server: ServerProcess, ops: Ops, oid: str, mid: str, rid: str) -> list[dict]:
    kitchen = await merchant(server, mid)
    courier = await rider(server, rid)
    try:
        await ops.create(oid, mid)
        await kitchen.confirm(oid)
        await kitchen.event(oid, "confirmed")
        await kitchen.delay(oid, 5)
        await kitchen.event(oid, "food_delayed")
        await kitchen.ready(oid)
        await kitchen.event(oid, "food_ready")
        await ops.assign(oid, rid)
        await deliver(courier, kitchen, oid)
    finally:
        await kitchen.close()
        await courier.close()
    return (await ops.get(oid))["events"]


async def test_resume_from_every_cut_point_misses_nothing_and_repeats_nothing(server: ServerProcess, uid) -> None:  # type: ignore[no-untyped-def]
    ops = Ops(server)
    oid = uid("o")
    try:
        history = await _delivered_order(server, ops, oid, uid("m"), uid("r"))
        assert len(history) == 9
        for cut in range(len(history)):
            watcher = CustomerClient(server.ws_url, server.token("customer", oid), oid)
            watcher.last_event_id = history[cut - 1]["id"] if cut else None
            await watcher.connect()
            got = [await watcher.next_event() for _ in range(len(history) - cut)]
            assert [g["id"] for g in got] == [e["id"] for e in history[cut:]]
            # and nothing more arrives
            try:
                extra = await watcher.next(timeout=0.3)
            except asyncio.TimeoutError:
                extra = None
            assert extra is None, extra
            await watcher.close()
    finally:
        await ops.close()


async def test_reconnecting_while_events_flow_is_gapless(server: ServerProcess, uid) -> None:  # type: ignore[no-untyped-def]
    """The subscribe/replay race: cut the connection at random moments while events pour in."""
    ops = Ops(server)
    oid, mid = uid("o"), uid("m")
    kitchen = await platform_kitchen(server, mid)  # 300 delays at full speed: more than a kitchen may send
    rng = random.Random(7)
    try:
        await ops.create(oid, mid)
        watcher = await customer(server, oid)
        n = 300
        stop = asyncio.Event()

        async def produce() -> None:
            for i in range(n):
                await kitchen.delay(oid, 1)
                if i % 10 == 0:
                    await asyncio.sleep(0)
            stop.set()

        async def drain_kitchen() -> None:
            while True:
                await kitchen.ws.recv()

        drain = asyncio.ensure_future(drain_kitchen())
        producer = asyncio.ensure_future(produce())
        while len(watcher.events) < n + 1:
            frame = await watcher.next(timeout=10)
            assert frame["type"] == "event", frame
            if rng.random() < 0.08:
                await watcher.reconnect()
        await producer
        drain.cancel()
        ids = [e["id"] for e in watcher.events]
        history = (await ops.get(oid))["events"]
        assert ids == [e["id"] for e in history]  # all of them, in order, once each
        await watcher.close()
    finally:
        await kitchen.close()
        await ops.close()


async def test_bad_last_event_ids_are_named_then_the_full_history_follows(server: ServerProcess, uid) -> None:  # type: ignore[no-untyped-def]
    """A malformed id is an error; a well-formed one the order never had, after its first event,
    is a ``resync``: the client's view cannot be continued, so it rebuilds it from the full
    history that follows. One from before the first event (``0-0`` included) misses nothing:
    the full history, with no ``resync``."""
    ops = Ops(server)
    oid, mid = uid("o"), uid("m")
    try:
        await ops.create(oid, mid)
        history = (await ops.get(oid))["events"]
        first_ms = int(history[0]["id"].split("-")[0])
        for bad, said_first in (("yesterday", {"type": "error", "code": "bad_message"}),
                                (f"{first_ms + 1}-5", {"type": "resync", "reason": "unknown_last_event_id"}),
                                ("99999999999999-0", {"type": "resync", "reason": "unknown_last_event_id"}),
                                ("0-0", None), ("0-1", None), (f"{first_ms - 1}-0", None)):
            watcher = CustomerClient(server.ws_url, server.token("customer", oid), oid)
            watcher.last_event_id = bad
            await watcher.connect()
            said = await watcher.next()
            if said_first is None:
                assert said["type"] == "event" and said["id"] == history[0]["id"], (bad, said)
            else:
                assert {k: said.get(k) for k in said_first} == said_first, (bad, said)
                assert said["type"] == "resync" or "full history" in said["message"]
                first = await watcher.next_event()
                assert first["id"] == history[0]["id"]
            await watcher.close()
    finally:
        await ops.close()


async def test_a_merchant_feed_resumed_from_an_id_it_never_had_resyncs(server: ServerProcess, uid) -> None:  # type: ignore[no-untyped-def]
    ops = Ops(server)
    mid, oid = uid("m"), uid("o")
    try:
        await ops.create(oid, mid)
        kitchen = await merchant(server, mid, last_event_id="99999999999999-0")  # from the future
        assert await kitchen.expect("resync") == {"type": "resync", "reason": "unknown_last_event_id"}
        placed = await kitchen.expect("event")
        assert (placed["order_id"], placed["kind"]) == (oid, "placed")  # the retained history follows
        await kitchen.close()
    finally:
        await ops.close()


async def test_a_merchant_feed_resumed_from_before_it_began_resyncs_only_once_trimmed(server: ServerProcess, uid) -> None:  # type: ignore[no-untyped-def]
    """``0-0`` (or any id older than the feed's first entry) on a feed that has lost nothing
    misses nothing: every event follows, no ``resync``. Once the feed has dropped its oldest
    entries (here trimmed by hand, as three hours would), or expired whole, the same id gets
    ``history_trimmed``."""
    ops = Ops(server)
    mid, a, b = uid("m"), uid("a"), uid("b")
    redis = connect(server.effective_redis_url)
    try:
        empty = await merchant(server, mid, last_event_id="0-0")  # a brand-new merchant: nothing to miss
        await ops.create(a, mid)
        first = await empty.recv()  # the very first frame: no resync before it
        assert (first.get("type"), first.get("order_id"), first.get("kind")) == ("event", a, "placed"), first
        await empty.close()
        await ops.create(b, mid)
        kitchen = await merchant(server, mid, last_event_id="0-0")
        got = [await kitchen.recv(), await kitchen.recv()]
        assert [(e["type"], e["order_id"], e["kind"]) for e in got] == [("event", a, "placed"), ("event", b, "placed")]
        await kitchen.close()
        await ops.cancel(a)
        await ops.cancel(b)
        # a quiet merchant's feed does not stay for good: it expires 3 h after its last event
        assert 0 < await redis.pttl(f"feed:{{m:{mid}}}") <= 3 * 3600 * 1000
        await redis.xtrim(f"feed:{{m:{mid}}}", minid=got[1]["id"], approximate=False)  # the oldest entry goes, as after 3 hours
        kitchen = await merchant(server, mid, last_event_id="0-0")
        assert await kitchen.expect("resync") == {"type": "resync", "reason": "history_trimmed"}
        kept = await kitchen.expect("event")
        assert (kept["order_id"], kept["kind"]) == (b, "placed")  # the retained history follows
        await kitchen.close()
        await redis.delete(f"feed:{{m:{mid}}}")  # the whole feed gone, as 3 quiet hours expire it
        kitchen = await merchant(server, mid, last_event_id=kept["id"])
        assert await kitchen.recv() == {"type": "resync", "reason": "history_trimmed"}
        await kitchen.close()
        c = uid("c")
        await ops.create(c, mid)
        kitchen = await merchant(server, mid, last_event_id=kept["id"])
        assert await kitchen.expect("resync") == {"type": "resync", "reason": "history_trimmed"}
        assert ((await kitchen.expect("event"))["order_id"]) == c
        await kitchen.close()
    finally:
        await redis.aclose()
        await ops.close()


async def test_a_kitchen_board_that_missed_nothing_resumes_quietly_after_its_feed_expired(server: ServerProcess, uid) -> None:  # type: ignore[no-untyped-def]
    """Three quiet hours expire a merchant's feed (simulated: deleted, as its expiry would). A
    board resuming from the newest event it saw missed nothing: no ``resync``; a board opened
    fresh neither; both get the next order as the next frame (no ``live_gap``)."""
    ops = Ops(server)
    mid, a, b = uid("m"), uid("a"), uid("b")
    redis = connect(server.effective_redis_url)
    kitchen = await merchant(server, mid)
    try:
        await ops.create(a, mid)
        await ops.cancel(a)
        seen = await kitchen.event(a, "cancelled")
        await kitchen.close()
        assert 0 < await redis.pttl(f"feed:{{m:{mid}}}") <= 3 * 3600 * 1000
        await redis.delete(f"feed:{{m:{mid}}}")
        resumed = await merchant(server, mid, last_event_id=seen["id"])
        fresh = await merchant(server, mid)
        await asyncio.sleep(0.3)  # (whatever the sockets send on opening has come)
        await ops.create(b, mid)
        for board in (resumed, fresh):
            got = await board.recv()
            assert (got["type"], got.get("order_id"), got.get("kind")) == ("event", b, "placed"), got
            await board.close()
    finally:
        await kitchen.close()
        await redis.aclose()
        await ops.close()


async def test_a_merchant_feed_stays_while_one_of_its_orders_is_open(server: ServerProcess, uid) -> None:  # type: ignore[no-untyped-def]
    """A scheduled order, placed and then quiet for hours: the feed does not expire under it, so a
    board opened then still lists it; once it ends, the feed expires 3 h after its last event."""
    ops = Ops(server)
    mid, oid = uid("m"), uid("o")
    redis = connect(server.effective_redis_url)
    try:
        created = await ops.create(oid, mid, ready_at=int(time.time() * 1000) + 3 * 3600 * 1000)  # due in 3 h
        assert created.status_code == 201, created.text
        for key in (f"feed:{{m:{mid}}}", f"feed:{{m:{mid}}}:last", f"feed:{{m:{mid}}}:origin"):
            assert await redis.pttl(key) == -1, key  # no expiry while the order is open
        board = await merchant(server, mid)
        placed = await board.recv()
        assert (placed["type"], placed["order_id"], placed["kind"]) == ("event", oid, "placed")
        await board.close()
        await ops.cancel(oid)
        assert 0 < await redis.pttl(f"feed:{{m:{mid}}}") <= 3 * 3600 * 1000
    finally:
        await redis.aclose()
        await ops.close()


async def test_merchant_feed_resumes_across_orders(server: ServerProcess, uid) -> None:  # type: ignore[no-untyped-def]
    ops = Ops(server)
    mid = uid("m")
    a, b = uid("a"), uid("b")
    kitchen = await merchant(server, mid)
    try:
        await ops.create(a, mid)
        seen = await kitchen.event(a, "placed")
        await kitchen.close()
        await ops.create(b, mid)  # while the tablet is offline
        await ops.cancel(a)
        kitchen = await merchant(server, mid, last_event_id=seen["id"])
        first, second = await kitchen.expect("event"), await kitchen.expect("event")
        assert (first["order_id"], first["kind"]) == (b, "placed")
        assert (second["order_id"], second["kind"]) == (a, "cancelled")
        await kitchen.confirm(b)  # and live events follow
        assert (await kitchen.expect("event"))["kind"] == "confirmed"
    finally:
        await kitchen.close()
        await ops.close()


async def test_a_fast_server_clock_keeps_the_kitchens_feed(own_redis, start_server, uid) -> None:  # type: ignore[no-untyped-def]
    """A replay runs the server's clock fast; the merchant feed's three hours are real hours
    (its entry ids are Redis's clock), so a kitchen tablet opened later still gets every order.
    Here a real second is a server hour: four of them pass before the tablet opens, and the
    feed holds enough entries (over 100) for Redis to trim it."""
    fast = start_server({"TRACKER_TIME_SCALE": "3600", "TRACKER_DISPATCH_INTERVAL_S": "36000"}, redis=own_redis)
    ops = Ops(fast)
    mid = uid("m")
    base = uid("o")
    placed = [f"{base}-{i}" for i in range(120)]
    kitchen = None
    try:
        for oid in placed[:-1]:
            assert (await ops.create(oid, mid)).status_code == 201
        await asyncio.sleep(4)
        assert (await ops.create(placed[-1], mid)).status_code == 201  # an entry after the hours passed
        kitchen = await merchant(fast, mid)
        seen = [(await kitchen.expect("event"))["order_id"] for _ in placed]
        assert seen == placed
    finally:
        if kitchen is not None:
            await kitchen.close()
        await ops.close()


async def test_rider_position_only_while_the_rider_carries_the_order(server: ServerProcess, uid) -> None:  # type: ignore[no-untyped-def]
    ops = Ops(server)
    mine, other, mid, rid = uid("mine"), uid("other"), uid("m"), uid("r")
    kitchen = await merchant(server, mid)
    courier = await rider(server, rid)
    try:
        await ops.create(mine, mid)
        await ops.create(other, mid)
        await confirm_all(kitchen, mine, other)
        watcher, bystander = await customer(server, mine), await customer(server, other)
        await events_until(watcher, "confirmed")
        await events_until(bystander, "confirmed")
        lat, lng = 52.5100, 13.3900
        await courier.location(lat, lng)  # not assigned yet: nobody sees it
        await asyncio.sleep(0.5)
        await ops.assign(mine, rid)
        await events_until(watcher, "assigned")
        at_once = await watcher.next()  # where the rider is now, without waiting for its next fix
        assert at_once["type"] == "rider_location" and (at_once["lat"], at_once["lng"]) == (lat, lng), at_once
        assert isinstance(at_once["eta"], int)
        positions = []
        for i in range(1, 4):
            await asyncio.sleep(1.05)
            await courier.location(lat + i * 0.0002, lng + i * 0.0002)  # ~26 m/s
            frame = await watcher.next()
            assert frame["type"] == "rider_location", frame
            positions.append(frame)
        assert [p["lat"] for p in positions] == [lat + i * 0.0002 for i in range(1, 4)]
        etas = [p["eta"] for p in positions]
        assert all(isinstance(e, int) and e > p["ts"] for e, p in zip(etas, positions))
        for step in ("at_pickup", "picked_up", "at_dropoff", "delivered"):
            await courier.progress(mine, step)
        await events_until(watcher, "delivered")
        await asyncio.sleep(1.05)
        await courier.location(lat + 0.001, lng + 0.001)  # after delivery: private again
        for sock in (watcher, bystander):
            try:
                frame = await sock.next(timeout=1.0)
            except asyncio.TimeoutError:
                frame = None
            assert frame is None or frame.get("type") != "rider_location", frame
    finally:
        await kitchen.close()
        await courier.close()
        await ops.close()


async def test_a_channel_opened_mid_delivery_gives_the_history_then_the_riders_last_position(server: ServerProcess, uid) -> None:  # type: ignore[no-untyped-def]
    """The contract: every durable event first, then live ones; the rider's last known position
    is the first thing after the history, so a client never sees a rider its events have not assigned."""
    ops = Ops(server)
    oid, mid, rid = uid("o"), uid("m"), uid("r")
    kitchen = await merchant(server, mid)
    courier = await rider(server, rid)
    try:
        await ops.create(oid, mid)
        await confirm_all(kitchen, oid)
        await courier.location(52.5100, 13.3900)
        assert await ops.rider_seen_at(rid, 52.5100, 13.3900)
        await ops.assign(oid, rid)
        await courier.progress(oid, "at_pickup")
        await courier.location(52.51005, 13.39005)
        assert await ops.rider_seen_at(rid, 52.51005, 13.39005)  # the fix is stored; the rider then goes quiet
        watcher = await customer(server, oid)
        frames = [await watcher.next() for _ in range(5)]
        assert [f.get("kind") for f in frames[:4]] == ["placed", "confirmed", "assigned", "at_pickup"], frames
        assert frames[4]["type"] == "rider_location" and (frames[4]["lat"], frames[4]["lng"]) == (52.51005, 13.39005), frames
        await watcher.close()
    finally:
        await kitchen.close()
        await courier.close()
        await ops.close()


async def test_an_order_given_back_drops_its_leg_from_the_kept_orders_eta_at_once(server: ServerProcess, uid) -> None:  # type: ignore[no-untyped-def]
    """No fix from the rider after the release: the kept order's customer still gets a new ETA."""
    ops = Ops(server)
    first, kept, mid, rid = uid("first"), uid("kept"), uid("m"), uid("r")
    kitchen = await merchant(server, mid)
    courier = await rider(server, rid)
    try:
        await ops.create(first, mid, dropoff={"lat": 52.5300, "lng": 13.4200})
        await ops.create(kept, mid, dropoff={"lat": 52.5400, "lng": 13.4400})
        await confirm_all(kitchen, first, kept)
        await courier.location(52.5150, 13.4000)
        assert await ops.rider_seen_at(rid, 52.5150, 13.4000)
        for oid in (first, kept):
            assert (await ops.assign(oid, rid)).status_code == 200
        watcher = await customer(server, kept)
        await events_until(watcher, "assigned")
        for _ in range(50):  # both legs counted: `first` is dropped on the way
            before = (await ops.get(kept))["eta"]
            if before and (await ops.get(first))["eta"]:
                break
            await asyncio.sleep(0.1)
        await courier.release(first, reason="wrong bag")
        await courier.expect("unassigned")
        while True:  # (a feed already under way may still count both legs: skip it)
            frame = await watcher.next(timeout=5)
            if frame["type"] == "rider_location" and frame["eta"] is not None and frame["eta"] < before - 60_000:
                break  # `first`'s leg and its drop-off, a few minutes, are gone
        assert (frame["lat"], frame["lng"]) == (52.5150, 13.4000)
        assert (await ops.get(kept))["eta"] == frame["eta"]
    finally:
        await kitchen.close()
        await courier.close()
        await ops.close()


async def test_kitchen_is_prompted_when_the_rider_is_within_preparation_time(start_server, uid) -> None:  # type: ignore[no-untyped-def]
    srv = start_server({"TRACKER_RIDER_SPEED_MPS": "10", "TRACKER_MAX_RIDER_SPEED_MPS": "5000", "TRACKER_ARRIVING_PROMPT_S": "60"})
    ops = Ops(srv)
    oid, mid, rid = uid("o"), uid("m"), uid("r")
    kitchen = await merchant(srv, mid)
    courier = await rider(srv, rid)
    pickup = (52.5200, 13.4050)
    try:
        await ops.create(oid, mid, prep_minutes=5)  # 5 min at 10 m/s: prompt within ~3 km
        await kitchen.confirm(oid)
        await kitchen.event(oid, "confirmed")  # the confirm frame is not answered: assigning earlier is a 409
        assert (await ops.assign(oid, rid)).status_code == 200
        await courier.location(pickup[0] + 0.06, pickup[1])  # ~6.7 km away: 11 min
        first = await kitchen.expect("rider_eta")  # the board's Rider column counts down from here
        assert first["order_id"] == oid and first["rider_id"] == rid
        assert 10 <= (first["rider_eta"] - first["ts"]) / 60000 <= 12, first
        await asyncio.sleep(1.1)
        await courier.location(pickup[0] + 0.05, pickup[1])  # ~5.6 km: still too early
        later = await kitchen.expect("rider_eta")  # nearly two minutes nearer: told again
        assert 8.5 <= (later["rider_eta"] - later["ts"]) / 60000 <= 10, later
        await asyncio.sleep(1.1)
        prompts = [f for f in kitchen.received if f.get("type") == "prompt"]
        assert prompts == []
        await courier.location(pickup[0] + 0.02, pickup[1])  # ~2.2 km: 3.7 min, start now
        prompt = await kitchen.expect("prompt")
        assert prompt["kind"] == "start_preparing" and prompt["order_id"] == oid
        assert 2.5 <= prompt["minutes_away"] <= 5.0 and "start plating" in prompt["message"]
        await asyncio.sleep(1.1)
        await courier.location(pickup[0] + 0.003, pickup[1])  # 330 m: arriving
        arriving = await kitchen.expect("prompt")
        assert arriving["kind"] == "rider_arriving"
        await asyncio.sleep(1.1)
        told = [f for f in kitchen.received if f.get("type") == "rider_eta"][-1:]
        await courier.location(pickup[0] + 0.002, pickup[1])  # prompts are sent once
        try:
            again = await kitchen.expect("prompt", timeout=1.5)
        except asyncio.TimeoutError:
            again = None
        assert again is None
        assert [f for f in kitchen.received if f.get("type") == "rider_eta"][-1:] == told  # 11 s nearer: not said
        reloaded = await merchant(srv, mid)  # a board reloaded now is shown what it was told
        try:
            shown = [await reloaded.expect("prompt") for _ in range(2)]
            assert [(p["kind"], p["order_id"]) for p in shown] == [("start_preparing", oid), ("rider_arriving", oid)]
            assert shown[0]["message"] == prompt["message"] and shown[0]["ts"] <= shown[1]["ts"]
            assert (await reloaded.expect("rider_eta"))["rider_eta"] == told[0]["rider_eta"]
        finally:
            await reloaded.close()
        last_seen = [f["id"] for f in kitchen.received if f.get("type") == "event"][-1]
        resumed = await merchant(srv, mid, last_event_id=last_seen)  # a board back after a drop: the same
        try:
            shown = [await resumed.expect("prompt") for _ in range(2)]
            assert [(p["kind"], p["order_id"]) for p in shown] == [("start_preparing", oid), ("rider_arriving", oid)]
            assert (await resumed.expect("rider_eta"))["rider_eta"] == told[0]["rider_eta"]
        finally:
            await resumed.close()
        # the kitchen delays the food: "start plating" was timed to the old ready time, so a board
        # opened now is not shown it again (the live board drops it on food_delayed)
        await kitchen.delay(oid, 5)
        delayed = await kitchen.event(oid, "food_delayed")
        assert (await ops.get(oid))["food_delayed_at"] == delayed["ts"]
        reloaded = await merchant(srv, mid)
        try:
            await reloaded.event(oid, "food_delayed")
            shown = [await reloaded.expect("prompt")]
            with pytest.raises(asyncio.TimeoutError):
                shown.append(await reloaded.expect("prompt", timeout=1.0))
            assert [(p["kind"], p["order_id"]) for p in shown] == [("rider_arriving", oid)]
        finally:
            await reloaded.close()
        # the rider gives the order back; the kitchen hears of the one who takes over as it arrives
        await courier.release(oid, reason="flat tyre")
        await kitchen.event(oid, "rider_unassigned")
        reloaded = await merchant(srv, mid)  # no rider on the way: nothing to show
        try:
            await reloaded.event(oid, "rider_unassigned")
            with pytest.raises(asyncio.TimeoutError):
                await reloaded.expect(lambda f: f.get("type") in ("prompt", "rider_eta"), timeout=1.0)
        finally:
            await reloaded.close()
        relief_id = uid("r2")
        relief = await rider(srv, relief_id)
        try:
            assert (await ops.assign(oid, relief_id)).status_code == 200
            await relief.location(pickup[0] + 0.06, pickup[1])  # ~6.7 km: 11 min, beyond preparation time
            await kitchen.expect(lambda f: f.get("type") == "rider_eta" and f.get("rider_id") == relief_id)
            reloaded = await merchant(srv, mid)  # the first rider's prompts are not this rider's
            try:
                eta = await reloaded.expect("rider_eta")
                assert (eta["rider_id"], eta["order_id"]) == (relief_id, oid)
                with pytest.raises(asyncio.TimeoutError):
                    await reloaded.expect("prompt", timeout=1.0)
            finally:
                await reloaded.close()
            await asyncio.sleep(1.1)
            await relief.location(pickup[0] + 0.01, pickup[1])  # 1.1 km: within preparation time
            start = await kitchen.expect(lambda f: f.get("type") == "prompt" and f.get("rider_id") == relief_id)
            # timed to this rider, not the one who gave the order back
            assert (start["kind"], start["order_id"]) == ("start_preparing", oid)
            assert 1.0 <= start["minutes_away"] <= 2.5, start
            await asyncio.sleep(1.1)
            await relief.location(pickup[0] + 0.003, pickup[1])  # 330 m: arriving
            arriving = await kitchen.expect(lambda f: f.get("type") == "prompt" and f.get("rider_id") == relief_id)
            assert (arriving["kind"], arriving["order_id"]) == ("rider_arriving", oid)
        finally:
            await relief.close()
    finally:
        await kitchen.close()
        await courier.close()
        await ops.close()


async def test_a_reloaded_board_shows_no_start_prompt_of_a_rider_who_gave_the_order_back(start_server, uid) -> None:  # type: ignore[no-untyped-def]
    srv = start_server({"TRACKER_RIDER_SPEED_MPS": "10", "TRACKER_MAX_RIDER_SPEED_MPS": "5000"})
    ops = Ops(srv)
    oid, mid, first_id, second_id = uid("o"), uid("m"), uid("r"), uid("r2")
    kitchen = await merchant(srv, mid)
    first, second = await rider(srv, first_id), await rider(srv, second_id)
    pickup = (52.5200, 13.4050)
    try:
        await ops.create(oid, mid, prep_minutes=5)
        await confirm_all(kitchen, oid)
        assert (await ops.assign(oid, first_id)).status_code == 200
        await first.location(pickup[0] + 0.02, pickup[1])  # ~2.2 km: 3.7 min, within preparation time
        assert (await kitchen.expect("prompt"))["kind"] == "start_preparing"
        await first.release(oid, reason="flat tyre")
        await kitchen.event(oid, "rider_unassigned")
        assert (await ops.assign(oid, second_id)).status_code == 200
        await second.location(pickup[0] + 0.06, pickup[1])  # ~6.7 km: 11 min, not yet
        await kitchen.expect(lambda f: f.get("type") == "rider_eta" and f.get("rider_id") == second_id)
        reloaded = await merchant(srv, mid)
        try:
            eta = await reloaded.expect("rider_eta")
            assert eta["rider_id"] == second_id and 10 <= (eta["rider_eta"] - eta["ts"]) / 60000 <= 12, eta
            with pytest.raises(asyncio.TimeoutError):  # "rider 4 min away: start plating" was the first rider's
                await reloaded.expect("prompt", timeout=1.0)
        finally:
            await reloaded.close()
    finally:
        for client in (kitchen, first, second):
            await client.close()
        await ops.close()


async def test_an_order_added_while_the_rider_waits_at_the_counter_is_prompted_at_once(start_server, uid) -> None:  # type: ignore[no-untyped-def]
    srv = start_server({"TRACKER_RIDER_SPEED_MPS": "10", "TRACKER_MAX_RIDER_SPEED_MPS": "5000"})
    ops = Ops(srv)
    first, added, mid, rid = uid("x"), uid("y"), uid("m"), uid("r")
    kitchen = await merchant(srv, mid)
    courier = await rider(srv, rid)
    pickup = (52.5200, 13.4050)
    try:
        for oid in (first, added):
            await ops.create(oid, mid, prep_minutes=10)
        await confirm_all(kitchen, first, added)
        await courier.location(pickup[0] + 0.0002, pickup[1])  # at the door
        assert (await ops.assign(first, rid)).status_code == 200
        await courier.progress(first, "at_pickup")
        await kitchen.event(first, "at_pickup")
        assert (await ops.assign(added, rid)).status_code == 200  # the add-on
        await kitchen.event(added, "assigned")
        await asyncio.sleep(1.1)
        await courier.location(pickup[0] + 0.0001, pickup[1])
        start = await kitchen.expect(lambda f: f.get("type") == "prompt" and f.get("order_id") == added)
        assert start["kind"] == "start_preparing" and start["message"] == "rider arriving now: start plating", start
        eta = await kitchen.expect(lambda f: f.get("type") == "rider_eta" and f.get("order_id") == added)
        assert eta["rider_id"] == rid and eta["rider_eta"] <= eta["ts"], eta
    finally:
        await kitchen.close()
        await courier.close()
        await ops.close()


async def _rider_location(watcher: CustomerClient, after_ms: int, timeout: float = 10.0) -> dict:
    """The first ``rider_location`` frame on the order's channel sent after server time ``after_ms``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        frame = await watcher.next(max(0.1, deadline - loop.time()))
        if frame["type"] == "rider_location" and frame["eta"] is not None and frame["eta"] > after_ms:
            return frame


async def test_a_rider_saying_it_is_at_the_restaurant_while_far_away_keeps_the_customers_eta(start_server, uid) -> None:  # type: ignore[no-untyped-def]
    srv = start_server({"TRACKER_RIDER_SPEED_MPS": "5", "TRACKER_MAX_RIDER_SPEED_MPS": "5000"})
    ops = Ops(srv)
    oid, mid, rid = uid("o"), uid("m"), uid("r")
    kitchen = await merchant(srv, mid)
    courier = await rider(srv, rid)
    pickup = (52.5200, 13.4050)
    watcher = None
    try:
        await ops.create(oid, mid, dropoff={"lat": pickup[0] + 0.004, "lng": pickup[1]})
        await confirm_all(kitchen, oid)
        await kitchen.ready(oid)
        await kitchen.event(oid, "food_ready")
        await courier.location(pickup[0] + 0.018, pickup[1])  # 2 km out: 6.7 min to the restaurant
        assert (await ops.assign(oid, rid)).status_code == 200
        watcher = await customer(srv, oid)
        before = await _rider_location(watcher, 0)
        await courier.progress(oid, "at_pickup")  # said too early: the rider is still 2 km out
        await kitchen.event(oid, "at_pickup")
        await asyncio.sleep(1.1)
        await courier.location(pickup[0] + 0.0179, pickup[1])
        after = await _rider_location(watcher, 0)
        while after["ts"] == before["ts"]:
            after = await _rider_location(watcher, 0)
        # 11 m nearer: the ETA barely moves, it does not drop the 6.7 min ride to the restaurant
        assert after["eta"] >= before["eta"] - 60_000, (before["eta"], after["eta"])
    finally:
        for client in (kitchen, courier, watcher):
            if client is not None:
                await client.close()
        await ops.close()


async def test_a_step_made_while_the_servers_pubsub_reconnects_still_reaches_the_channels(
        own_redis, start_server, uid) -> None:  # type: ignore[no-untyped-def]
    """The server's pub/sub connection is cut and an order is cancelled at once, before the
    server has subscribed again: the customer and the kitchen still get the event."""
    srv = start_server(redis=own_redis)
    ops, client = Ops(srv), connect(own_redis)
    oid, mid = uid("o"), uid("m")
    try:
        await ops.create(oid, mid)
        watcher, kitchen = await customer(srv, oid), await merchant(srv, mid)
        await events_until(watcher, "placed")
        await kitchen.event(oid, "placed")
        await kill_pubsub_connections(client)
        assert (await ops.cancel(oid)).status_code == 200
        seen = []  # resync frames (the connection was cut), then the event, once
        while "cancelled" not in [f.get("kind") for f in seen]:
            seen.append(await watcher.next(timeout=10))
        assert {f["type"] for f in seen} <= {"event", "resync"}
        assert [f["kind"] for f in seen if f["type"] == "event"] == ["cancelled"], seen
        await kitchen.event(oid, "cancelled")
        await watcher.close()
        await kitchen.close()
    finally:
        await ops.close()
        await client.aclose()


async def test_a_second_restaurants_order_is_planned_after_the_first_trip(start_server, uid) -> None:  # type: ignore[no-untyped-def]
    """An operator hands a rider on its way to restaurant A an order of restaurant B, 4 km off:
    B's kitchen is not told the rider is arriving while it is at A, and B's pickup is planned
    after A's drop-off, on the order's ETAs and in the rider's route."""
    srv = start_server({"TRACKER_RIDER_SPEED_MPS": "10", "TRACKER_MAX_RIDER_SPEED_MPS": "5000",
                        "TRACKER_ARRIVING_PROMPT_S": "60"})
    ops = Ops(srv)
    first, second, mid_a, mid_b, rid = uid("o1"), uid("o2"), uid("ma"), uid("mb"), uid("r")
    restaurant_b = {"lat": 52.5600, "lng": 13.4050}
    kitchen_a, kitchen_b = await merchant(srv, mid_a), await merchant(srv, mid_b)
    courier = await rider(srv, rid)
    try:
        await ops.create(first, mid_a, prep_minutes=1)
        await ops.create(second, mid_b, pickup=restaurant_b, prep_minutes=1)
        for kitchen, oid in ((kitchen_a, first), (kitchen_b, second)):
            await kitchen.confirm(oid)
            await kitchen.event(oid, "confirmed")
        assert (await ops.assign(first, rid)).status_code == 200
        assert (await ops.assign(second, rid)).status_code == 200
        await courier.location(52.5200 + 0.002, 13.4050)  # 220 m from A, 4.2 km from B
        arriving = await kitchen_a.expect(lambda f: f.get("type") == "prompt" and f["kind"] == "rider_arriving")
        assert arriving["order_id"] == first
        told = await kitchen_b.expect(lambda f: f.get("type") == "rider_eta" and f["order_id"] == second)
        await courier.location(52.5200 + 0.020, 13.4050)  # 2.2 km from A: B's pickup minutes later
        # B's kitchen hears of that later fix (not only a second gone by): all the first fix told it came before
        await kitchen_b.expect(lambda f: f.get("type") == "rider_eta" and f["order_id"] == second
                               and f["rider_eta"] >= told["rider_eta"] + 60_000)
        assert not [f for f in kitchen_b.received if f.get("type") == "prompt" and f["kind"] == "rider_arriving"]
        a, b = await ops.get(first), await ops.get(second)
        assert a["pickup_eta"] < a["eta"] < b["pickup_eta"] < b["eta"], (a, b)
        again = await rider(srv, rid, keep_route=True)
        route = await again.expect("route")
        assert [o["order_id"] for o in route["orders"]] == [first, second]
        await again.close()
    finally:
        for client in (kitchen_a, kitchen_b, courier):
            await client.close()
        await ops.close()


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=1, max_value=30), st.data())
def test_resume_logic_delivers_each_event_once_in_order(n: int, data: st.DataObject) -> None:
    """The sans-I/O core: subscribed at any point, history read up to any later point, and every
    live event since subscribing (those the history also holds included) fed after it."""
    events = []
    prev = None
    for i in range(n):
        eid = f"{1000 + i}-0"
        events.append({"id": eid, "prev": prev})
        prev = eid
    last_seen = data.draw(st.integers(min_value=-1, max_value=n - 1))
    subscribed_at = data.draw(st.integers(min_value=max(0, last_seen + 1), max_value=n))
    read_upto = data.draw(st.integers(min_value=subscribed_at, max_value=n))
    r = Resume(events[last_seen]["id"] if last_seen >= 0 else None)
    out = r.history(events[last_seen + 1:read_upto])
    for e in events[subscribed_at:]:  # queued while the history was read, then live
        got = r.live(e)
        assert got is not GAP
        out += got  # type: ignore[operator]
    assert [e["id"] for e in out] == [e["id"] for e in events[last_seen + 1:]]


def test_resume_logic_flags_a_lost_live_event() -> None:
    r = Resume("1-0")
    assert r.history([]) == []
    assert r.live({"id": "2-0", "prev": "1-0"}) == [{"id": "2-0", "prev": "1-0"}]
    assert r.live({"id": "4-0", "prev": "3-0"}) is GAP  # 3-0 never arrived
