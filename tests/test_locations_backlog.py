"""A rider's link that stalls for less than the keepalive holds the fixes sent meanwhile and
delivers them in one burst when it comes back: the rider stays connected and ends at its
newest position (the command-line rider does not pile fixes into a link that is not draining;
the server takes a backlog from any client without closing it, and keeps its newest fix),
while a client flooding fixes on purpose is still cut off. A real server, the real
``clients.rider`` process and a stalling TCP proxy (stall_proxy.py)."""
from __future__ import annotations

import asyncio
import re
import sys
import time
from pathlib import Path

import httpx
import orjson
import websockets

from tests.stall_proxy import StallProxy
from tracker.launcher import ServerProcess

ROOT = Path(__file__).resolve().parents[1]
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


class Lines:
    """The lines a child process writes on one stream, with when each came."""

    def __init__(self, stream: asyncio.StreamReader) -> None:
        self.lines: list[tuple[float, str]] = []
        self.task = asyncio.ensure_future(self._read(stream))

    async def _read(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            self.lines.append((time.monotonic(), line.decode(errors="replace").rstrip("\n")))

    def since(self, t: float) -> list[str]:
        return [line for at, line in self.lines if at >= t]

    def text(self) -> str:
        return "\n".join(line for _, line in self.lines)


async def test_the_command_line_rider_behind_a_link_that_stalls_stays_connected_at_its_newest_position(
        server: ServerProcess, uid) -> None:  # type: ignore[no-untyped-def]
    """3.3 fixes a second (under the 5 allowed), moving at 8 m/s; the link stalls 19 s, less than
    the keepalive, so neither side gives up on the socket. Once it flows again the client is
    still running on its first connection, nothing it sent was refused, and nearby search shows
    the position the client had when the link came back (or a later one), not one from the
    start of the stall."""
    rid, lat, lng = uid("stall"), 47.3, 8.5 + (hash(uid("x")) % 1000) * 1e-4
    proxy = StallProxy(server.port)
    port = await proxy.start()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "clients.rider", "--server", f"http://127.0.0.1:{port}", "--token",
        server.token("rider", rid), "--lat", str(lat), "--lng", str(lng), "--every", "0.3", "--move",
        "--speed", "8", "--heading", "90", cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    out, err = Lines(proc.stdout), Lines(proc.stderr)
    try:
        assert await eventually(lambda: nearby_rider(server, rid, lat, lng), 15), err.text()
        await asyncio.sleep(1)
        proxy.stall()
        await asyncio.sleep(19)
        assert proc.returncode is None, err.text()
        before = proxy.forwarded["up"]
        resumed = time.monotonic()
        proxy.resume()

        async def drained_note() -> list[str]:
            return [line for line in err.since(resumed) if "sent the newest" in line]

        notes = await eventually(drained_note, 5)
        assert proc.returncode is None and "closed the connection" not in err.text(), err.text()
        assert notes, err.text()
        sent = re.search(r"(-?\d+\.\d+),(-?\d+\.\d+)", notes[0])
        assert sent, notes
        newest_lng = float(sent.group(2))
        assert newest_lng - lng > 19 * 8 * 0.8 / (M_PER_DEG * 0.678), notes  # (it moved on while stalled)

        async def shown_at_newest() -> dict | None:
            found = await nearby_rider(server, rid, lat, lng)
            return found if found is not None and found["lng"] >= newest_lng - 2e-6 else None

        shown = await eventually(shown_at_newest, 3)
        assert shown is not None, (await nearby_rider(server, rid, lat, lng), newest_lng, err.text())
        await asyncio.sleep(3)  # it goes on streaming on the same socket
        assert proc.returncode is None, err.text()
        frames = [orjson.loads(line) for line in out.since(resumed) if line.startswith("{")]
        assert [f for f in frames if f.get("type") == "error"] == [], frames
        assert err.text().count("# connected to") == 1 and "connecting again" not in err.text(), err.text()
        later = await nearby_rider(server, rid, lat, lng)
        assert later is not None and later["lng"] > shown["lng"], (later, shown)
        # What the client wrote into the stalled link: about one fix (and a ping), not 50.
        assert proxy.forwarded["up"] - before < 2000, proxy.forwarded
    finally:
        if proc.returncode is None:
            proc.terminate()
        await asyncio.wait_for(proc.wait(), 10)
        await asyncio.gather(out.task, err.task)
        proxy.close()


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
