"""The rider socket's envelope: auth, framing errors, inbox delivery, shutdown with 1001."""
from __future__ import annotations

import asyncio
import time

import jwt
import orjson
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from tracker.launcher import ServerProcess
from tracker.redis_client import connect, subscriber_count


async def _closed_code(url: str, **kwargs: object) -> tuple[int | None, str]:
    async with websockets.connect(url, **kwargs) as ws:  # type: ignore[arg-type]
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
        assert ws.close_code is not None
        return ws.close_code, ws.close_reason or ""


@pytest.mark.parametrize(
    "token_kind", ["missing", "forged", "expired", "customer"],
)
async def test_bad_credentials_close_with_1008(server: ServerProcess, token_kind: str) -> None:
    url = server.ws_url + "/v1/ws/rider"
    if token_kind == "forged":
        url += "?token=" + jwt.encode({"role": "rider", "sub": "r1", "exp": time.time() + 60}, "x" * 32, algorithm="HS256")
    elif token_kind == "expired":
        url += "?token=" + jwt.encode({"role": "rider", "sub": "r1", "exp": time.time() - 5}, server.secret, algorithm="HS256")
    elif token_kind == "customer":
        url += "?token=" + server.token("customer", "order-1")
    code, reason = await _closed_code(url)
    assert code == 1008
    assert reason


@pytest.mark.parametrize("path,role", [("/v1/ws/rider", "rider"), ("/v1/ws/merchant", "merchant")])
async def test_an_open_socket_is_closed_when_its_token_expires(server: ServerProcess, uid, path: str, role: str) -> None:  # type: ignore[no-untyped-def]
    """A token is not only checked at the handshake: access ends when the token says."""
    token = jwt.encode({"role": role, "sub": uid("s"), "exp": int(time.time()) + 3}, server.secret, algorithm="HS256")
    async with websockets.connect(f"{server.ws_url}{path}?token={token}") as ws:
        await ws.send('{"type": "nonsense"}')  # served while the token is good
        assert orjson.loads(await asyncio.wait_for(ws.recv(), 5)).get("type") in ("route", "error")
        with pytest.raises(ConnectionClosed):
            while True:
                await asyncio.wait_for(ws.recv(), 6)
        assert (ws.close_code, ws.close_reason) == (1008, "unauthorized: token expired")


async def _greeted(ws) -> None:  # type: ignore[no-untyped-def]
    """Every rider connection starts with its route: empty for a rider that carries nothing."""
    assert orjson.loads(await asyncio.wait_for(ws.recv(), 5)) == {"type": "route", "orders": [], "paused": None}


async def test_token_in_header_is_accepted(server: ServerProcess, uid) -> None:
    headers = {"Authorization": f"Bearer {server.token('rider', uid('r'))}"}
    async with websockets.connect(server.ws_url + "/v1/ws/rider", additional_headers=headers) as ws:
        await _greeted(ws)
        await ws.send(orjson.dumps({"type": "nonsense", "id": 7}).decode())
        reply = orjson.loads(await asyncio.wait_for(ws.recv(), 5))
        assert reply == {"type": "error", "code": "unknown_type", "message": reply["message"], "ref": 7}


async def test_bad_frames_get_errors_and_the_socket_stays_open(server: ServerProcess, uid) -> None:
    url = f"{server.ws_url}/v1/ws/rider?token={server.token('rider', uid('r'))}"
    async with websockets.connect(url, max_size=None) as ws:
        await _greeted(ws)
        cases = [
            ("{not json", "bad_json"),
            ("[1, 2]", "bad_message"),
            ('{"no_type": 1}', "bad_message"),
            (b"\x00\x01binary", "bad_message"),
            ('{"type": "location", "pad": "' + "x" * 1_000_000 + '"}', "too_large"),
            # 9,000 characters but 18,000 bytes: the 16 KiB limit counts bytes
            ('{"type": "location", "pad": "' + "\u00e9" * 9_000 + '"}', "too_large"),
        ]
        for frame, code in cases:
            await ws.send(frame)
            reply = orjson.loads(await asyncio.wait_for(ws.recv(), 5))
            assert reply["type"] == "error" and reply["code"] == code, (frame[:20], reply)
            assert reply["message"]
        await ws.send('{"type": "still-here"}')
        assert orjson.loads(await asyncio.wait_for(ws.recv(), 5))["code"] == "unknown_type"


async def test_inbox_messages_reach_the_rider_and_internal_ones_do_not(server: ServerProcess, redis_url: str, uid) -> None:
    rider = uid("r")
    url = f"{server.ws_url}/v1/ws/rider?token={server.token('rider', rider)}"
    client = connect(redis_url)
    try:
        async with websockets.connect(url) as ws:
            await _greeted(ws)
            for _ in range(500):  # the socket subscribes its inbox once connected
                if await subscriber_count(client, f"rider:{rider}:inbox") >= 1:
                    break
                await asyncio.sleep(0.02)
            else:
                raise AssertionError("the rider's inbox was never subscribed")
            await client.publish(f"rider:{rider}:inbox", orjson.dumps({"type": "_internal_only"}))
            await client.publish(f"rider:{rider}:inbox", orjson.dumps({"type": "offer_withdrawn", "offer_id": "o1"}))
            msg = orjson.loads(await asyncio.wait_for(ws.recv(), 5))
            assert msg == {"type": "offer_withdrawn", "offer_id": "o1"}
    finally:
        await client.aclose()


async def test_shutdown_closes_sockets_with_1001(start_server, uid) -> None:
    proc = start_server()
    url = f"{proc.ws_url}/v1/ws/rider?token={proc.token('rider', uid('r'))}"
    async with websockets.connect(url) as ws:
        await ws.send('{"type": "ping-ish"}')
        await asyncio.wait_for(ws.recv(), 5)
        stopper = asyncio.get_running_loop().run_in_executor(None, proc.stop)
        with pytest.raises(ConnectionClosed):
            while True:
                await asyncio.wait_for(ws.recv(), 10)
        assert ws.close_code == 1001
        assert await stopper == 0
