"""A gevent-friendly WebSocket client for locust users, on websockets' sans-I/O protocol.

Locust runs users as gevent greenlets over a monkey-patched socket module and has no
WebSocket user of its own. This client drives ``websockets.client.ClientProtocol`` (the
library's sans-I/O core) over a plain socket, or a TLS one for ``wss://`` (checked with the
given SSL context, default the system's CAs): the handshake, text frames, and automatic pong
replies come from websockets; the I/O is a blocking (gevent-cooperative) socket.
"""
from __future__ import annotations

import socket
import ssl
from typing import Any, Iterator
from urllib.parse import urlparse

import orjson
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import State
from websockets.uri import parse_uri


class WsError(Exception):
    """The connection failed or was closed."""


class WsClosed(WsError):
    """The server closed the connection: the ``code`` and ``reason`` of its close frame (1006 and
    no reason when the connection ended without one)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"{code} {reason}".strip())
        self.code, self.reason = code, reason


class WsClient:
    """One WebSocket connection; ``messages()`` yields decoded JSON text frames."""

    def __init__(self, url: str, token: str, timeout: float = 10.0, tls: ssl.SSLContext | None = None) -> None:
        """Connect to ``url`` (``ws://`` or ``wss://``: over TLS, checked by ``tls``) with ``token``."""
        self.protocol = ClientProtocol(parse_uri(url), max_size=2**22)
        parsed = urlparse(url)
        secure = parsed.scheme == "wss"
        self.sock = socket.create_connection((parsed.hostname, parsed.port or (443 if secure else 80)), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if secure:
            try:
                self.sock = (tls or ssl.create_default_context()).wrap_socket(self.sock, server_hostname=parsed.hostname)
            except BaseException:
                self.sock.close()
                raise
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
            raise self._closed()
        self.protocol.receive_data(data)
        events = self.protocol.events_received()
        self._flush()  # pongs and close replies
        return events

    def _closed(self) -> WsClosed:
        """The server's close as :class:`WsClosed` (1006 when no close frame came)."""
        close = self.protocol.close_rcvd
        return WsClosed(close.code, close.reason) if close is not None else WsClosed(1006, "no close frame")

    @property
    def closed_by_server(self) -> bool:
        """True once the server has sent a close frame that was not the answer to ours."""
        return self.protocol.close_rcvd is not None and bool(self.protocol.close_rcvd_then_sent)

    def send(self, message: dict[str, Any]) -> int:
        """Send one JSON text frame; returns its size in bytes (:class:`WsClosed` once the socket closes)."""
        if self.protocol.state is not State.OPEN:
            raise self._closed()
        payload = orjson.dumps(message)
        self.protocol.send_text(payload)
        self._flush()
        return len(payload)

    def messages(self) -> Iterator[dict[str, Any]]:
        """Decoded JSON text frames, until the connection closes (then :class:`WsClosed`, with the
        server's close code and reason)."""
        while True:
            frames, self._pending = self._pending, []
            for frame in frames:
                if frame.opcode is Opcode.TEXT:
                    yield orjson.loads(frame.data)
                elif frame.opcode is Opcode.CLOSE:
                    raise self._closed()
            self._pending = [e for e in self._read() if isinstance(e, Frame)]

    def close(self) -> None:
        """Send a normal close (1000) if the socket still takes it, then close the socket."""
        try:
            self.protocol.send_close(1000)
            self._flush()
        except Exception:  # noqa: BLE001 - closing a dead socket
            pass
        self.sock.close()
