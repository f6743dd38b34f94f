"""A gevent-friendly WebSocket client for locust users, on websockets' sans-I/O protocol.

Locust runs users as gevent greenlets over a monkey-patched socket module and has no
WebSocket user of its own. This client drives ``websockets.client.ClientProtocol`` (the
library's sans-I/O core) over a plain socket: the handshake, text frames, and automatic
pong replies come from websockets; the I/O is a blocking (gevent-cooperative) socket.
"""
from __future__ import annotations

import socket
from typing import Any, Iterator
from urllib.parse import urlparse

import orjson
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri


class WsError(Exception):
    """The connection failed or was closed."""


class WsClient:
    """One WebSocket connection; ``messages()`` yields decoded JSON text frames."""

    def __init__(self, url: str, token: str, timeout: float = 10.0) -> None:
        self.protocol = ClientProtocol(parse_uri(url), max_size=2**22)
        parsed = urlparse(url)
        self.sock = socket.create_connection((parsed.hostname, parsed.port or 80), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        request = self.protocol.connect()
        request.headers["Authorization"] = f"Bearer {token}"
        self.protocol.send_request(request)
        self._flush()
        while True:
            events = self._read()
            if any(isinstance(e, Response) for e in events):
                break
        if self.protocol.handshake_exc is not None:
            raise WsError(f"handshake failed: {self.protocol.handshake_exc}")
        self.sock.settimeout(None)
        self._pending: list[Any] = [e for e in events if isinstance(e, Frame)]

    def _flush(self) -> None:
        data = b"".join(self.protocol.data_to_send())
        if data:
            self.sock.sendall(data)

    def _read(self) -> list[Any]:
        data = self.sock.recv(65536)
        if not data:
            self.protocol.receive_eof()
            self._flush()
            raise WsError("connection closed by the server")
        self.protocol.receive_data(data)
        events = self.protocol.events_received()
        self._flush()  # pongs and close replies
        return events

    def send(self, message: dict[str, Any]) -> int:
        """Send one JSON text frame; returns its size in bytes."""
        payload = orjson.dumps(message)
        self.protocol.send_text(payload)
        self._flush()
        return len(payload)

    def messages(self) -> Iterator[dict[str, Any]]:
        """Decoded JSON text frames, until the connection closes (then :class:`WsError`)."""
        while True:
            frames, self._pending = self._pending, []
            for frame in frames:
                if frame.opcode is Opcode.TEXT:
                    yield orjson.loads(frame.data)
                elif frame.opcode is Opcode.CLOSE:
                    raise WsError("closed by the server")
            self._pending = [e for e in self._read() if isinstance(e, Frame)]

    def close(self) -> None:
        """Send a normal close (1000) if the socket still takes it, then close the socket."""
        try:
            self.protocol.send_close(1000)
            self._flush()
        except Exception:  # noqa: BLE001 - closing a dead socket
            pass
        self.sock.close()
