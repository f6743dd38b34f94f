"""A process holds no more WebSockets than its open files leave room for: past that, new
sockets are refused (1013 over_capacity) and Redis keeps the files it needs."""
from __future__ import annotations

import asyncio
import resource
import time

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
        await ops_ws.close()
        for _ in range(50):  # the operator's socket is forgotten once the server sees it close
            if _readyz(srv)["websockets"]["operators"] == 0:
                break
            await asyncio.sleep(0.1)
        assert _readyz(srv)["websockets"] == {"open": 2, "max": 2, "operators": 0}
    finally:
        await asyncio.gather(*(ws.close() for ws, _ in first if ws is not None))
