"""Riders stream fixes over real sockets into a real Redis; operators find them nearby."""
from __future__ import annotations

import asyncio
import math
import time
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

import h3
import httpx
import orjson
import pytest
import redis.asyncio as aioredis
from websockets.exceptions import ConnectionClosed

from clients.rider import RiderClient
from tracker.launcher import ServerProcess
from tracker.redis_client import connect

CENTRE = (52.5200, 13.4050)


def haversine(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    r = 6_371_008.8
    p1, p2 = math.radians(lat1), math.radians(lat2)
    a = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lng2 - lng1) / 2) ** 2
    return 2 * r * math.asin(math.sqrt(a))


async def nearby(server: ServerProcess, lat: float, lng: float, radius_m: float, limit: int = 500) -> list[dict]:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as client:
        resp = await client.get(
            "/v1/riders/nearby", params={"lat": lat, "lng": lng, "radius_m": radius_m, "limit": limit},
            headers={"Authorization": "Bearer " + server.token("operator", "ops")},
        )
    assert resp.status_code == 200, resp.text
    return resp.json()["riders"]


async def eventually(check, timeout: float = 5.0):  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await check()
        if result or asyncio.get_running_loop().time() > deadline:
            return result
        await asyncio.sleep(0.05)


async def rider(server: ServerProcess, rider_id: str) -> RiderClient:
    r = await RiderClient.connect(server.ws_url, server.token("rider", rider_id))
    await r.expect("route")  # every rider connection starts with what it carries
    return r


@asynccontextmanager
async def rider_and_redis(server: ServerProcess, redis_url: str, rider_id: str) -> AsyncIterator[tuple[RiderClient, Any]]:
    """A connected rider and a client of the server's Redis (to see what its fixes wrote), both closed after."""
    r = await rider(server, rider_id)
    red = connect(redis_url, decode_responses=True)
    try:
        yield r, red
    finally:
        await r.close()
        await red.aclose()


async def test_two_hundred_riders_on_a_path_come_back_nearest_first(server: ServerProcess, uid) -> None:  # type: ignore[no-untyped-def]
    # A path heading north-east from a point of our own, riders 15 m apart.
    origin = (48.1351, 11.5820)
    points = [(origin[0] + i * 0.0001, origin[1] + i * 0.00012) for i in range(200)]
    ids = [uid(f"path{i:03d}") for i in range(200)]
    riders = await asyncio.gather(*(rider(server, rid) for rid in ids))
    try:
        await asyncio.gather(*(r.location(lat, lng) for r, (lat, lng) in zip(riders, points)))

        async def all_visible() -> list[dict]:
            found = await nearby(server, *origin, 5000, 500)
            mine = [f for f in found if f["id"] in set(ids)]
            return mine if len(mine) == 200 else []

        found = await eventually(all_visible)
        assert [f["id"] for f in found] == ids  # nearest first = path order
        for f, (lat, lng) in zip(found, points):
            expected = haversine(*origin, lat, lng)
            assert abs(f["distance_m"] - expected) <= max(0.01 * expected, 0.2)
            assert f["available"] is True and isinstance(f["ts"], int)
        # limit and radius cut the same ordered list
        assert [f["id"] for f in await nearby(server, *origin, 5000, 10) if f["id"] in ids] == ids[:10]
        within_1km = [f["id"] for f in await nearby(server, *origin, 1000, 500) if f["id"] in ids]
        assert within_1km == [rid for rid, p in zip(ids, points) if haversine(*origin, *p) <= 1000]
    finally:
        await asyncio.gather(*(r.close() for r in riders))


def _points_across_a_region_boundary() -> tuple[tuple[float, float], tuple[float, float]]:
    lat, lng = CENTRE
    start = h3.latlng_to_cell(lat, lng, 6)
    step = 0.0002
    while h3.latlng_to_cell(lat, lng + step, 6) == start:
        lng += step
    return (lat, lng), (lat, lng + step)


