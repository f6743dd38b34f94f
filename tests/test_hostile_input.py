"""Input that once broke the server for everybody: each must get a typed answer and harm nobody else."""
from __future__ import annotations

import asyncio
import re
import socket
import threading
import time
from typing import Awaitable, Callable

import httpx
import orjson
import pytest
import redis
import uvicorn
import websockets

from clients.jsonsocket import JsonSocket
from tests.orders_helpers import Ops, merchant, metric, platform_kitchen, rider
from tests.test_dispatch_live import FAST, offered, rider_near_restaurant
from tests.raw_http import read_response
from tests.test_locations import eventually, nearby
from tracker.geo import dispatch_region, region_cell
from tracker.http.head_timeout import head_timeout_protocol
from tracker.launcher import ServerProcess

OSLO = {"lat": 59.91, "lng": 10.75}


def _stranger(url: str) -> redis.Redis | redis.RedisCluster:
    """A plain client of the server's Redis (one server or a cluster), as someone else's code would hold."""
    client = redis.Redis.from_url(url)
    if client.info("cluster").get("cluster_enabled"):
        client.close()
        return redis.RedisCluster.from_url(url)
    return client


def _plant(url: str, key: str, value: str) -> None:
    """Write ``key`` straight into the server's Redis, as a stranger would."""
    client = _stranger(url)
    client.set(key, value)
    client.close()


async def test_a_fix_near_the_pole_is_kept_and_does_not_stop_anyone_elses(server: ServerProcess, uid) -> None:  # type: ignore[no-untyped-def]
    polar, city = await rider(server, uid("polar")), await rider(server, uid("city"))
    try:
        await polar.location(89.0, 0.0)  # valid WGS84, beyond what a Redis geoset holds
        await asyncio.sleep(0.2)
        await city.location(52.52, 13.405)

        async def city_found() -> bool:
            return any(r["id"] == uid("city") for r in await nearby(server, 52.52, 13.405, 500))

        assert await eventually(city_found), "the polar fix stopped every later location write"
        near_pole = await nearby(server, 89.0, 0.0, 1000)
        assert [r["id"] for r in near_pole] == [uid("polar")] and near_pole[0]["lat"] == 89.0
        async with httpx.AsyncClient(base_url=server.base_url) as http:
            op = {"Authorization": "Bearer " + server.token("operator", "ops")}
            resp = await http.get("/v1/riders/nearby", params={"lat": 85.3, "lng": 0, "radius_m": 50000}, headers=op)
            assert resp.status_code == 200 and resp.json() == {"riders": []}, resp.text
            assert (await http.get("/readyz")).status_code == 200
    finally:
        await polar.close()
        await city.close()


async def test_fixes_redis_refuses_are_dropped_and_everyone_elses_written(own_redis, start_server, uid) -> None:  # type: ignore[no-untyped-def]
    srv = start_server(redis=own_redis)
    # Oslo's region geoset is not a geoset (a foreign key in a shared Redis): Redis refuses its writes.
    _plant(own_redis, "riders:{%s}" % region_cell(OSLO["lat"], OSLO["lng"]), "not a geoset")
    oslo, good = await rider(srv, uid("oslo")), await rider(srv, uid("good"))
    try:
        await oslo.location(OSLO["lat"], OSLO["lng"])
        await good.location(52.52, 13.405)
        assert await eventually(lambda: _found_at(srv, uid("good"), 52.52))
        await asyncio.sleep(0.3)
        await good.location(52.5201, 13.405)  # later fixes keep flowing
        assert await eventually(lambda: _found_at(srv, uid("good"), 52.5201))
        async with httpx.AsyncClient(base_url=srv.base_url) as http:
            assert metric((await http.get("/metrics")).text, "tracker_fixes_refused_total") == 1
            ready = await http.get("/readyz")
            writer = next(t for t in ready.json()["tasks"] if t["name"] == "fix-writer")
            assert ready.status_code == 200 and writer["running"] and writer["failures"] == 0
        assert "location fix refused by Redis and dropped" in srv.log_path.read_text()
    finally:
        await oslo.close()
        await good.close()


