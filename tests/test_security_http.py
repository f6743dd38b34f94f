"""A request head is bounded in size as well as in time: a client cannot make the server buffer
an endless header line for the whole head timeout."""
from __future__ import annotations

import socket

import orjson

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
    assert orjson.loads(body)["error"]["code"] == "too_large"


def test_ordinary_heads_and_bodies_still_pass(server: ServerProcess) -> None:
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Filler: " + b"a" * 16000 + b"\r\nConnection: close\r\n\r\n"
    assert _exchange(server, head, b"").startswith(b"HTTP/1.1 200")
    body = b'{"id": "' + b"x" * 60000 + b'"}'
    post = (b"POST /v1/orders HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: " + str(len(body)).encode()
            + b"\r\n\r\n" + body)
    assert _exchange(server, post, b"").startswith(b"HTTP/1.1 401")  # read whole, answered (no token)