async def test_rider_crossing_a_region_boundary_is_found_on_both_sides(server: ServerProcess, redis_url: str, uid) -> None:  # type: ignore[no-untyped-def]
    a, b = _points_across_a_region_boundary()
    cell_a, cell_b = h3.latlng_to_cell(*a, 6), h3.latlng_to_cell(*b, 6)
    assert cell_a != cell_b
    rid = uid("crosser")
    async with rider_and_redis(server, redis_url, rid) as (r, red):
        await r.location(*a)
        assert await eventually(lambda: red.zscore(f"riders:{{{cell_a}}}", rid))
        await asyncio.sleep(1.0)
        await r.location(*b)
        assert await eventually(lambda: red.zscore(f"riders:{{{cell_b}}}", rid))
        # in exactly one region set now
        assert await red.zscore(f"riders:{{{cell_a}}}", rid) is None
        # found from deep inside either side
        for side in (a, b):
            lat, lng = side
            found = [f for f in await nearby(server, lat, lng, 3000) if f["id"] == rid]
            assert len(found) == 1
            assert abs(found[0]["lng"] - b[1]) < 1e-9


async def test_a_rider_on_two_sockets_moves_regions_cleanly_after_one_closes(server: ServerProcess, redis_url: str, uid) -> None:  # type: ignore[no-untyped-def]
    a, b = _points_across_a_region_boundary()
    cell_a, cell_b = h3.latlng_to_cell(*a, 6), h3.latlng_to_cell(*b, 6)
    rid = uid("twophones")
    first, second = await rider(server, rid), await rider(server, rid)
    red = connect(redis_url, decode_responses=True)
    try:
        await first.location(*a)
        assert await eventually(lambda: red.zscore(f"riders:{{{cell_a}}}", rid))
        await first.close()  # one phone closes its app; the other carries on and crosses the boundary
        await asyncio.sleep(1.0)
        await second.location(*b)
        assert await eventually(lambda: red.zscore(f"riders:{{{cell_b}}}", rid))
        assert await eventually(lambda: _not_member(red, f"riders:{{{cell_a}}}", rid), timeout=2)
        assert [f["id"] for f in await nearby(server, *b, 100) if f["id"] == rid] == [rid]
    finally:
        await first.close()
        await second.close()
        await red.aclose()


async def test_stale_riders_vanish_and_are_cleaned_up(start_server, redis_url: str, uid) -> None:  # type: ignore[no-untyped-def]
    srv = start_server({"TRACKER_STALE_AFTER_S": "1"})
    rid = uid("sleepy")
    lat, lng = 40.4168, -3.7038
    red = connect(redis_url, decode_responses=True)
    r = await rider(srv, rid)
    try:
        await r.location(lat, lng)
        assert await eventually(lambda: _ids(srv, lat, lng, rid))
        cell = h3.latlng_to_cell(lat, lng, 6)
        # silent for longer than the limit: gone from search, then from the geoset
        assert await eventually(lambda: _absent(srv, lat, lng, rid), timeout=5)
        assert await eventually(lambda: _not_member(red, f"riders:{{{cell}}}", rid), timeout=5)
        # a new fix brings it back
        await r.location(lat, lng + 0.0001)
        assert await eventually(lambda: _ids(srv, lat, lng, rid))
    finally:
        await r.close()
        await red.aclose()


async def test_a_rider_standing_still_stays_fresh_but_a_resent_fix_does_not(start_server, uid) -> None:  # type: ignore[no-untyped-def]
    srv = start_server({"TRACKER_STALE_AFTER_S": "1.5"})
    lat, lng = 40.4168, -3.7038
    waiting_id, resending_id = uid("waiting"), uid("resend")
    waiting, resending = await rider(srv, waiting_id), await rider(srv, resending_id)
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            now = int((await http.get(srv.base_url + "/healthz")).json()["ts"])
        for _ in range(8):  # 4 s at the same spot: fixes without ts, and one fix sent again and again
            await waiting.location(lat, lng)
            await resending.location(lat, lng + 0.0002, ts=now)
            await asyncio.sleep(0.5)
        found = {f["id"] for f in await nearby(srv, lat, lng, 1000)}
        assert waiting_id in found and resending_id not in found
    finally:
        await waiting.close()
        await resending.close()