async def _found_at(srv: ServerProcess, rider_id: str, lat: float) -> bool:
    return any(r["id"] == rider_id and r["lat"] == lat for r in await nearby(srv, 52.52, 13.405, 1000))


async def test_fixes_redis_cannot_write_now_wait_and_are_written_later(own_redis, start_server, uid) -> None:  # type: ignore[no-untyped-def]
    srv = start_server(redis=own_redis)
    courier = await rider(srv, uid("r"))
    admin = _stranger(own_redis)
    config = {"target_nodes": redis.RedisCluster.ALL_NODES} if isinstance(admin, redis.RedisCluster) else {}
    try:
        admin.config_set("maxmemory", "1", **config)  # out of memory: every write is refused for now
        await courier.location(52.52, 13.405)
        await asyncio.sleep(1.5)
        assert not await _found_at(srv, uid("r"), 52.52)
        admin.config_set("maxmemory", "0", **config)
        assert await eventually(lambda: _found_at(srv, uid("r"), 52.52), timeout=20), "the fix was lost"
        async with httpx.AsyncClient(base_url=srv.base_url) as http:
            text = (await http.get("/metrics")).text
            assert metric(text, "tracker_fixes_refused_total") == 0
            assert metric(text, 'tracker_background_task_failures_total{task="fix-writer"}') >= 1
    finally:
        admin.config_set("maxmemory", "0", **config)
        admin.close()
        await courier.close()


async def test_one_failing_dispatch_region_does_not_stop_the_others(own_redis, start_server, uid) -> None:  # type: ignore[no-untyped-def]
    berlin_region = dispatch_region(52.52, 13.405)
    oslo_region = dispatch_region(OSLO["lat"], OSLO["lng"])
    assert oslo_region < berlin_region  # planned first: its failure comes before Berlin's round
    _plant(own_redis, f"demand:{{{oslo_region}}}:orders", "corrupt")  # its rounds now fail
    stranger = _stranger(own_redis)  # and one entry of Berlin's demand that is not a position: left out
    stranger.hset(f"demand:{{{berlin_region}}}:orders", "stranger", "3")
    stranger.hset(f"demand:{{{berlin_region}}}:sites", "stranger", "not-a-position")
    stranger.close()
    srv = start_server(FAST, redis=own_redis)
    ops = Ops(srv)
    mid, rid = uid("m"), uid("r")
    courier = await rider_near_restaurant(srv, rid, 0.002)
    oslo_rider = await rider(srv, uid("oslo-r"))
    try:
        await oslo_rider.location(OSLO["lat"], OSLO["lng"])
        resp = await ops.client.post("/v1/orders", json={"id": uid("oslo"), "merchant_id": mid, "pickup": OSLO,
                                                         "dropoff": OSLO})
        assert resp.status_code == 201, resp.text
        kitchen = await merchant(srv, mid)
        await kitchen.confirm(uid("oslo"))
        await kitchen.close()
        offer = await offered(ops, courier, uid("berlin"), mid)  # Berlin is dispatched all the same
        assert [o["order_id"] for o in offer["orders"]] == [uid("berlin")]
        ready = (await ops.client.get("/readyz")).json()
        loop = next(t for t in ready["tasks"] if t["name"] == "dispatch-loop")
        assert loop["running"] and loop["failures"] >= 1 and "WRONGTYPE" in loop["last_error"], loop

        async def failed_rounds() -> int:
            ready = (await ops.client.get("/readyz")).json()
            return next(t for t in ready["tasks"] if t["name"] == "dispatch-loop")["failures"]

        assert await eventually(lambda: _at_least(failed_rounds, 8), timeout=20), await failed_rounds()
        log_text = srv.log_path.read_text(errors="replace")
        # Oslo fails every round, counted each time, but its traceback is written once, not a round.
        assert log_text.count("dispatch-loop: one unit failed") == 1, srv.log_tail(80)
        assert 1 <= log_text.count("demand entry left out") <= 2, srv.log_tail(80)  # (throttled: 10 s)
    finally:
        await courier.close()
        await oslo_rider.close()
        await ops.close()


async def _at_least(count: Callable[[], Awaitable[int]], least: int) -> bool:
    return await count() >= least


