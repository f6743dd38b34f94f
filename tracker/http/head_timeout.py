"""A time limit on an HTTP request's head (request line and headers).

uvicorn times a connection out only between requests (keep-alive), not before the first
request's head is complete: a client that connects and sends nothing, or trickles a header a
byte at a time, holds its connection (and a file descriptor) for as long as it likes. This
protocol, uvicorn's httptools one with a timer, answers such a connection 408
``request_timeout`` and closes it once ``timeout_s`` has passed without a complete head.
The body has its own limit (``TRACKER_BODY_TIMEOUT_S``, :mod:`tracker.http.body`).

A head is bounded in size too: the parser buffers a header line until it ends, so a client
sending one endless line would hold as much memory as it could send within the timeout. A head
still incomplete after :data:`MAX_HEAD_BYTES` is answered 431 ``too_large`` and closed. Bytes
that are not HTTP at all are answered 400 ``bad_request`` (JSON, like every error) and closed.

And a process holds a bounded number of connections: each is an open file, and the files Redis
needs must not go to clients (:mod:`tracker.open_files`). A connection beyond the bound is
answered 503 ``over_capacity`` as soon as it is accepted, before its request is read; what it
still sends is read and dropped for a moment, so that a client still sending gets the answer
rather than a reset.
"""
from __future__ import annotations

import asyncio
from http import HTTPStatus
from typing import Callable

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from tracker.errors import ApiError
from tracker.http.no_store import HEADER as NO_STORE
from tracker.http.nosniff import HEADER as NOSNIFF

# Bytes a request head may take. Counted per read outside a body, so it must exceed one read
# (asyncio reads up to 256 KiB, which may also hold a body or pipelined requests).
MAX_HEAD_BYTES = 1024 * 1024
# A connection turned away (503 over_capacity) is read, its bytes dropped, for this long after the
# answer, unless the client closes first: closed with its request unread, the socket would be reset,
# and a client still sending (a POST's body) would get the reset, not the answer. Only this many
# connections beyond the limit linger so; more are closed at once.
LINGER_S = 1.0
LINGER_SLOTS = 32


def _raw_error(err: ApiError) -> bytes:
    """``err`` as a whole HTTP response that closes the connection: raw bytes, as there is no
    request to answer through the app, with the API's error body."""
    body = orjson.dumps(err.body())
    return (f"HTTP/1.1 {err.status} {HTTPStatus(err.status).phrase}\r\ncontent-type: application/json\r\n"
            f"{NOSNIFF[0].decode()}: {NOSNIFF[1].decode()}\r\n{NO_STORE[0].decode()}: {NO_STORE[1].decode()}\r\n"
            f"connection: close\r\ncontent-length: {len(body)}\r\n\r\n").encode() + body


def head_timeout_protocol(timeout_s: float, max_head_bytes: int = MAX_HEAD_BYTES,
                          max_connections: int | None = None,
                          on_turned_away: Callable[[], None] | None = None) -> type[HttpToolsProtocol]:
    """uvicorn's HTTP protocol whose connections must complete each request head within ``timeout_s``
    and ``max_head_bytes``; past ``max_connections`` open at once (WebSockets included), a new
    connection is answered 503 ``over_capacity`` before it is read (``on_turned_away`` is called)."""
    timed_out = _raw_error(ApiError("request_timeout", f"the request's headers did not arrive within {timeout_s:g} s"))
    too_large = _raw_error(ApiError("too_large", f"the request's headers are larger than {max_head_bytes // 1024} KiB",
                                    status=431))
    full = _raw_error(ApiError("over_capacity", f"this server holds its most connections ({max_connections}); "
                                                "try again later or another server"))
    not_http = _raw_error(ApiError("bad_request", "the request is not valid HTTP/1.1 (request line, headers or "
                                                  "framing); nothing was done"))

    lingering = 0  # connections turned away that are still being read (not counted against the limit)

    class HeadTimeoutProtocol(HttpToolsProtocol):
        _head_timer: asyncio.TimerHandle | None = None
        _head_bytes = 0  # bytes of the head being read: since the last message ended (or the connection opened)
        _in_body = False  # between a head's end and its message's end: what comes is body, not head
        _linger: asyncio.TimerHandle | None = None  # turned away: what it still sends is dropped

        def _arm(self) -> None:
            self._disarm()
            self._head_timer = self.loop.call_later(timeout_s, self._head_timed_out)

        def data_received(self, data: bytes) -> None:
            if self.transport.is_closing() or self._linger is not None:
                return
            if not self._in_body:  # a head is being read: it may not grow without bound (a piece
                # that ends a body and begins the next head counts as body: one read at most)
                self._head_bytes += len(data)
                if self._head_bytes > max_head_bytes:
                    self._refuse(too_large)
                    return
            super().data_received(data)

        def _refuse(self, answer: bytes) -> None:
            """Answer ``answer`` (a whole response) and close: no request of this head is served."""
            self._disarm()
            if not self.transport.is_closing():
                self.transport.write(answer)
                self.transport.close()

        def _turn_away(self) -> None:
            """Answer 503 over_capacity; then, while few linger, drop what the client still sends
            until it closes or :data:`LINGER_S` has passed (see there)."""
            if on_turned_away is not None:
                on_turned_away()
            nonlocal lingering
            if lingering >= LINGER_SLOTS or not self.transport.can_write_eof():
                self._refuse(full)
                return
            self.transport.write(full)
            self.transport.write_eof()
            self._linger = self.loop.call_later(LINGER_S, self.transport.close)
            lingering += 1

        def _disarm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_timed_out(self) -> None:
            self._head_timer = None
            if (self.cycle is not None and not self.cycle.response_complete) or self.pipeline:
                # A pipelined head behind a request still being answered: uvicorn reads no
                # further until that answer is out, so the head cannot be late yet (its size
                # still counts from where it began).
                self._arm()
                return
            self._refuse(timed_out)

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if max_connections is not None and len(self.connections) - lingering > max_connections:
                self._turn_away()  # (its file is given back now, not after a header timeout)
                return
            self._arm()  # the first request's head is due

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm()  # a later request on a kept-alive connection: its head is due (its size
            # counts from the end of the last message)

        def on_headers_complete(self) -> None:
            self._disarm()
            self._in_body = True
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            self._in_body = False
            self._head_bytes = 0
            super().on_message_complete()

        def send_400_response(self, msg: str) -> None:
            # uvicorn's answer to bytes its parser refuses (a bad request line, a negative or
            # doubled Content-Length, both it and Transfer-Encoding): our JSON error, not text.
            self._refuse(not_http)

        def connection_lost(self, exc: Exception | None) -> None:
            nonlocal lingering
            self._disarm()
            if self._linger is not None:
                self._linger.cancel()
                lingering -= 1
            super().connection_lost(exc)

    return HeadTimeoutProtocol