async def test_a_rider_whose_app_closes_its_socket_leaves_at_once(server: ServerProcess, uid) -> None:  # type: ignore[no-untyped-def]
    lat, lng = 45.4642, 9.1900
    leaving_id, dropped_id, staying_id = uid("leaving"), uid("dropped"), uid("staying")
    riders = [await rider(server, rid) for rid in (leaving_id, dropped_id, staying_id)]
    leaving, dropped, staying = riders
    try:
        for i, r in enumerate(riders):
            await r.location(lat + 0.0001 * i, lng)
        mine = {leaving_id, dropped_id, staying_id}

        async def found() -> set[str]:
            return {f["id"] for f in await nearby(server, lat, lng, 1000)} & mine

        assert await eventually(lambda: _equals(found, mine))
        await leaving.close()  # the app closes its socket (1000): out of search and dispatch now
        dropped.ws.transport.abort()  # the network drops (no close frame): kept, as a phone comes back
        assert await eventually(lambda: _equals(found, {dropped_id, staying_id}), timeout=3)
        async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
            snapshot = (await http.get("/v1/ops/snapshot",
                                       headers={"Authorization": "Bearer " + server.token("operator", "ops")})).json()
        assert {r["id"] for r in snapshot["riders"]} & mine == {dropped_id, staying_id}  # the ops map agrees
        # back on a new socket: its next fix puts it back
        riders[0] = leaving = await rider(server, leaving_id)
        await leaving.location(lat, lng + 0.0001)
        assert await eventually(lambda: _equals(found, mine))
    finally:
        for r in riders:
            await r.close()


async def test_a_clean_close_counts_however_busy_the_socket_was(server: ServerProcess, uid) -> None:  # type: ignore[no-untyped-def]
    lat, lng = 45.4700, 9.2000
    for i in range(3):  # answers still on their way when the close comes must not hide it
        rid = uid(f"busy{i}")
        r = await rider(server, rid)
        await r.location(lat, lng + 0.0001 * i)
        assert await eventually(lambda: _ids(server, lat, lng, rid))
        for _ in range(5):
            await r.send({"type": "dance"})  # each answered with an error the app never reads
        await r.close()
        assert await eventually(lambda: _absent(server, lat, lng, rid), timeout=3), f"rider {i} still listed"


async def test_a_second_socket_that_sent_nothing_does_not_take_the_rider_away(server: ServerProcess, uid) -> None:  # type: ignore[no-untyped-def]
    lat, lng = 45.4750, 9.2050
    rid = uid("phoneandtablet")
    streaming = await rider(server, rid)
    try:
        await streaming.location(lat, lng)
        assert await eventually(lambda: _ids(server, lat, lng, rid))
        glance = await rider(server, rid)  # another device opens the app, looks, and closes it
        await glance.close()
        for _ in range(15):  # over 1.5 s: the server handles the close within milliseconds
            assert await _ids(server, lat, lng, rid), "the streaming socket's rider was taken away"
            await asyncio.sleep(0.1)
    finally:
        await streaming.close()


async def _equals(read, expected: set[str]) -> bool:  # type: ignore[no-untyped-def]
    return await read() == expected


async def _ids(srv: ServerProcess, lat: float, lng: float, rid: str) -> bool:
    return any(f["id"] == rid for f in await nearby(srv, lat, lng, 1000))


async def _absent(srv: ServerProcess, lat: float, lng: float, rid: str) -> bool:
    return not await _ids(srv, lat, lng, rid)


async def _not_member(red: aioredis.Redis, key: str, member: str) -> bool:
    return await red.zscore(key, member) is None


BAD_FRAMES = [
    ("{not json", "bad_json"),
    ('{"type": "location", "lat": NaN, "lng": 1}', "bad_json"),
    ('{"type": "location", "lat": 1e999, "lng": 1}', "bad_json"),  # orjson refuses infinity
    ('{"type": "location", "lat": 91, "lng": 1}', "bad_coordinates"),
    ('{"type": "location", "lat": 10, "lng": -180.5}', "bad_coordinates"),
    ('{"type": "location", "lat": "10", "lng": 1}', "bad_coordinates"),
    ('{"type": "location", "lat": true, "lng": 1}', "bad_coordinates"),
    ('{"type": "location", "lng": 1}', "bad_coordinates"),
    ('{"type": "location", "lat": 10, "lng": 1, "speed": 151}', "bad_message"),
    ('{"type": "location", "lat": 10, "lng": 1, "speed": "-1"}', "bad_message"),
    ('{"type": "location", "lat": 10, "lng": 1, "heading": "north"}', "bad_message"),
    ('{"type": "availability", "available": "yes"}', "bad_message"),
    ('{"type": "location", "lat": 10, "lng": 1, "ts": 1700000000000.5}', "bad_message"),  # a ts is whole ms
    ('{"type": "availability", "available": true, "shift_end": 1700000000000.5}', "bad_message"),
    ('{"type": "availability", "available": true, "shift_start": 1.5, "shift_end": 17e11}', "bad_message"),
    ('{"type": "teleport", "lat": 10, "lng": 1}', "unknown_type"),
    ('["location", 10, 1]', "bad_message"),
]