async def test_an_out_of_range_resume_id_gets_the_full_history(server: ServerProcess, uid) -> None:  # type: ignore[no-untyped-def]
    ops = Ops(server)
    oid, mid = uid("o"), uid("m")
    await ops.create(oid, mid)
    for raw in ("99999999999999999999-0", "18446744073709551616-0"):  # past what a Redis stream id holds
        url = f"{server.ws_url}/v1/ws/customer?order_id={oid}&last_event_id={raw}"
        sock = await JsonSocket.open(url, server.token("customer", oid))
        error = await sock.recv()
        assert error["type"] == "error" and error["code"] == "bad_message" and "full history" in error["message"]
        assert (await sock.recv())["kind"] == "placed"
        await sock.close()
    await ops.close()


async def test_a_socket_whose_handler_fails_closes_1011_and_is_forgotten(own_redis, start_server, uid) -> None:  # type: ignore[no-untyped-def]
    srv = start_server(redis=own_redis)
    ops = Ops(srv)
    oid, mid = uid("o"), uid("m")
    await ops.create(oid, mid)
    _plant(own_redis, f"events:{{m:{mid}}}:{oid}", "not a stream")  # its history cannot be read
    async with httpx.AsyncClient(base_url=srv.base_url) as http:
        before = metric((await http.get("/metrics")).text, "tracker_websocket_connections")
        for _ in range(3):
            url = f"{srv.ws_url}/v1/ws/customer?order_id={oid}"
            async with websockets.connect(url, additional_headers={"Authorization": "Bearer " + srv.token("customer", oid)}) as ws:
                with pytest.raises(websockets.ConnectionClosed):
                    await ws.recv()
                assert ws.close_code == 1011 and ws.close_reason.startswith("internal:"), ws.close_reason
        assert await eventually(lambda: _connections_back(http, before)), "a failed socket's session outlived it"
    assert "websocket /v1/ws/customer failed" in srv.log_path.read_text()  # logged with its cause
    await ops.close()


async def _connections_back(http: httpx.AsyncClient, before: float) -> bool:
    return metric((await http.get("/metrics")).text, "tracker_websocket_connections") <= before


def _send_streamed_body(port: int, path: str, token: str, megabytes: int) -> bytes:
    """POST ``megabytes`` of body without a Content-Length (chunked); the server's answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
                     "Transfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n".encode())
        chunk = b"a" * 65536
        try:
            for _ in range(megabytes * 16):
                sock.sendall(b"10000\r\n" + chunk + b"\r\n")
        except OSError:
            pass  # the server answered and closed: it stopped reading, as it should
        return read_response(sock)


async def test_an_endless_body_is_refused_without_being_read(server: ServerProcess, uid) -> None:  # type: ignore[no-untyped-def]
    answer = await asyncio.to_thread(_send_streamed_body, server.port, "/v1/orders", server.token("operator", "ops"), 200)
    assert answer.startswith(b"HTTP/1.1 413") and b'"too_large"' in answer, answer[:300]
    declared = await asyncio.to_thread(_declare_huge_body, server.port, server.token("operator", "ops"))
    assert declared.startswith(b"HTTP/1.1 413") and b'"too_large"' in declared, declared[:300]


def _declare_huge_body(port: int, token: str) -> bytes:
    """Announce a 1 GB body, send none of it: the answer must not wait for it."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(f"POST /v1/orders HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
                     "Content-Length: 1000000000\r\n\r\n{}".encode())
        return read_response(sock)


async def test_a_stalled_body_is_answered_408_and_the_connection_closed(start_server) -> None:  # type: ignore[no-untyped-def]
    srv = start_server({"TRACKER_BODY_TIMEOUT_S": "1"})
    answer = await asyncio.to_thread(_stall_body, srv.port, srv.token("operator", "ops"))
    assert answer.startswith(b"HTTP/1.1 408") and b'"request_timeout"' in answer, answer[:300]
    async with httpx.AsyncClient(base_url=srv.base_url, timeout=10) as client:  # and everyone else is served
        assert (await client.get("/healthz")).status_code == 200


