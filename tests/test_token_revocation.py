"""An operator revokes a subject's tokens: refused on every process, open sockets closed, new tokens work."""
from __future__ import annotations

import asyncio
import json
import time

import httpx
import jwt
import pytest
import websockets

from clients.rider import RiderClient
from tests.orders_helpers import PICKUP, Ops
from tests.test_dispatch_live import FAST, near_and_far, offered, rider_near_restaurant
from tests.test_locations import _absent, _ids, eventually, nearby, rider
from tests.test_pubsub import kill_pubsub_connections
from tracker.launcher import ServerProcess
from tracker.redis_client import connect


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _revoke(server: ServerProcess, role: str, sub: str, *, as_token: str | None = None) -> httpx.Response:
    token = as_token or server.token("operator", "ops")
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10.0) as http:
        return await http.post("/v1/tokens/revoke", json={"role": role, "sub": sub}, headers=_bearer(token))


async def _closed_with(ws: websockets.ClientConnection, timeout: float = 10.0) -> websockets.frames.Close:
    """Read until the server closes the socket; its close frame."""
    with pytest.raises(websockets.ConnectionClosed) as closed:
        async with asyncio.timeout(timeout):
            while True:
                await ws.recv()
    assert closed.value.rcvd is not None, closed.value
    return closed.value.rcvd


async def _refused_at_handshake(server: ServerProcess, path: str, token: str) -> websockets.frames.Close:
    async with websockets.connect(f"{server.ws_url}{path}", additional_headers=_bearer(token)) as ws:
        return await _closed_with(ws)


async def test_a_revoked_riders_sockets_close_on_every_process_and_a_new_token_works(start_server, uid) -> None:  # type: ignore[no-untyped-def]
    a, b = start_server(), start_server()
    rider, other = uid("r"), uid("r2")
    old = a.token("rider", rider)
    on_b = await websockets.connect(f"{b.ws_url}/v1/ws/rider", additional_headers=_bearer(old))
    bystander = await websockets.connect(f"{b.ws_url}/v1/ws/rider", additional_headers=_bearer(b.token("rider", other)))
    for ws in (on_b, bystander):
        assert '"route"' in await asyncio.wait_for(ws.recv(), 10)

    answer = await _revoke(a, "rider", rider)
    assert answer.status_code == 200, answer.text
    until = answer.json()["revoked_until"]
    assert answer.json() == {"role": "rider", "sub": rider, "revoked_until": until}
    assert until >= jwt.decode(old, options={"verify_signature": False})["iat"] * 1000

    close = await _closed_with(on_b)  # on the other process, at once
    assert (close.code, close.reason) == (1008, "unauthorized: token revoked: ask for a new one"), close
    await asyncio.wait_for(await bystander.ping(), 5)  # another rider's socket stays open
    for server in (a, b):
        close = await _refused_at_handshake(server, "/v1/ws/rider", old)
        assert close.code == 1008 and close.reason.startswith("unauthorized: token revoked"), close

    while time.time() < until / 1000 + 1:  # a token issued after it (past the issuers' clock margin) works
        await asyncio.sleep(0.05)
    async with websockets.connect(f"{b.ws_url}/v1/ws/rider", additional_headers=_bearer(a.token("rider", rider))) as ws:
        assert '"route"' in await asyncio.wait_for(ws.recv(), 10)
    await bystander.close()


async def test_revocations_outlive_a_restart_and_refuse_http_too(start_server, uid) -> None:  # type: ignore[no-untyped-def]
    first = start_server()
    order, merchant = uid("o"), uid("m")
    ops = first.token("operator", "ops")
    body = {"id": order, "merchant_id": merchant, "pickup": {"lat": 52.52, "lng": 13.405},
            "dropoff": {"lat": 52.53, "lng": 13.42}}
    async with httpx.AsyncClient(base_url=first.base_url, timeout=10.0) as http:
        assert (await http.post("/v1/orders", json=body, headers=_bearer(ops))).status_code == 201
    leaked = first.token("customer", order)
    kitchen = first.token("merchant", merchant)
    assert (await _revoke(first, "customer", order)).status_code == 200
    first.stop()

    second = start_server()
    async with httpx.AsyncClient(base_url=second.base_url, timeout=10.0) as http:
        refused = await http.get(f"/v1/orders/{order}", headers=_bearer(leaked))
        assert refused.status_code == 401, refused.text
        assert refused.json()["error"] == {"code": "unauthorized", "message": "token revoked: ask for a new one"}
        kept = await http.get(f"/v1/orders/{order}", headers=_bearer(kitchen))  # only that subject's tokens
        assert kept.status_code == 200, kept.text
    close = await _refused_at_handshake(second, f"/v1/ws/customer?order_id={order}", leaked)
    assert close.code == 1008 and "token revoked" in close.reason, close