async def test_bad_frames_get_their_error_and_nothing_reaches_redis(server: ServerProcess, redis_url: str, uid) -> None:  # type: ignore[no-untyped-def]
    rid = uid("badrider")
    async with rider_and_redis(server, redis_url, rid) as (r, red):
        for raw, code in BAD_FRAMES:
            await r.ws.send(raw)
            frame = await r.recv()
            assert frame["type"] == "error" and frame["code"] == code, (raw, frame)
            await asyncio.sleep(0.25)  # stay under the rate limit
        await r.ws.send("x" * (1024 * 1024))
        assert (await r.recv())["code"] == "too_large"
        await r.ws.send(b"\x00\x01binary")
        assert (await r.recv())["code"] == "bad_message"
        await r.location(10, 1, ts=1_000)  # a client clock from 1970
        assert (await r.recv())["code"] == "clock_skew"
        await r.location(10, 1, ts=-1)  # the message names what was sent, not its float
        bad_ts = await r.recv()
        assert bad_ts["code"] == "bad_message" and bad_ts["message"].endswith("got -1"), bad_ts
        assert await red.exists(f"rider:{{{rid}}}") == 0
        # the socket still serves, and a good fix is stored
        await r.location(10.5, 1.5, speed=4.2, heading=90, accuracy=8)
        assert await eventually(lambda: red.exists(f"rider:{{{rid}}}"))
        stored = await red.hgetall(f"rider:{{{rid}}}")
        assert float(stored["lat"]) == 10.5 and float(stored["lng"]) == 1.5 and float(stored["speed"]) == 4.2


async def test_a_phone_that_does_not_know_its_speed_or_course_is_still_tracked(server: ServerProcess, redis_url: str, uid) -> None:  # type: ignore[no-untyped-def]
    # iOS reports -1 for a speed or course it does not know; the position itself is good.
    rid = uid("iphone")
    async with rider_and_redis(server, redis_url, rid) as (r, red):
        await r.location(12.0, 3.0, speed=-1, heading=-1, accuracy=5)
        assert await eventually(lambda: red.exists(f"rider:{{{rid}}}"))
        stored = await red.hgetall(f"rider:{{{rid}}}")
        assert (float(stored["lat"]), float(stored["lng"])) == (12.0, 3.0)
        assert "speed" not in stored and "heading" not in stored and float(stored["accuracy"]) == 5
        assert await _ids(server, 12.0, 3.0, rid)


async def test_teleport_is_refused_and_the_last_good_fix_kept(server: ServerProcess, redis_url: str, uid) -> None:  # type: ignore[no-untyped-def]
    rid = uid("jumpy")
    async with rider_and_redis(server, redis_url, rid) as (r, red):
        await r.location(45.0, 7.0)
        await asyncio.sleep(0.3)
        await r.location(46.0, 7.0)  # 111 km in a fraction of a second
        assert (await r.expect("error"))["code"] == "implausible_fix"
        await asyncio.sleep(0.3)
        await r.location(45.0001, 7.0)  # a plausible step from the last good fix

        async def moved_by_the_plausible_step() -> bool:
            stored = await red.hgetall(f"rider:{{{rid}}}")
            return "lat" in stored and float(stored["lat"]) == pytest.approx(45.0001)

        assert await eventually(moved_by_the_plausible_step)  # written by the batch, not the teleport


