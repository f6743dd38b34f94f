"""A request head is bounded in size as well as in time: a client cannot make the server buffer
an endless header line for the whole head timeout."""
from __future__ import annotations

import socket
import time

import orjson
import pytest

from tests.raw_http import read_response
from tracker.launcher import ServerProcess


def _exchange(server: ServerProcess, data: bytes, tail: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        try:
            sock.sendall(data)
            sock.sendall(tail)
        except OSError:  # (refused early: the server may close while we still send)
            pass
        out = b""
        try:
            while chunk := sock.recv(65536):
                out += chunk
        except OSError:
            pass
        return out


def test_a_huge_request_head_is_refused_431_and_the_connection_closed(server: ServerProcess) -> None:
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Filler: " + b"a" * (4 * 1024 * 1024)
    answer = _exchange(server, head, b"\r\n\r\n")
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 431"), answer[:300]
    headers, _, body = rest.partition(b"\r\n\r\n")
    assert b"connection: close" in headers.lower()
    assert b"x-content-type-options: nosniff" in headers.lower()  # (answered before the app: set there too)
    assert b"cache-control: no-store" in headers.lower()  # (as every answer of the app's)
    assert orjson.loads(body)["error"]["code"] == "too_large"


@pytest.mark.parametrize("kept_alive", [False, True], ids=["first-request", "kept-alive"])
def test_the_head_limit_counts_the_bytes_that_began_the_request(server: ServerProcess, kept_alive: bool) -> None:
    """One byte over 1 MiB is refused 431 at once, however the head arrived (the first piece,
    read before the request began, counts too) and whichever request of the connection it is,
    not answered 408 when the head timeout ends."""
    start = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Start: " + b"s" * 2000
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        if kept_alive:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_response(sock).startswith(b"HTTP/1.1 200")
        sock.sendall(start)
        time.sleep(0.3)  # read by the server on its own
        sock.sendall(b"a" * (1024 * 1024 + 1 - len(start)))  # the head is now one byte too long, and open
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 431"), answer[:300]


def test_ordinary_heads_and_bodies_still_pass(server: ServerProcess) -> None:
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Filler: " + b"a" * 16000 + b"\r\nConnection: close\r\n\r\n"
    assert _exchange(server, head, b"").startswith(b"HTTP/1.1 200")
    body = b'{"id": "' + b"x" * 60000 + b'"}'
    post = (b"POST /v1/orders HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: " + str(len(body)).encode()
            + b"\r\n\r\n" + body)
    assert _exchange(server, post, b"").startswith(b"HTTP/1.1 401")  # read whole, answered (no token)