async def test_only_operators_revoke_and_bad_requests_are_named(server: ServerProcess, uid) -> None:
    rider = uid("r")
    forbidden = await _revoke(server, "rider", rider, as_token=server.token("rider", rider))
    assert forbidden.status_code == 403 and forbidden.json()["error"]["code"] == "forbidden", forbidden.text
    for role, sub in (("driver", rider), ("rider", "no spaces"), ("rider", None)):
        bad = await _revoke(server, role, sub)  # type: ignore[arg-type]
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "bad_message", bad.text
    # none of the refused calls revoked anything: the rider's token still opens a socket
    async with websockets.connect(f"{server.ws_url}/v1/ws/rider", additional_headers=_bearer(server.token("rider", rider))) as ws:
        assert '"route"' in await asyncio.wait_for(ws.recv(), 10)


async def test_a_revoked_rider_leaves_nearby_search_at_once(server: ServerProcess, uid) -> None:  # type: ignore[no-untyped-def]
    lat, lng = 45.4800, 9.2100
    revoked_id, staying_id = uid("fired"), uid("staying")
    revoked, staying = await rider(server, revoked_id), await rider(server, staying_id)
    try:
        await revoked.location(lat, lng)
        await staying.location(lat, lng + 0.0001)
        assert await eventually(lambda: _ids(server, lat, lng, revoked_id))
        assert await eventually(lambda: _ids(server, lat, lng, staying_id))
        assert (await _revoke(server, "rider", revoked_id)).status_code == 200
        # out of search (and so of dispatch) now, not when its last fix goes stale (30 s)
        assert await eventually(lambda: _absent(server, lat, lng, revoked_id), timeout=3)
        assert await _ids(server, lat, lng, staying_id)
    finally:
        await revoked.close()
        await staying.close()


async def test_tokens_without_iat_and_operators_tokens_are_revoked_too(start_server, uid) -> None:  # type: ignore[no-untyped-def]
    srv = start_server()
    rider, boss = uid("r"), uid("boss")
    no_iat = jwt.encode({"role": "rider", "sub": rider, "exp": int(time.time()) + 3600}, srv.secret, algorithm="HS256")
    async with websockets.connect(f"{srv.ws_url}/v1/ws/rider", additional_headers=_bearer(no_iat)) as ws:
        assert '"route"' in await asyncio.wait_for(ws.recv(), 10)  # accepted while nothing is revoked
    assert (await _revoke(srv, "rider", rider)).status_code == 200
    close = await _refused_at_handshake(srv, "/v1/ws/rider", no_iat)  # cannot show it is newer
    assert close.code == 1008 and "token revoked" in close.reason, close

    fired = srv.token("operator", boss)
    assert (await _revoke(srv, "operator", boss)).status_code == 200  # by another operator
    async with httpx.AsyncClient(base_url=srv.base_url, timeout=10.0) as http:
        refused = await http.get("/v1/ops/snapshot", headers=_bearer(fired))
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "unauthorized", refused.text
    denied = await _revoke(srv, "rider", uid("r2"), as_token=fired)
    assert denied.status_code == 401, denied.text


async def test_a_revoked_rider_whose_phone_is_gone_leaves_nearby_search_at_once(server: ServerProcess, uid) -> None:  # type: ignore[no-untyped-def]
    lat, lng = 45.4850, 9.2150
    lost = uid("lostphone")
    phone = await rider(server, lost)
    await phone.location(lat, lng)
    assert await eventually(lambda: _ids(server, lat, lng, lost))
    phone.ws.transport.abort()  # the phone is gone: no close frame, the rider would stay 30 s
    await asyncio.sleep(0.3)
    assert (await _revoke(server, "rider", lost)).status_code == 200
    assert await eventually(lambda: _absent(server, lat, lng, lost), timeout=3)


async def test_a_process_whose_pubsub_was_cut_still_learns_of_a_revocation(start_server, own_redis, uid) -> None:  # type: ignore[no-untyped-def]
    a, b = start_server(redis=own_redis), start_server(redis=own_redis)
    rider = uid("r")
    token = a.token("rider", rider)
    on_b = await websockets.connect(f"{b.ws_url}/v1/ws/rider", additional_headers=_bearer(token))
    assert '"route"' in await asyncio.wait_for(on_b.recv(), 10)
    client = connect(own_redis)
    try:
        await kill_pubsub_connections(client)  # both processes' listeners drop and come back
        assert (await _revoke(a, "rider", rider)).status_code == 200  # while they may be away
    finally:
        await client.aclose()
    close = await _closed_with(on_b, timeout=15)  # b reads the whole list again when back
    assert close.code == 1008 and "token revoked" in close.reason, close
    refused = await _refused_at_handshake(b, "/v1/ws/rider", token)
    assert refused.code == 1008, refused


@pytest.mark.parametrize("body", [{"role": [], "sub": "r1"}, {"role": {"a": 1}, "sub": "r1"}, {"role": 7, "sub": "r1"},
                                  {"role": "rider", "sub": ["r1"]}, {"sub": "r1"}])