async def test_a_glitched_first_fix_does_not_lock_the_rider_out(server: ServerProcess, redis_url: str, uid) -> None:  # type: ignore[no-untyped-def]
    # A cold GPS's first fix near 0, 0, then the true position 5,800 km away: the true fixes
    # agree with each other, so after three of them the rider is where they say.
    rid = uid("coldgps")
    async with rider_and_redis(server, redis_url, rid) as (r, red):
        await r.location(0.0001, 0.0001)
        refused = 0
        for step in range(3):
            await asyncio.sleep(0.3)
            await r.location(52.52 + step * 0.00001, 13.45)
            if step < 2:
                frame = await r.expect("error")
                assert frame["code"] == "implausible_fix" and "3 such fixes in a row" in frame["message"]
                refused += 1
        assert refused == 2

        async def at_the_true_position() -> bool:
            stored = await red.hgetall(f"rider:{{{rid}}}")
            return "lat" in stored and float(stored["lat"]) == pytest.approx(52.52002)

        assert await eventually(at_the_true_position)
        assert await eventually(lambda: _ids(server, 52.52, 13.45, rid))
        await r.close()
        again = await rider(server, rid)  # a reconnect judges from the true position now
        await again.location(52.5201, 13.45)
        await asyncio.sleep(0.5)
        await again.location(0.0001, 0.0001)  # and one stray glitch is still refused
        assert (await again.expect("error"))["code"] == "implausible_fix"
        await again.close()


async def test_a_resent_glitch_or_a_gps_stuck_on_0_0_never_moves_the_rider(server: ServerProcess, redis_url: str, uid) -> None:  # type: ignore[no-untyped-def]
    # Three fixes that agree move a rider off a glitched last fix; refused fixes resent (a
    # phone's retries) and a GPS without a fix (0, 0 each second) are not three witnesses.
    rid = uid("resender")
    async with rider_and_redis(server, redis_url, rid) as (r, red):
        await r.location(0.0, 0.0)  # not even as the first fix
        assert (await r.expect("error"))["code"] == "implausible_fix"
        assert not await red.exists(f"rider:{{{rid}}}")
        await r.location(52.52, 13.45)
        assert await eventually(lambda: _ids(server, 52.52, 13.45, rid))
        glitch_ts = int(time.time() * 1000)
        for lat in (57.52, 57.53, 57.52, 57.53):  # 555 km north: two glitches, each sent twice
            await asyncio.sleep(0.3)
            await r.location(lat, 13.45, ts=glitch_ts)
            assert (await r.expect("error"))["code"] == "implausible_fix"
        for _ in range(4):
            await asyncio.sleep(0.3)
            await r.location(0.0, 0.0)
            assert (await r.expect("error"))["code"] == "implausible_fix"
        stored = await red.hgetall(f"rider:{{{rid}}}")
        assert (float(stored["lat"]), float(stored["lng"])) == (52.52, 13.45)
        await r.location(52.5201, 13.45)  # the true track goes on
        assert await eventually(lambda: _ids(server, 52.5201, 13.45, rid))


async def test_a_fix_resent_after_a_reconnect_is_recognised_as_the_same(server: ServerProcess, uid) -> None:  # type: ignore[no-untyped-def]
    """A phone resends its last fix (same position and ts) on a new socket: not taken as new. The
    rider left (its app closed the socket) and its resent old fix does not bring it back."""
    lat, lng, rid = 44.4268, 26.1025, uid("resender")
    r = await rider(server, rid)
    ts = int(time.time() * 1000)
    await r.location(lat, lng, ts=ts)
    assert await eventually(lambda: _ids(server, lat, lng, rid))
    await r.close()  # the app closes its socket: the rider has left
    assert await eventually(lambda: _absent(server, lat, lng, rid), timeout=3)
    again = await rider(server, rid)
    try:
        await again.location(lat, lng, ts=ts)  # the same fix, resent
        await asyncio.sleep(1.0)  # (a fix is written within a few hundred ms)
        assert await _absent(server, lat, lng, rid)
        await again.location(lat, lng, ts=ts + 1000)  # a new fix brings it back
        assert await eventually(lambda: _ids(server, lat, lng, rid))
    finally:
        await again.close()


async def test_a_rider_silent_past_the_stale_time_may_come_back_anywhere(start_server, uid) -> None:  # type: ignore[no-untyped-def]
    srv = start_server({"TRACKER_STALE_AFTER_S": "1"})
    rid = uid("traveller")
    first = await rider(srv, rid)
    await first.location(48.85, 2.35)
    assert await eventually(lambda: _ids(srv, 48.85, 2.35, rid))
    await first.close()
    await asyncio.sleep(1.5)  # silent past the stale time (by train, app closed)
    back = await rider(srv, rid)
    try:
        await back.location(52.52, 13.40)  # 880 km from the last fix, 1.5 s later
        assert await eventually(lambda: _ids(srv, 52.52, 13.40, rid))
    finally:
        await back.close()


