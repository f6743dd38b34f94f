"""A rider's link that stalls for less than the keepalive holds the fixes sent meanwhile and
delivers them in one burst when it comes back: the rider stays connected and ends at its
newest position (the server takes a backlog from any client without closing it, and keeps
its newest fix), while a client flooding fixes on purpose is still cut off. A real server
and a stalling TCP proxy (stall_proxy.py)."""
from __future__ import annotations

import asyncio
import re
import time

import httpx
import orjson
import websockets

from tests.stall_proxy import StallProxy
from tracker.launcher import ServerProcess

M_PER_DEG = 111_320.0


async def nearby_rider(server: ServerProcess, rid: str, lat: float, lng: float) -> dict | None:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as client:
        resp = await client.get("/v1/riders/nearby", params={"lat": lat, "lng": lng, "radius_m": 5000, "limit": 5000},
                                headers={"Authorization": "Bearer " + server.token("operator", "ops")})
    assert resp.status_code == 200, resp.text
    return next((r for r in resp.json()["riders"] if r["id"] == rid), None)


async def eventually(check, timeout: float):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result or time.monotonic() > deadline:
            return result
        await asyncio.sleep(0.1)


async def test_a_backlog_delivered_at_once_after_a_stall_keeps_the_socket_and_ends_at_its_newest_fix(
        server: ServerProcess, uid) -> None:  # type: ignore[no-untyped-def]
    """A client that writes every fix whatever the link does (4 a second, under the 5 allowed):
    the 68 it wrote while the link stalled reach the server back to back. Past the burst of 10
    they are refused ``rate_limited``, but the socket stays open (the silence explains the
    backlog) and the rider ends at the newest fix, not the 10th oldest."""
    rid, lat, lng = uid("backlog"), 47.4, 8.6 + (hash(uid("y")) % 1000) * 1e-4
    proxy = StallProxy(server.port)
    port = await proxy.start()
    try:
        async with websockets.connect(f"ws://127.0.0.1:{port}/v1/ws/rider",
                                      additional_headers={"Authorization": f"Bearer {server.token('rider', rid)}"}) as ws:
            assert orjson.loads(await ws.recv())["type"] == "route"
            sent: list[tuple[float, float]] = []
            loop = asyncio.get_running_loop()

            async def stream(seconds: float) -> None:
                until = loop.time() + seconds
                while loop.time() < until:
                    pos = (lat, lng + len(sent) * 2 / (M_PER_DEG * 0.675))  # 2 m a fix: 8 m/s
                    await ws.send(orjson.dumps({"type": "location", "lat": pos[0], "lng": pos[1]}).decode())
                    sent.append(pos)
                    await asyncio.sleep(0.25)

            await stream(1.5)
            proxy.stall()
            await stream(17)
            held = len(sent)
            proxy.resume()  # (and nothing more is sent: the newest is the last one of the backlog)

            async def at_newest() -> dict | None:
                found = await nearby_rider(server, rid, lat, lng)
                return found if found is not None and abs(found["lng"] - sent[-1][1]) < 1e-9 else None

            shown = await eventually(at_newest, 4)
            codes = []
            while True:
                try:
                    codes.append(orjson.loads(await asyncio.wait_for(ws.recv(), 1.0))["code"])
                except (asyncio.TimeoutError, TimeoutError):
                    break
            assert shown is not None, (await nearby_rider(server, rid, lat, lng), sent[-1], codes)
            assert ws.close_code is None, (ws.close_code, ws.close_reason, len(codes))
            assert held > 70 and set(codes) == {"rate_limited"} and len(codes) >= 45, (held, codes)
            await ws.send(orjson.dumps({"type": "location", "lat": lat, "lng": sent[-1][1] + 1e-5}).decode())

            async def moved_on() -> dict | None:
                found = await nearby_rider(server, rid, lat, lng)
                return found if found is not None and found["lng"] > sent[-1][1] else None

            assert await eventually(moved_on, 3)  # the socket still takes fixes
    finally:
        proxy.close()


async def _flood(ws, rate_hz: float, seconds: float, lat: float, lng: float) -> int:  # type: ignore[no-untyped-def]
    """Send fixes at ``rate_hz`` until the socket closes or ``seconds`` pass; how many went."""
    loop = asyncio.get_running_loop()
    start, n = loop.time(), 0
    try:
        while loop.time() - start < seconds:
            for _ in range(10):
                await ws.send(orjson.dumps({"type": "location", "lat": lat, "lng": lng + n * 1e-7}).decode())
                n += 1
            await asyncio.sleep(max(0.0, start + n / rate_hz - loop.time()))
    except websockets.ConnectionClosed:
        pass
    return n


async def _refusals_until_closed(ws) -> tuple[list[str], float]:  # type: ignore[no-untyped-def]
    """The error codes the socket got until it closed, and when it closed (monotonic)."""
    codes = []
    try:
        while True:
            frame = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
            if frame.get("type") == "error":
                codes.append(frame["code"])
    except websockets.ConnectionClosed:
        return codes, time.monotonic()


async def test_a_client_flooding_fixes_is_still_cut_off_and_told_when_to_come_back(
        server: ServerProcess, uid) -> None:  # type: ignore[no-untyped-def]
    """500 fixes a second: a burst of 10 is taken, 50 refusals later the socket is closed 1008,
    within a fraction of a second, with a reason that says when to reconnect; one that was
    silent first may be refused only as many more as its silence explains (5 a second of it)."""
    url = f"{server.ws_url}/v1/ws/rider"
    for silent_s in (0.0, 4.0):
        rid = uid(f"flood{silent_s:g}")
        async with websockets.connect(url, additional_headers={"Authorization": f"Bearer {server.token('rider', rid)}"},
                                      max_queue=None) as ws:
            assert orjson.loads(await ws.recv())["type"] == "route"
            if silent_s:
                await ws.send(orjson.dumps({"type": "location", "lat": 10.0, "lng": 10.0}).decode())
                await asyncio.sleep(silent_s)
            started = time.monotonic()
            reading = asyncio.ensure_future(_refusals_until_closed(ws))
            sent = await _flood(ws, 500, 5.0, 10.0, 10.0)
            codes, closed_at = await reading
        took = closed_at - started
        excused = 5 * silent_s
        assert ws.close_code == 1008, (ws.close_code, ws.close_reason)
        assert re.fullmatch(r"rate_limited: too many location fixes, connection closed; reconnect in \d+ s.*",
                            ws.close_reason), ws.close_reason
        assert set(codes) == {"rate_limited"}, codes
        assert 49 + excused - 2 <= len(codes) <= 50 + excused + 2, (silent_s, len(codes), sent)
        assert took < 1.5, (silent_s, took, sent)
        print(f"flood after {silent_s:g} s of silence: closed after {len(codes)} refusals, {took:.2f} s, "
              f"{sent} fixes written by the client")
