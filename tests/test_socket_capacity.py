"""A process holds no more WebSockets than its open files leave room for: past that, new
sockets are refused (1013 over_capacity) and Redis keeps the files it needs."""
from __future__ import annotations

import asyncio
import re
import resource
import time
from collections import Counter

import httpx
import orjson
import websockets
from websockets.asyncio.client import ClientConnection

from tests.test_locations import eventually, nearby
from tracker.launcher import ServerProcess

LAT, LNG = 48.8566, 2.3522


async def _open_socket(srv: ServerProcess, sub: str, role: str = "rider") -> tuple[ClientConnection | None, str]:
    """Open a rider's socket (an operator's: a merchant feed); return (it, "open") when served,
    (None, "<code> <reason>") when refused.

    A rider's socket starts with its ``route``; an operator's merchant feed of a kitchen with no
    orders says nothing, so it counts as served when it is still open after a second."""
    path = "/v1/ws/rider" if role == "rider" else "/v1/ws/merchant?merchant_id=m1"
    ws = await websockets.connect(srv.ws_url + path,
                                  additional_headers={"Authorization": f"Bearer {srv.token(role, sub)}"})
    try:
        first = orjson.loads(await asyncio.wait_for(ws.recv(), 15 if role == "rider" else 1))
    except websockets.ConnectionClosed:
        return None, f"{ws.close_code} {ws.close_reason}"
    except TimeoutError:
        assert role != "rider", "a rider's socket said nothing"
        return ws, "open"
    assert first["type"] == "route", first
    return ws, "open"


async def _http_flood(srv: ServerProcess, path: str, *, clients: int, each: int) -> Counter[str]:
    """``clients`` connections at once, each asking ``path`` ``each`` times; a tally of the answers."""
    answers: Counter[str] = Counter()
    headers = {"Authorization": f"Bearer {srv.token('operator', 'ops')}"}

    async def client() -> None:
        async with httpx.AsyncClient(base_url=srv.base_url, timeout=15, headers=headers) as http:
            for _ in range(each):
                try:
                    resp = await http.get(path)
                except httpx.TransportError:  # (closed by the server as it answered 503)
                    answers["dropped"] += 1
                    continue
                code = resp.json()["error"]["code"] if resp.status_code != 200 else ""
                answers[f"{resp.status_code} {code}".strip()] += 1

    await asyncio.gather(*(client() for _ in range(clients)))
    return answers