async def test_a_rider_only_ever_moves_itself(server: ServerProcess, redis_url: str, uid) -> None:  # type: ignore[no-untyped-def]
    me, other = uid("me"), uid("other")
    async with rider_and_redis(server, redis_url, me) as (r, red):
        await r.send({"type": "location", "lat": 30.0, "lng": 31.0, "rider_id": other, "sub": other})
        assert await eventually(lambda: red.exists(f"rider:{{{me}}}"))
        assert await red.exists(f"rider:{{{other}}}") == 0


async def test_availability_shows_in_nearby(server: ServerProcess, uid) -> None:  # type: ignore[no-untyped-def]
    rid = uid("shy")
    r = await rider(server, rid)
    try:
        await r.location(35.6762, 139.6503)
        await r.availability(False)

        async def unavailable() -> bool:
            return any(f["id"] == rid and f["available"] is False for f in await nearby(server, 35.6762, 139.6503, 100))

        assert await eventually(unavailable)
        await r.availability(True)

        async def available() -> bool:
            return any(f["id"] == rid and f["available"] is True for f in await nearby(server, 35.6762, 139.6503, 100))

        assert await eventually(available)
    finally:
        await r.close()


async def test_flooding_rider_is_rate_limited_then_closed(server: ServerProcess, uid) -> None:  # type: ignore[no-untyped-def]
    r = await rider(server, uid("flood"))
    codes: list[str] = []
    try:
        for i in range(120):
            try:
                await r.location(1.0 + i * 1e-6, 1.0)
            except ConnectionClosed:
                break
        with pytest.raises(ConnectionClosed):
            while True:
                codes.append((await r.recv(timeout=5))["code"])
        assert r.ws.close_code == 1008
        assert "rate_limited" in (r.ws.close_reason or "")
        assert codes and set(codes) == {"rate_limited"}
    finally:
        await r.close()


async def test_nearby_http_answers_bad_queries_with_typed_errors(server: ServerProcess) -> None:
    op = {"Authorization": "Bearer " + server.token("operator", "ops")}
    cases = [
        ({"lng": 1}, op, 400, "bad_coordinates"),
        ({"lat": "x", "lng": 1}, op, 400, "bad_coordinates"),
        ({"lat": 95, "lng": 1}, op, 400, "bad_coordinates"),
        # float() would read these; a URL's number is plain ASCII
        ({"lat": "\u0663\u0665.68", "lng": 1}, op, 400, "bad_coordinates"),  # Arabic-Indic digits
        ({"lat": "3_5.68", "lng": 1}, op, 400, "bad_coordinates"),
        ({"lat": " 35.68 ", "lng": 1}, op, 400, "bad_coordinates"),
        ({"lat": "nan", "lng": 1}, op, 400, "bad_coordinates"),
        ({"lat": 1, "lng": 1, "radius_m": "1_000"}, op, 400, "bad_request"),
        ({"lat": 1, "lng": 1, "radius_m": "inf"}, op, 400, "bad_request"),
        ({"lat": 1, "lng": 1, "radius_m": -5}, op, 400, "bad_request"),
        ({"lat": 1, "lng": 1, "radius_m": 0.5}, op, 400, "bad_request"),  # at least 1 m, as documented
        ({"lat": 1, "lng": 1, "limit": "many"}, op, 400, "bad_request"),
        ({"lat": 1, "lng": 1, "limit": "2.5"}, op, 400, "bad_request"),  # not truncated to 2
        ({"lat": 1, "lng": 1, "limit": "1e2"}, op, 400, "bad_request"),
        ({"lat": 1, "lng": 1, "limit": "0"}, op, 400, "bad_request"),
        ({"lat": 1, "lng": 1}, {}, 401, "unauthorized"),
        ({"lat": 1, "lng": 1}, {"Authorization": "Bearer " + server.token("rider", "r1")}, 403, "forbidden"),
    ]
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as client:
        for params, headers, status, code in cases:
            resp = await client.get("/v1/riders/nearby", params=params, headers=headers)
            assert resp.status_code == status, (params, resp.text)
            assert orjson.loads(resp.content)["error"]["code"] == code
        plain = await client.get("/v1/riders/nearby", params={"lat": "+35.68", "lng": "-1.5e1", "radius_m": "2.5e3"},
                                 headers=op)
        assert plain.status_code == 200, plain.text
