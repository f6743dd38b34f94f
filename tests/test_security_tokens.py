"""Tokens with odd but validly signed claims are refused as ``unauthorized``, never a 500."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import httpx
import jwt
import pytest
import websockets

from tracker.launcher import ServerProcess


async def test_an_exp_too_large_for_a_float_is_unauthorized_not_a_crash(server: ServerProcess, uid) -> None:  # type: ignore[no-untyped-def]
    exp = 10**400  # a whole number PyJWT takes (it is far ahead), too large for a float
    token = jwt.encode({"role": "operator", "sub": uid("op"), "iat": int(time.time()), "exp": exp}, server.secret,
                       algorithm="HS256")
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10.0) as http:
        r = await http.get(f"/v1/orders/{uid('o')}", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401, r.text
    assert r.json()["error"]["code"] == "unauthorized"

    rider = jwt.encode({"role": "rider", "sub": uid("r"), "exp": exp}, server.secret, algorithm="HS256")
    async with websockets.connect(f"{server.ws_url}/v1/ws/rider?token={rider}") as ws:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008, closed.value
    assert closed.value.rcvd.reason.startswith("unauthorized"), closed.value.rcvd.reason


async def test_a_token_from_an_issuer_a_little_ahead_is_taken_one_far_ahead_is_not(server: ServerProcess, uid) -> None:  # type: ignore[no-untyped-def]
    """A platform backend whose clock runs a few seconds ahead must not see its fresh tokens
    refused; a token "issued" minutes from now is refused, naming why."""
    now = int(time.time())

    def issued_ahead(seconds: int) -> str:
        return jwt.encode({"role": "operator", "sub": uid("op"), "iat": now + seconds, "exp": now + 3600},
                          server.secret, algorithm="HS256")

    async with httpx.AsyncClient(base_url=server.base_url, timeout=10.0) as http:
        ahead = await http.get(f"/v1/orders/{uid('o')}", headers={"Authorization": f"Bearer {issued_ahead(3)}"})
        assert ahead.status_code == 404 and ahead.json()["error"]["code"] == "not_found", ahead.text  # taken
        future = await http.get(f"/v1/orders/{uid('o')}", headers={"Authorization": f"Bearer {issued_ahead(120)}"})
        assert future.status_code == 401, future.text
        assert "issued in the future" in future.json()["error"]["message"]
        for bad in ("soon", 10**400, True):
            odd = jwt.encode({"role": "operator", "sub": uid("op"), "iat": bad, "exp": now + 3600}, server.secret,
                             algorithm="HS256")
            refused = await http.get(f"/v1/orders/{uid('o')}", headers={"Authorization": f"Bearer {odd}"})
            assert refused.status_code == 401 and refused.json()["error"]["code"] == "unauthorized", (bad, refused.text)


async def test_an_exp_that_is_not_a_number_is_refused(server: ServerProcess, uid) -> None:  # type: ignore[no-untyped-def]
    """A NumericDate is a JSON number (RFC 7519): PyJWT alone would take the string "9999999999"."""
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10.0) as http:
        odd = jwt.encode({"role": "operator", "sub": uid("op"), "exp": str(int(time.time()) + 3600)}, server.secret,
                         algorithm="HS256")
        refused = await http.get(f"/v1/orders/{uid('o')}", headers={"Authorization": f"Bearer {odd}"})
        assert refused.status_code == 401 and "'exp' is not a time" in refused.json()["error"]["message"], refused.text


def _signed_with_header(secret: str, header: dict, claims: dict) -> str:
    """A token signed with ``secret`` whose header is exactly ``header`` (non-ASCII kept as UTF-8)."""
    def part(data: dict) -> bytes:
        return base64.urlsafe_b64encode(json.dumps(data, ensure_ascii=False).encode()).rstrip(b"=")
    signing = part(header) + b"." + part(claims)
    signature = base64.urlsafe_b64encode(hmac.new(secret.encode(), signing, hashlib.sha256).digest()).rstrip(b"=")
    return (signing + b"." + signature).decode()


async def test_a_crit_header_is_refused_in_fixed_words_and_its_socket_gets_its_close(server: ServerProcess, uid) -> None:  # type: ignore[no-untyped-def]
    """A ``crit`` extension of 40 "€" (120 characters, 360 bytes) is not quoted back: the 1008
    close reason of a socket holds 123 bytes at most, and a longer one had left the client with
    no close code at all (and the server with an error in its log)."""
    claims = {"role": "rider", "sub": uid("r"), "iat": int(time.time()), "exp": int(time.time()) + 3600}
    token = _signed_with_header(server.secret, {"alg": "HS256", "typ": "JWT", "crit": ["€" * 40]}, claims)
    async with websockets.connect(f"{server.ws_url}/v1/ws/rider?token={token}") as ws:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None, closed.value  # a close frame came
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (
        1008, "unauthorized: invalid token: unsupported critical header extension ('crit')")
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10.0) as http:
        refused = await http.get("/v1/ops/snapshot", headers={"Authorization": f"Bearer {token}"})
    assert refused.status_code == 401, refused.text
    assert refused.json()["error"] == {"code": "unauthorized",
                                       "message": "invalid token: unsupported critical header extension ('crit')"}


async def _close_of(url: str, headers: dict[str, str]) -> websockets.frames.Close:
    async with websockets.connect(url, additional_headers=headers) as ws:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None, closed.value
    return closed.value.rcvd


async def test_a_socket_passes_over_a_basic_authorization_header_for_its_query_token(server: ServerProcess, uid) -> None:  # type: ignore[no-untyped-def]
    """A browser behind HTTP Basic auth sends ``Authorization: Basic ...`` with every request,
    its WebSockets too: the socket goes by ``?token=``. A malformed Bearer header is refused."""
    token = server.token("rider", uid("r"))
    basic = {"Authorization": "Basic dXNlcjpwYXNzd29yZA=="}
    async with websockets.connect(f"{server.ws_url}/v1/ws/rider?token={token}", additional_headers=basic) as ws:
        assert '"route"' in await ws.recv()  # open
    without = await _close_of(f"{server.ws_url}/v1/ws/rider", basic)
    assert (without.code, without.reason) == (1008, "unauthorized: Authorization header must be 'Bearer <token>'")
    for header in ("Bearer", "Bearer  ", "bearer"):
        bad = await _close_of(f"{server.ws_url}/v1/ws/rider?token={token}", {"Authorization": header})
        assert (bad.code, bad.reason) == (1008, "unauthorized: Authorization header must be 'Bearer <token>'"), header
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10.0) as http:  # HTTP reads only the header
        refused = await http.get("/v1/ops/snapshot", params={"token": server.token("operator", "ops")}, headers=basic)
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "unauthorized", refused.text


async def test_http_takes_the_token_from_x_tracker_token_beside_a_basic_login(server: ServerProcess, uid) -> None:  # type: ignore[no-untyped-def]
    """Behind HTTP Basic auth a page cannot put its token in Authorization (that replaces the
    login the browser sends there): it sends X-Tracker-Token. When that header is there it is the
    token, and Authorization is not read, whatever it holds (a Basic login, a proxy's own
    Bearer); an empty one, or two different ones, is refused. Without it, Bearer as before, and
    two Authorization headers that differ are refused too (a proxy may read the other one)."""
    operator = server.token("operator", "ops")
    other = server.token("customer", uid("o"))  # valid, but may not read the snapshot
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10.0) as http:
        async def snapshot(*headers: tuple[str, str]) -> httpx.Response:
            return await http.get("/v1/ops/snapshot", params={"max_riders": 0, "max_orders": 0}, headers=list(headers))

        for auth in ((), (("Authorization", "Basic dXNlcjpwYXNzd29yZA=="),), (("Authorization", f"Bearer {other}"),),
                     (("Authorization", "Bearer not-a-token"),)):
            taken = await snapshot(("X-Tracker-Token", operator), *auth)
            assert taken.status_code == 200, (auth, taken.text)
        denied = await snapshot(("X-Tracker-Token", other), ("Authorization", f"Bearer {operator}"))
        assert denied.status_code == 403, denied.text  # (it is X-Tracker-Token's token that counts)
        for headers, why in (((("X-Tracker-Token", ""),), "X-Tracker-Token header is empty"),
                             ((("X-Tracker-Token", operator), ("X-Tracker-Token", other)), "two different tokens"),
                             ((("X-Tracker-Token", "bad"),), "invalid token"),
                             ((("Authorization", f"Bearer {operator}"), ("Authorization", f"Bearer {other}")),
                              "Authorization given twice")):
            refused = await snapshot(*headers)
            assert refused.status_code == 401, refused.text
            assert refused.json()["error"]["code"] == "unauthorized" and why in refused.json()["error"]["message"], refused.text
        assert (await snapshot(("Authorization", f"Bearer {operator}"))).status_code == 200  # (as before)
        twice = await snapshot(("Authorization", f"Bearer {operator}"), ("Authorization", f"Bearer {operator}"))
        assert twice.status_code == 200, twice.text  # (the same one twice is one)
    token = server.token("rider", uid("r"))  # a socket takes it too (no browser can send it there)
    async with websockets.connect(f"{server.ws_url}/v1/ws/rider", additional_headers={"X-Tracker-Token": token}) as ws:
        assert '"route"' in await ws.recv()


def _claims(sub: str) -> dict:  # type: ignore[type-arg]
    return {"role": "rider", "sub": sub, "iat": int(time.time()), "exp": int(time.time()) + 3600}


# Before, PyJWT's own words: "Not enough segments", "Invalid header string: 'utf-8' codec can't
# decode byte 0xb7 ...", "The specified alg value is not allowed", "Signature verification failed".
REFUSED_TOKENS = {
    "not a jwt": (lambda secret, sub: "bad", "invalid token: malformed: not a token this service issued"),
    "header not utf-8": (lambda secret, sub: "t___." + jwt.encode(_claims(sub), secret, algorithm="HS256").split(".", 1)[1],
                         "invalid token: malformed: not a token this service issued"),
    "another algorithm": (lambda secret, sub: jwt.encode(_claims(sub), secret + "-longer-for-hs512-" * 4, algorithm="HS512"),
                          "invalid token: signed with an algorithm this service does not accept (it takes HS256)"),
    "another secret": (lambda secret, sub: jwt.encode(_claims(sub), "another-servers-secret-0123456789abcdef", algorithm="HS256"),
                       "invalid token: signature does not match (signed with another secret: another server's?)"),
}


@pytest.mark.parametrize("kind", list(REFUSED_TOKENS))
async def test_a_refused_token_is_said_why_in_plain_words(server: ServerProcess, uid, kind: str) -> None:  # type: ignore[no-untyped-def]
    make, said = REFUSED_TOKENS[kind]
    token = make(server.secret, uid("r"))
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10.0) as http:
        refused = await http.get("/v1/ops/snapshot", headers={"Authorization": f"Bearer {token}"})
    assert refused.status_code == 401, refused.text
    assert refused.json()["error"] == {"code": "unauthorized", "message": said}, refused.text
    async with websockets.connect(f"{server.ws_url}/v1/ws/rider?token={token}") as ws:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None, closed.value
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1008, f"unauthorized: {said}")