async def test_a_malformed_revocation_is_a_bad_message_not_a_crash(server: ServerProcess, body: dict) -> None:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10.0) as http:
        answer = await http.post("/v1/tokens/revoke", json=body, headers=_bearer(server.token("operator", "ops")))
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "bad_message", answer.text


async def test_a_revoked_riders_open_offer_goes_to_another_rider_at_once(own_redis, start_server, uid) -> None:  # type: ignore[no-untyped-def]
    srv = start_server({**FAST, "TRACKER_OFFER_TIMEOUT_S": "60"}, redis=own_redis)  # offers wait a minute
    ops = Ops(srv)
    oid, mid, near_id, far_id = uid("o"), uid("m"), uid("near"), uid("far")
    near, far = await near_and_far(srv, near_id, far_id)
    try:
        first = await offered(ops, near, oid, mid)  # the nearer rider is asked first
        assert (await _revoke(srv, "rider", near_id)).status_code == 200
        again = await far.expect("offer", timeout=10)  # not after the minute the first offer had
        assert [o["order_id"] for o in again["orders"]] == [oid] and again["offer_id"] != first["offer_id"]
        await far.accept(again["offer_id"])
        await far.expect("assigned")
        assert (await ops.get(oid))["rider_id"] == far_id
    finally:
        await near.close()
        await far.close()
        await ops.close()


async def _stream_fixes(courier: RiderClient, lat: float, lng: float) -> None:
    """Send a fix every 0.25 s (within the 5 a second one rider may send a process) until the server closes the socket."""
    try:
        while True:
            lat += 0.000001  # (moving: each fix is a new one)
            await courier.location(lat, lng)
            await asyncio.sleep(0.25)
    except websockets.ConnectionClosed:
        pass


async def test_revoked_riders_streaming_on_two_processes_leave_search_and_are_offered_nothing(own_redis, start_server, uid) -> None:  # type: ignore[no-untyped-def]
    """Fixes a rider's sockets send while the revocation travels (queued in a process's writer,
    or taken by a process that has not heard of it yet) do not bring the revoked rider back."""
    a, b = (start_server({**FAST, "TRACKER_OFFER_TIMEOUT_S": "60"}, redis=own_redis) for _ in range(2))
    ops = Ops(a)
    lat, lng = PICKUP["lat"] + 0.001, PICKUP["lng"]
    fired = [uid(f"fired{i}") for i in range(12)]
    keeper_id, oid, mid = uid("keeper"), uid("o"), uid("m")
    sockets = [await RiderClient.connect(srv.ws_url, srv.token("rider", rid)) for rid in fired for srv in (a, b)]
    streams = [asyncio.create_task(_stream_fixes(s, lat + k * 0.00001, lng)) for k, s in enumerate(sockets)]
    keeper = await rider_near_restaurant(a, keeper_id, 0.02)  # farther off: dispatch asks the fired riders first
    try:
        assert await eventually(lambda: _all_listed(a, lat, lng, fired), timeout=10)
        answers = await asyncio.gather(*(_revoke(a, "rider", rid) for rid in fired))
        assert all(answer.status_code == 200 for answer in answers), answers
        async with asyncio.timeout(10):
            await asyncio.gather(*streams)  # every socket closed, on both processes
        if not await eventually(lambda: _none_listed(a, lat, lng, fired), timeout=5):
            pytest.fail(f"revoked riders still in nearby search: {sorted(await _listed(a, lat, lng, fired))}")
        # ...and dispatch asks the one rider left, not a revoked one (whose offer would wait a minute)
        offer = await offered(ops, keeper, oid, mid)
        assert [o["order_id"] for o in offer["orders"]] == [oid]
    finally:
        for task in streams:
            task.cancel()
        await asyncio.gather(*(s.close() for s in sockets), keeper.close(), return_exceptions=True)
        await ops.close()


async def _listed(srv: ServerProcess, lat: float, lng: float, ids: list[str]) -> set[str]:
    return {r["id"] for r in await nearby(srv, lat, lng, 1000)} & set(ids)


async def _all_listed(srv: ServerProcess, lat: float, lng: float, ids: list[str]) -> bool:
    return await _listed(srv, lat, lng, ids) == set(ids)


async def _none_listed(srv: ServerProcess, lat: float, lng: float, ids: list[str]) -> bool:
    return not await _listed(srv, lat, lng, ids)


async def test_the_log_names_the_operator_who_revoked(start_server, uid) -> None:  # type: ignore[no-untyped-def]
    """Revoking is an operator's act on someone's access: the line says who, as a pause's does."""
    srv = start_server({"TRACKER_LOG_FORMAT": "json"})
    order, boss = uid("o"), uid("boss")
    assert (await _revoke(srv, "customer", order, as_token=srv.token("operator", boss))).status_code == 200

    async def logged() -> list[dict]:
        lines = [json.loads(line) for line in srv.log_path.read_text().splitlines() if line.startswith("{")]
        return [line for line in lines if f"tokens of customer {order} issued up to" in line.get("msg", "")]

    lines = await eventually(logged)
    assert [line.get("by") for line in lines] == [boss], lines
