"""Ids made only of dots ("." and "..") are refused wherever an id comes in: a browser reads them
as path segments in every address a page builds (/track/.., /v1/riders/../pause), so an order,
rider or kitchen named so could never be tracked, cancelled or paused from a page."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import jwt
import pytest
import websockets

from tests.orders_helpers import DROPOFF, PICKUP
from tracker.launcher import ServerProcess

DOTS = [".", "..", "..."]


@pytest.mark.parametrize("dots", DOTS)
async def test_an_order_or_kitchen_id_of_dots_is_bad_message_and_creates_nothing(server: ServerProcess, uid, dots: str) -> None:  # type: ignore[no-untyped-def]
    headers = {"Authorization": "Bearer " + server.token("operator", "ops")}
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10.0, headers=headers) as http:
        for body in ({"id": dots, "merchant_id": uid("m")}, {"id": uid("o"), "merchant_id": dots}):
            r = await http.post("/v1/orders", json={**body, "pickup": PICKUP, "dropoff": DROPOFF})
            assert r.status_code == 400, r.text
            error = r.json()["error"]
            assert error["code"] == "bad_message" and "not only dots" in error["message"], error
        assert (await http.get(f"/v1/orders/{body['id']}")).status_code == 404  # the second was not created either
        ok = await http.post("/v1/orders", json={"id": uid(".o."), "merchant_id": uid("m.."), "pickup": PICKUP,
                                                 "dropoff": DROPOFF})
        assert ok.status_code == 201, ok.text  # dots among other characters are fine


async def test_a_path_id_of_dots_is_bad_request(server: ServerProcess) -> None:
    headers = {"Authorization": "Bearer " + server.token("operator", "ops")}
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10.0, headers=headers) as http:
        # (%2E: a client that resolves dot segments would otherwise send /v1/pause)
        for path, body in [("/v1/riders/%2E%2E/pause", {"reason": "checking"}), ("/v1/orders/%2E/cancel", {}),
                           ("/v1/orders/%2E%2E", None)]:
            r = await (http.post(path, json=body) if body is not None else http.get(path))
            assert r.status_code == 400, (path, r.text)
            error = r.json()["error"]
            assert error["code"] == "bad_request" and "not only dots" in error["message"], (path, error)


async def test_a_token_whose_sub_is_dots_is_refused(server: ServerProcess) -> None:
    """A token signed elsewhere (the platform's backend) with sub "..": refused, not a rider "..":"""
    token = jwt.encode({"role": "rider", "sub": "..", "exp": int(time.time()) + 600}, server.secret, algorithm="HS256")
    async with websockets.connect(f"{server.ws_url}/v1/ws/rider?token={token}") as ws:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008, closed.value
    assert closed.value.rcvd.reason.startswith("unauthorized: token 'sub' is not a valid id (1-64 characters"), \
        closed.value.rcvd.reason  # (naming the rule, as every other refusal of an id does)
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10.0) as http:
        revoke = await http.post("/v1/tokens/revoke", json={"role": "rider", "sub": ".."},
                                 headers={"Authorization": "Bearer " + server.token("operator", "ops")})
    assert revoke.status_code == 400 and revoke.json()["error"]["code"] == "bad_message", revoke.text


def test_tracker_token_refuses_a_sub_of_dots() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER_")}
    env["TRACKER_SECRET"] = "cli-secret-0123456789abcdef0123456789abcdef"
    for dots in DOTS:
        result = subprocess.run([sys.executable, "-m", "tracker", "token", "--role", "customer", "--sub", dots],
                                env=env, capture_output=True, text=True, timeout=30)
        assert result.returncode == 2 and result.stdout == "", result
        assert "not only dots" in result.stderr, result.stderr