def _stall_body(port: int, token: str) -> bytes:
    """Promise 100 bytes of body, send 6, then trickle: the answer, and then the connection's
    end at once (not at the idle timeout, which a trickling client keeps pushing back)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"POST /v1/orders HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
                     "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"id\":".encode())
        answer = read_response(sock)
        sock.settimeout(2)  # uvicorn's idle timeout is 5 s
        try:
            sock.sendall(b" ")
            assert sock.recv(1) == b"", "the connection stayed open after the answer"
        except ConnectionResetError:
            pass  # closed, and said so the hard way
        return answer


async def test_a_client_that_leaves_mid_body_is_no_error_in_the_log(start_server) -> None:  # type: ignore[no-untyped-def]
    """A phone on a flaky network drops a POST half sent, plainly or in a broken chunk: the
    server's error log stays for real failures (it had a traceback per such request)."""
    srv = start_server({})
    token = srv.token("operator", "ops")
    await asyncio.gather(*(asyncio.to_thread(_leave_mid_body, srv.port, token, chunked) for chunked in (False, True) * 3))
    async with httpx.AsyncClient(base_url=srv.base_url, timeout=10) as client:
        assert (await client.get("/healthz")).status_code == 200
    log = srv.log_tail(400)
    assert '"level":"error"' not in log and "Traceback" not in log, log[-2000:]


def _leave_mid_body(port: int, token: str, chunked: bool) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        framing = "Transfer-Encoding: chunked\r\n\r\n6\r\n{\"id\":\r\nzz" if chunked else "Content-Length: 100\r\n\r\n{\"id\":"
        sock.sendall(f"POST /v1/orders HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n{framing}".encode())
        time.sleep(0.3)  # the handler is reading the body


async def test_connections_that_never_finish_a_request_head_are_closed(start_server) -> None:  # type: ignore[no-untyped-def]
    """A client that connects and sends nothing, trickles a header, or starts a second request
    on a kept-alive connection and stops, holds a connection (a file descriptor) only for
    TRACKER_HEADER_TIMEOUT_S: then 408 and the connection is closed."""
    srv = start_server({"TRACKER_HEADER_TIMEOUT_S": "1"})
    answers = await asyncio.gather(*(asyncio.to_thread(_stall_head, srv.port, how)
                                     for how in ("silent", "trickle", "second")))
    for how, answer in zip(("silent", "trickle", "second"), answers):
        assert answer.startswith(b"HTTP/1.1 408") and b'"request_timeout"' in answer, (how, answer[:300])
    async with httpx.AsyncClient(base_url=srv.base_url, timeout=10) as client:  # a slow-but-whole request is served
        assert (await client.get("/healthz")).status_code == 200


def test_bytes_that_are_not_http_get_a_json_400_and_the_connection_closed(server: ServerProcess) -> None:
    broken = {
        "request line": b"HELLO THERE\r\n\r\n",
        "negative length": b"POST /v1/orders HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
        "two lengths": b"POST /v1/orders HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
        "length and chunks": b"POST /v1/orders HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
                             b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    }
    for what, raw in broken.items():
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(raw)
            answer = read_response(sock)
            head, _, body = answer.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 400") and b"application/json" in head.lower(), (what, answer[:300])
            assert orjson.loads(body)["error"]["code"] == "bad_request", (what, body)
            try:
                assert sock.recv(1) == b"", f"{what}: the connection stayed open"
            except ConnectionResetError:
                pass
    assert httpx.get(server.base_url + "/healthz", timeout=10).status_code == 200


