"""Reading HTTP by hand off a raw socket, for tests that must control the bytes on the wire."""
from __future__ import annotations

import re
import socket


def read_response(sock: socket.socket) -> bytes:
    """One HTTP response read whole (the head, then as many body bytes as its Content-Length
    says), however the server split it into segments; what came, if the server closed first."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"content-length: *(\d+)", head, re.I).group(1))  # type: ignore[union-attr]
    while len(body) < length:
        chunk = sock.recv(4096)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body