def _readyz(srv: ServerProcess) -> dict:
    resp = httpx.get(srv.base_url + "/readyz", timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.json()


async def test_a_server_short_of_files_refuses_sockets_and_keeps_redis_working(start_server, uid) -> None:  # type: ignore[no-untyped-def]
    srv = start_server(open_files=(200, 200))  # a small machine: 200 open files, no more to be had
    most = _readyz(srv)["websockets"]["max"]
    assert 0 < most < 200, most  # sized from the files it has, not the default

    prefix = uid("r")
    opened = await asyncio.gather(*(_open_socket(srv, f"{prefix}-{i}") for i in range(most + 20)))
    held: list[ClientConnection] = [ws for ws, how in opened if ws is not None]
    refusals = {how for ws, how in opened if ws is None}
    try:
        assert len(held) == most, (len(held), most)
        assert len(refusals) == 1 and refusals.pop().startswith("1013 over_capacity: "), refusals
        # Every socket it kept is served, and Redis had the files it needed: the fixes land.
        for i, ws in enumerate(held):
            await ws.send(orjson.dumps({"type": "location", "lat": LAT + i * 1e-5, "lng": LNG,
                                        "ts": int(time.time() * 1000)}).decode())

        async def all_found() -> bool:
            return len([r for r in await nearby(srv, LAT, LNG, 2000, 500) if r["id"].startswith(prefix)]) == most

        assert await eventually(all_found, timeout=15)
        # A flood of HTTP clients on the full server: each is answered, or turned away at once
        # (503 over_capacity) before it can take the files Redis needs.
        answers = await _http_flood(srv, f"/v1/riders/nearby?lat={LAT}&lng={LNG}&radius_m=500", clients=60, each=5)
        assert answers.keys() <= {"200", "503 over_capacity", "dropped"} and answers["200"] > 0, answers
        assert answers["503 over_capacity"] > 0, answers  # (riders + 60 clients are more than it holds)
        ready = _readyz(srv)
        assert ready["degraded"] == [] and ready["websockets"] == {"open": most, "max": most, "operators": 0}, ready
        # An operator still gets in on a full server (the ops page must work when it matters).
        ops_ws, how = await _open_socket(srv, "ops", role="operator")
        assert how == "open"
        await ops_ws.close()
        # One rider leaves: room for another, once the server has let go of it.
        await held.pop().close()
        for _ in range(50):
            again, how = await _open_socket(srv, f"{prefix}-late")
            if again is not None:
                held.append(again)
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError(f"no room after a rider left: {how}")
    finally:
        await asyncio.gather(*(ws.close() for ws in held))


async def test_the_server_raises_its_soft_open_file_limit_to_the_hard_one(start_server) -> None:  # type: ignore[no-untyped-def]
    hard = min(resource.getrlimit(resource.RLIMIT_NOFILE)[1], 4000)  # (a child may not get more than we have)
    assert hard >= 1000, f"this machine's hard open-file limit ({hard}) is too low to show it"
    srv = start_server(open_files=(100, hard))
    assert _readyz(srv)["websockets"]["max"] > 100  # more sockets than 100 files could ever hold


async def test_a_set_socket_limit_is_kept_and_counted_in_readyz(start_server, uid) -> None:  # type: ignore[no-untyped-def]
    srv = start_server({"TRACKER_MAX_SOCKETS": "2"})
    ops_ws, how = await _open_socket(srv, "ops", role="operator")  # not counted: two riders still get in
    assert how == "open"
    first = [await _open_socket(srv, uid("r")) for _ in range(3)]
    try:
        assert [how for _, how in first][:2] == ["open", "open"] and first[2][1].startswith("1013 over_capacity: ")
        assert _readyz(srv)["websockets"] == {"open": 2, "max": 2, "operators": 1}
        metrics = httpx.get(srv.base_url + "/metrics", timeout=10).text
        assert 'tracker_websocket_refusals_total{reason="over_capacity"} 1.0' in metrics, metrics
        await ops_ws.close()
        for _ in range(50):  # the operator's socket is forgotten once the server sees it close
            if _readyz(srv)["websockets"]["operators"] == 0:
                break
            await asyncio.sleep(0.1)
        assert _readyz(srv)["websockets"] == {"open": 2, "max": 2, "operators": 0}
    finally:
        await asyncio.gather(*(ws.close() for ws, _ in first if ws is not None))


async def test_connections_beyond_the_limit_are_answered_503_at_once(start_server) -> None:  # type: ignore[no-untyped-def]
    srv = start_server(open_files=(200, 200))  # as many WebSockets as the files allow, and a few more connections
    idle = [await asyncio.open_connection("127.0.0.1", srv.port) for _ in range(200)]  # connect, send nothing
    try:
        async def first_line(reader: asyncio.StreamReader) -> bytes:
            try:
                return await asyncio.wait_for(reader.readline(), 2)  # (the header timeout is 10 s)
            except TimeoutError:
                return b""

        lines = await asyncio.gather(*(first_line(reader) for reader, _ in idle))
        turned_away = [line for line in lines if line]
        assert turned_away and all(line.startswith(b"HTTP/1.1 503") for line in turned_away), lines
        assert len(turned_away) < len(idle)  # the first ones were let in (to wait for their headers)
        # A client still sending when it is turned away (a POST's body) gets the answer too, not a reset.
        async with httpx.AsyncClient(base_url=srv.base_url, timeout=10) as http:
            resp = await http.post("/v1/orders", content=b"x" * 5000,
                                   headers={"Authorization": f"Bearer {srv.token('operator', 'ops')}"})
        assert resp.status_code == 503 and resp.json()["error"]["code"] == "over_capacity", resp.text
    finally:
        for _, writer in idle:
            writer.close()
    for _ in range(50):  # their files given back, the server answers again
        try:
            if httpx.get(srv.base_url + "/readyz", timeout=5).status_code == 200:
                break
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("the server did not answer again once the idle connections closed")
    metrics = httpx.get(srv.base_url + "/metrics", timeout=10).text
    counted = re.search(r'tracker_websocket_refusals_total\{reason="connections"\} (\d+)', metrics)
    assert counted and int(counted.group(1)) >= len(turned_away), metrics