def test_a_pipelined_head_behind_a_slow_answer_is_not_timed_out() -> None:
    """HTTP/1.1 pipelining: a request's head that arrives in pieces behind a request still being
    answered cannot be read on until that answer is out; it is not "late", and neither answer
    is cut off. (The protocol on a bare ASGI app: the server has no slow endpoint of its own.)"""

    async def app(scope: dict, receive: object, send: Callable) -> None:  # type: ignore[type-arg]
        if scope["type"] != "http":
            return
        if scope["path"] == "/slow":
            await asyncio.sleep(2)
        body = scope["path"].encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, http=head_timeout_protocol(0.5),
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.05)
        port = server.servers[0].sockets[0].getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\nGET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHo")
            time.sleep(0.2)
            sock.sendall(b"st: x\r\n\r\n")
            data = b""
            while data.count(b"HTTP/1.1 ") < 3 or not data.endswith(b"/b"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        assert re.findall(rb"HTTP/1.1 (\d+)", data) == [b"200"] * 3, data
        assert re.findall(rb"\r\n\r\n(/[a-z]+)", data) == [b"/slow", b"/a", b"/b"], data
    finally:
        server.should_exit = True
        thread.join(10)


def _stall_head(port: int, how: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        if how == "trickle":  # a byte every 0.3 s, for 2 s: never a whole head within the second
            for byte in b"GET /healthz":
                try:
                    sock.sendall(bytes([byte]))
                except OSError:
                    break  # the server has answered and closed meanwhile
                time.sleep(0.3)
        elif how == "second":  # one whole request, answered; then half of the next one
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            first = read_response(sock)
            assert first.startswith(b"HTTP/1.1 200"), first[:200]
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost:")
        started = time.monotonic()
        sock.settimeout(8)  # well before uvicorn's own idle timeout could matter for the silent ones
        answer = read_response(sock)
        assert time.monotonic() - started < 6, how
        try:
            assert sock.recv(1) == b"", "the connection stayed open after the answer"
        except ConnectionResetError:
            pass
        return answer


async def test_websocket_to_an_unknown_path_or_http_to_a_socket_answers_in_kind(server: ServerProcess) -> None:
    async with websockets.connect(f"{server.ws_url}/v1/ws/nothing") as ws:
        with pytest.raises(websockets.ConnectionClosed):
            await ws.recv()
        assert ws.close_code == 1008 and ws.close_reason.startswith("not_found:")
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        resp = await http.get("/v1/ws/rider")
        assert resp.status_code == 426 and resp.json()["error"]["code"] == "upgrade_required"
        assert (await http.get("/v1/ws/nothing")).status_code == 404


async def test_a_socket_to_an_unknown_path_of_non_ascii_characters_gets_its_1008_and_reason(server: ServerProcess) -> None:
    """The reason names the path, cut to the 123 bytes a close frame holds, not to 120
    characters: 60 "€" (180 bytes) had left the client with no close code at all."""
    for path in ("/" + "%E2%82%AC" * 60, "/" + "%C3%A9" * 61):
        async with websockets.connect(f"{server.ws_url}{path}") as ws:
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await ws.recv()
        assert closed.value.rcvd is not None, (path, closed.value)  # a close frame came
        reason = closed.value.rcvd.reason
        assert closed.value.rcvd.code == 1008 and reason.startswith("not_found: no WebSocket endpoint at /"), reason
        assert 120 < len(reason.encode()) <= 123, reason  # as much as fits, never half a character


async def test_a_socket_sending_garbage_is_answered_then_closed(server: ServerProcess, uid) -> None:  # type: ignore[no-untyped-def]
    mid = uid("m")
    async with websockets.connect(f"{server.ws_url}/v1/ws/merchant",
                                  additional_headers={"Authorization": f"Bearer {server.token('merchant', mid)}"}) as ws:
        garbage = ["{not json", "[1, 2]", '{"type": "dance"}', '{"no_type": 1}', b"\x00binary"]
        for i in range(99):  # each is answered with its error, and the socket stays open
            await ws.send(garbage[i % len(garbage)])
        codes = []
        while len(codes) < 99:
            frame = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
            if frame.get("type") == "error":
                codes.append(frame["code"])
        assert set(codes) == {"bad_json", "bad_message", "unknown_type"}, set(codes)
        await ws.send('{"type": "confirm", "order_id": "' + uid("nope") + '"}')  # a real message still works
        answer = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
        assert answer["type"] == "error" and answer["code"] == "forbidden", answer
        await ws.send("{more garbage")  # the 100th within 10 s: answered, then closed
        with pytest.raises(websockets.ConnectionClosed):
            while True:
                await asyncio.wait_for(ws.recv(), 10)
        assert ws.close_code == 1008 and ws.close_reason.startswith("rate_limited: 100 malformed"), ws.close_reason


async def test_an_id_nested_deeper_than_can_be_echoed_is_refused_and_the_socket_stays_open(server: ServerProcess, uid) -> None:  # type: ignore[no-untyped-def]
    """JSON may nest 1,024 levels but an error frame could only echo 254 of them: such an ``id``
    is refused as bad_message (without ``ref``), not answered by a traceback and a 1011 close."""
    deep = "[" * 300 + "1" + "]" * 300
    async with websockets.connect(f"{server.ws_url}/v1/ws/rider",
                                  additional_headers={"Authorization": f"Bearer {server.token('rider', uid('r'))}"}) as ws:
        await ws.send('{"type": "dance", "id": ' + deep + "}")
        while (frame := orjson.loads(await asyncio.wait_for(ws.recv(), 10)))["type"] != "error":
            pass  # (its route first)
        assert frame["code"] == "bad_message" and "nested too deeply" in frame["message"] and "ref" not in frame, frame
        nested = "[" * 200 + "1" + "]" * 200
        await ws.send('{"type": "dance", "id": ' + nested + "}")  # still open; an id that can be echoed is
        frame = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
        assert frame["code"] == "unknown_type" and orjson.dumps(frame["ref"]).decode() == nested, frame["code"]
    assert "Recursion limit" not in server.log_tail(200)


async def test_one_token_holds_a_bounded_number_of_sockets(start_server, uid) -> None:  # type: ignore[no-untyped-def]
    srv = start_server({"TRACKER_MAX_SOCKETS_PER_SUBJECT": "3"})
    oid = uid("o")
    ops = Ops(srv)
    await ops.create(oid, uid("m"))
    url = f"{srv.ws_url}/v1/ws/customer?order_id={oid}"

    def watch(role: str = "customer", sub: str = oid):  # type: ignore[no-untyped-def]
        return websockets.connect(url, additional_headers={"Authorization": f"Bearer {srv.token(role, sub)}"})

    held = [await watch() for _ in range(3)]
    try:
        async with watch() as extra:
            with pytest.raises(websockets.ConnectionClosed):
                while True:
                    await asyncio.wait_for(extra.recv(), 10)
            assert extra.close_code == 1013 and extra.close_reason.startswith("rate_limited: 3 sockets"), extra.close_reason
        await held.pop().close()  # one closes: room for one more (once the server has let go of it)
        for _ in range(50):
            again = await watch()
            try:
                first = orjson.loads(await asyncio.wait_for(again.recv(), 10))
            except websockets.ConnectionClosed:
                await asyncio.sleep(0.1)
                continue
            held.append(again)
            assert first["type"] == "event"  # served as usual
            break
        else:
            pytest.fail("no room for a socket after one of the three closed")
        others = [await watch("operator", "ops") for _ in range(4)]  # operators have no limit
        for ws in others:
            assert orjson.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "event"
            await ws.close()
    finally:
        for ws in held:
            await ws.close()
        await ops.close()


async def test_a_kitchen_flooding_its_socket_is_rate_limited_and_delays_are_bounded(server: ServerProcess, uid) -> None:  # type: ignore[no-untyped-def]
    """A tablet stuck on "delay": the 11th delay of one order is refused (its history stays
    small), a delay past 7 days ahead too, and presses past a burst are rate-limited. Once the
    food is ready a delay is refused for that (``invalid_transition``), not for the cap."""
    ops = Ops(server)
    oid, later, mid = uid("o"), uid("later"), uid("m")
    await ops.create(oid, mid)
    week = 7 * 24 * 3600 * 1000
    await ops.create(later, mid, ready_at=int(time.time() * 1000) + week - 60_000)  # due in almost 7 days
    kitchen = await merchant(server, mid)
    try:
        for _ in range(10):
            await kitchen.delay(oid, 1)
        await kitchen.send({"type": "delay", "order_id": oid, "minutes": 1, "id": "eleventh"})
        refused = await kitchen.expect(lambda f: f.get("type") == "error")
        assert (refused["code"], refused["ref"]) == ("too_many_delays", "eleventh"), refused
        assert "10 times" in refused["message"] and "cancel the order" in refused["message"]
        events = (await ops.get(oid))["events"]
        assert [e["kind"] for e in events] == ["placed"] + ["food_delayed"] * 10
        assert [e["delays_left"] for e in events[1:]] == list(range(9, -1, -1)), events
        await kitchen.ready(oid)  # past delaying: what a delay gets says that, not the cap
        await kitchen.expect(lambda f: f.get("kind") == "food_ready" and f.get("order_id") == oid)
        await kitchen.send({"type": "delay", "order_id": oid, "minutes": 1, "id": "after ready"})
        late = await kitchen.expect(lambda f: f.get("type") == "error")
        assert (late["code"], late["ref"]) == ("invalid_transition", "after ready"), late
        await kitchen.delay(later, 240)
        capped = await kitchen.expect(lambda f: f.get("type") == "error")
        assert capped["code"] == "bad_message" and "7 days" in capped["message"], capped
        for _ in range(80):  # past the burst of 50
            await kitchen.confirm(oid)
        limited = await kitchen.expect(lambda f: f.get("code") == "rate_limited")
        assert "per second" in limited["message"]
    finally:
        await kitchen.close()
        await ops.close()


async def test_a_rider_flooding_its_socket_is_rate_limited_then_closed(server: ServerProcess, uid) -> None:  # type: ignore[no-untyped-def]
    """Well-formed messages as fast as a client can send them (each would cost a Redis write, and
    thousands sit queued before the server reads the next): past a burst they are refused
    cheaply, and a socket that keeps on is closed."""
    async with websockets.connect(f"{server.ws_url}/v1/ws/rider",
                                  additional_headers={"Authorization": f"Bearer {server.token('rider', uid('r'))}"}) as ws:
        frame = orjson.dumps({"type": "availability", "available": True}).decode()
        for _ in range(300):
            await ws.send(frame)
        codes = []
        with pytest.raises(websockets.ConnectionClosed):
            while True:
                got = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
                if got["type"] == "error":
                    codes.append(got["code"])
        assert ws.close_code == 1008 and ws.close_reason == "rate_limited: too many messages, connection closed"
        assert codes and set(codes) == {"rate_limited"} and len(codes) <= 60, codes  # the burst went through, then refusals


async def test_a_fresh_kitchen_board_gets_its_whole_feed_however_long(server: ServerProcess, uid) -> None:  # type: ignore[no-untyped-def]
    ops = Ops(server)
    oid, mid = uid("o"), uid("m")
    await ops.create(oid, mid)
    platform = await platform_kitchen(server, mid)
    try:
        for _ in range(1100):  # more than one resume may replay
            await platform.delay(oid, 1)
        await eventually(lambda: _events_at_least(ops, oid, 1101), timeout=20)
        board = await merchant(server, mid)  # a tablet opening the board: no last_event_id
        got = [await board.recv() for _ in range(1101)]
        assert [f["type"] for f in got] == ["event"] * 1101  # no resync, nothing skipped
        assert got[0]["kind"] == "placed" and got[-1]["kind"] == "food_delayed"
        await board.close()
    finally:
        await platform.close()
        await ops.close()


async def _events_at_least(ops: Ops, order_id: str, n: int) -> bool:
    return len((await ops.get(order_id))["events"]) >= n


async def test_invalid_utf8_closes_the_socket_with_1007_and_one_log_line(server: ServerProcess, uid) -> None:  # type: ignore[no-untyped-def]
    url = f"{server.ws_url}/v1/ws/rider?token={server.token('rider', uid('r'))}"
    async with websockets.connect(url) as ws:
        await ws.send(b'{"type": "location", "lat": 52.5\xff}', text=True)
        with pytest.raises(websockets.ConnectionClosed):
            while True:  # (the route frame every rider connection starts with may come first)
                assert orjson.loads(await ws.recv())["type"] == "route"
        assert ws.close_code == 1007
    log = await eventually(lambda: _log_with(server, "the socket is closed with 1007"))
    assert log and "UnicodeDecodeError" not in log


async def _log_with(server: ServerProcess, text: str) -> str | None:
    log = server.log_path.read_text()
    return log if text in log else None
