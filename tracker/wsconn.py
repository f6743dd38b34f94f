"""The WebSocket adapter every endpoint shares.

:class:`WsSession` authenticates the handshake (closing with 1008 and a reason on
failure, and again when the token expires or is revoked while the socket is open; a frame read
after a revocation is not handed on), reads text frames
into validated JSON objects (answering bad frames with an ``error`` frame and keeping the
connection open), sends orjson text frames, and registers itself in the :class:`WsHub` so a
shutdown can close every socket with 1001.
"""
from __future__ import annotations

import asyncio
import functools
import logging
import math
import time
from collections import Counter
from typing import Any, AsyncIterator, Awaitable, Callable

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from tracker.auth import REVOKED, Principal, RevocationList, Role, authenticate
from tracker.errors import ApiError
from tracker.jsonutil import dumps_str, loads_object
from tracker.locations.ratelimit import FloodGuard
from tracker.logs import log_failure
from tracker.redis_client import REDIS_DOWN, redis_unavailable

log = logging.getLogger("tracker.ws")

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008
CLOSE_INTERNAL = 1011
CLOSE_TRY_AGAIN = 1013

REVOKED_CLOSE = f"unauthorized: {REVOKED}"  # the 1008 reason of a socket whose token was revoked
MAX_CLOSE_REASON_BYTES = 123  # RFC 6455 5.5: a close frame's payload is 125 bytes at most, 2 of them the code
# What a send, close or read raises on a socket whose peer is gone already (Starlette's
# WebSocketDisconnect once uvicorn has seen it go): nothing to do but forget the socket.
PEER_GONE = (RuntimeError, OSError, WebSocketDisconnect)


def close_reason(text: str) -> str:
    """``text`` cut to what a close frame holds, 123 UTF-8 bytes, never inside a character: a
    longer reason (one non-ASCII character is 2-4 bytes) makes the close itself fail, and the
    client then gets no code at all."""
    data = text.encode("utf-8", "replace")
    if len(data) <= MAX_CLOSE_REASON_BYTES:
        return text
    return data[:MAX_CLOSE_REASON_BYTES].decode("utf-8", "ignore")  # (drops only a character cut in two)


# Frames a socket may get refused as malformed within MALFORMED_WINDOW_S before it is closed:
# a client sending garbage as fast as it can must not keep the server answering it. Malformed:
# the frame itself (not JSON, binary, too large, no string ``type``, an unknown type); a
# well-formed message with a bad field is answered, not counted.
MAX_MALFORMED = 100
MALFORMED_WINDOW_S = 10.0


class WsHub:
    """The set of open sessions of one server process, and how many each subject holds."""

    def __init__(self, max_per_subject: int | None = None, max_sessions: int | None = None) -> None:
        self._sessions: set[WsSession] = set()
        self._per_subject: Counter[tuple[str, str]] = Counter()
        self.max_per_subject = max_per_subject  # None: no limit (operators never have one)
        self.max_sessions = max_sessions  # the whole process's (operators' sockets not counted)
        self._operators = 0
        self.closing = False
        self.refusals: Counter[str] = Counter()  # sockets turned away, by reason (/metrics)
        self._warned_at = -math.inf

    @property
    def operators(self) -> int:
        """Open sessions of operators (not counted against :attr:`max_sessions`)."""
        return self._operators

    @property
    def counted(self) -> int:
        """Open sessions counted against :attr:`max_sessions` (everyone's but operators')."""
        return len(self._sessions) - self._operators

    def at_capacity(self, principal: Principal) -> bool:
        """True when the process already holds as many sockets as it may (operators always get one)."""
        return (self.max_sessions is not None and principal.role is not Role.OPERATOR
                and self.counted >= self.max_sessions)

    def full_for(self, principal: Principal) -> bool:
        """True when ``principal``'s subject already holds as many sockets here as it may."""
        limit = self.max_per_subject
        return (limit is not None and principal.role is not Role.OPERATOR
                and self._per_subject[(principal.role.value, principal.sub)] >= limit)

    def add(self, session: "WsSession") -> None:
        """Count ``session`` (once) in the process's and its subject's sockets."""
        if session not in self._sessions:
            self._sessions.add(session)
            self._per_subject[_subject(session)] += 1
            if session.principal.is_operator:
                self._operators += 1

    def discard(self, session: "WsSession") -> None:
        """Forget ``session`` (a no-op when it is not counted)."""
        if session in self._sessions:
            self._sessions.discard(session)
            if session.principal.is_operator:
                self._operators -= 1
            key = _subject(session)
            self._per_subject[key] -= 1
            if self._per_subject[key] <= 0:
                del self._per_subject[key]

    def __len__(self) -> int:
        return len(self._sessions)

    def refused(self, reason: str) -> None:
        """Count a socket turned away for ``reason``; a full process says so in the log, at most once a minute."""
        self.refusals[reason] += 1
        now = time.monotonic()
        if reason in ("over_capacity", "connections") and now - self._warned_at >= 60:
            self._warned_at = now
            log.warning("refusing %s: this process holds its most; %d WebSockets (of %s) and %d connections "
                        "refused so far", "WebSockets" if reason == "over_capacity" else "connections",
                        self.refusals["over_capacity"], self.max_sessions, self.refusals["connections"])

    async def close_where(self, refuses: Callable[[Principal], bool], reason: str) -> int:
        """Close 1008 (``reason``) every open session whose principal ``refuses`` says must go; how many."""
        sessions = [s for s in self._sessions if refuses(s.principal)]
        await asyncio.gather(*(s.close(CLOSE_POLICY, reason) for s in sessions), return_exceptions=True)
        return len(sessions)

    async def close_all(self, code: int = CLOSE_GOING_AWAY, reason: str = "server shutting down") -> None:
        """Close every open session with ``code`` (1001 on shutdown)."""
        self.closing = True
        sessions = list(self._sessions)
        if sessions:
            log.info("closing %d websocket(s) with %d", len(sessions), code)
            await asyncio.gather(*(s.close(code, reason) for s in sessions), return_exceptions=True)


class WsSession:
    """One accepted, authenticated WebSocket."""

    def __init__(self, websocket: WebSocket, principal: Principal, hub: WsHub, max_frame_bytes: int,
                 revocations: RevocationList | None = None) -> None:
        self.ws = websocket
        self.principal = principal
        self.revocations = revocations
        self.hub = hub
        self.max_frame_bytes = max_frame_bytes
        self.closed = False  # nothing more is sent (we closed, or a send failed)
        self._closed_here = False  # the server closed it: a disconnect after that is our own close's
        self.peer_close_code: int | None = None  # the close code the client sent, if it closed first
        self._malformed = FloodGuard(MAX_MALFORMED, MALFORMED_WINDOW_S)
        self._expiry: asyncio.TimerHandle | None = None
        self._expiring: asyncio.Task[None] | None = None

    @classmethod
    async def open(
        cls, websocket: WebSocket, *, secret: str, revocations: RevocationList, roles: tuple[Role, ...], hub: WsHub,
        max_frame_bytes: int,
    ) -> "WsSession | None":
        """Accept the handshake and check the token (not revoked either); ``None`` (socket closed 1008) on failure."""
        await websocket.accept()
        if hub.closing:
            await websocket.close(CLOSE_TRY_AGAIN, "server shutting down")
            return None
        try:
            principal = authenticate(websocket, secret, revocations, allow_query=True)
            principal.require(*roles)
        except ApiError as err:
            await websocket.close(CLOSE_POLICY, close_reason(f"{err.code}: {err.message}"))
            return None
        if hub.at_capacity(principal):
            hub.refused("over_capacity")
            await websocket.close(CLOSE_TRY_AGAIN, f"over_capacity: this server holds its most WebSockets "
                                                   f"({hub.max_sessions}); try again later or another server")
            return None
        if hub.full_for(principal):
            hub.refused("rate_limited")
            await websocket.close(CLOSE_TRY_AGAIN, f"rate_limited: {hub.max_per_subject} sockets already open "
                                                   f"for this {principal.role.value} here; try again later")
            return None
        session = cls(websocket, principal, hub, max_frame_bytes, revocations)
        hub.add(session)
        session._close_at_expiry()
        websocket.state.ws_session = session  # closes_when_redis_is_down forgets it, however the handler ends
        return session

    def _close_at_expiry(self) -> None:
        """A token is checked at the handshake; a socket that outlives it is closed 1008 when it
        expires (real time, like the token's ``exp``), so access ends when the token says."""
        if math.isfinite(self.principal.expires_at):
            delay = max(0.0, self.principal.expires_at - time.time())
            self._expiry = asyncio.get_running_loop().call_later(delay, self._expire)

    def _expire(self) -> None:
        self._expiring = asyncio.create_task(self.close(CLOSE_POLICY, "unauthorized: token expired"),
                                             name="ws-token-expired")

    async def send(self, message: dict[str, Any]) -> bool:
        """Send one JSON text frame; False when the socket is already gone."""
        if self.closed:
            return False
        try:
            await self.ws.send_text(dumps_str(message))
            return True
        except PEER_GONE:
            self.closed = True
            return False

    async def send_error(self, err: ApiError, ref: Any = None, *, malformed: bool = False) -> bool:
        """Send ``err`` as an error frame; too many malformed frames (refused while read, so
        ``malformed``, or of a type the endpoint does not take) close the socket (1008)."""
        sent = await self.send(err.frame(ref))
        if (malformed or err.code == "unknown_type") and self._malformed.refused(time.monotonic()):
            await self.close(CLOSE_POLICY, f"rate_limited: {MAX_MALFORMED} malformed messages within "
                                           f"{MALFORMED_WINDOW_S:g} s, connection closed")
        return sent

    async def answer(self, msg: dict[str, Any], handling: Awaitable[None]) -> None:
        """Run one message's handler; a typed error, or Redis not answering, becomes an error frame."""
        try:
            await handling
        except ApiError as err:
            await self.send_error(err, msg.get("id"))
        except REDIS_DOWN as exc:
            await self.send_error(redis_unavailable(exc), msg.get("id"))
        except Exception as exc:  # noqa: BLE001 - a bug or a Redis refusal: answer it, keep the socket
            log.error("handling a %r message failed", msg.get("type"), exc_info=exc,
                      extra={"principal": self.principal.sub})
            await self.send_error(ApiError("internal", "the server failed to handle this message; it is logged"),
                                  msg.get("id"))

    async def close(self, code: int, reason: str = "") -> None:
        """Close the socket from the server's side with ``code`` and ``reason``."""
        self._closed_here = True
        if self.closed and self.ws.application_state == WebSocketState.DISCONNECTED:
            return
        self.finish()
        try:
            if self.ws.application_state != WebSocketState.DISCONNECTED:
                await self.ws.close(code, close_reason(reason))
        except PEER_GONE:
            pass

    def finish(self) -> None:
        """Forget the session after its handler returns."""
        self.closed = True
        self.hub.discard(self)
        if self._expiry is not None:
            self._expiry.cancel()

    async def messages(self) -> AsyncIterator[dict[str, Any]]:
        """Yield each valid JSON-object frame; answer bad frames with an error and go on.

        Every yielded message has a string ``type``. Ends when the peer disconnects or
        the session is closed.
        """
        while not self._closed_here:  # (after a failed send, read on: the client's close is queued)
            try:
                raw = await self.ws.receive()
            except PEER_GONE:
                break
            if raw["type"] == "websocket.disconnect":
                if not self._closed_here:  # the client closed first (not an answer to our close)
                    self.peer_close_code = raw.get("code")
                break
            text = raw.get("text")
            if text is None:
                await self.send_error(ApiError("bad_message", "binary frames are not accepted; send JSON text"),
                                      malformed=True)
                continue
            size = len(text) if text.isascii() else len(text.encode())
            if size > self.max_frame_bytes:
                await self.send_error(
                    ApiError("too_large", f"frame of {size} bytes exceeds the limit of {self.max_frame_bytes}"),
                    malformed=True,
                )
                continue
            try:
                msg = loads_object(text)
            except ApiError as err:
                await self.send_error(err, malformed=True)
                continue
            if isinstance(msg.get("id"), (list, dict)) and not _echoable(msg["id"]):
                await self.send_error(ApiError("bad_message", f"this 'id' is nested too deeply to be echoed as 'ref' (keep "
                                                              f"it under {MAX_ID_DEPTH} levels)"), malformed=True)
                continue
            if not isinstance(msg.get("type"), str):
                await self.send_error(ApiError("bad_message", "every message needs a string 'type'"), msg.get("id"),
                                      malformed=True)
                continue
            if self.revocations is not None and self.revocations.refuses(self.principal):
                # Revoked since the handshake: the socket is being closed (tracker.revocations), and a
                # frame read meanwhile (a rider's fix, a kitchen's press) is not acted on.
                await self.close(CLOSE_POLICY, REVOKED_CLOSE)
                break
            yield msg
        self.finish()


MAX_ID_DEPTH = 250  # orjson reads JSON 1,024 levels deep but writes at most 254: an error frame holds the id 1 deeper


def _echoable(value: Any) -> bool:
    """Whether a message's ``id`` can go back in an error frame's ``ref``."""
    try:
        dumps_str({"ref": value})
    except TypeError:  # (orjson.JSONEncodeError: nested too deep to write)
        return False
    return True


def _subject(session: WsSession) -> tuple[str, str]:
    return session.principal.role.value, session.principal.sub


def redis_close_reason(exc: BaseException, what: str = "") -> str:
    """The reason of a 1011 close because Redis stopped answering: ``redis_unavailable: ...``."""
    err = redis_unavailable(exc)
    return close_reason(f"{err.code}: {what or err.message}")


async def _close_quietly(websocket: WebSocket, reason: str) -> None:
    try:
        if websocket.application_state != WebSocketState.DISCONNECTED:
            await websocket.close(CLOSE_INTERNAL, close_reason(reason))
    except PEER_GONE:
        pass


def closes_when_redis_is_down(endpoint: Callable[[WebSocket], Awaitable[None]]) -> Callable[[WebSocket], Awaitable[None]]:
    """Wrap a WebSocket endpoint: if Redis stops answering, close 1011 with a reason, not a bare
    drop; any other failure is logged with its traceback and closes 1011 ``internal``. Either way
    the socket's session is forgotten (no count or memory left behind)."""

    @functools.wraps(endpoint)
    async def guarded(websocket: WebSocket) -> None:
        try:
            await endpoint(websocket)
        except REDIS_DOWN as exc:
            log_failure(log, f"closing {websocket.url.path}", exc)  # one line per kind, not one per socket
            await _close_quietly(websocket, redis_close_reason(exc))
        except Exception as exc:  # noqa: BLE001 - the last place that can report it
            log.error("websocket %s failed", websocket.url.path, exc_info=exc)
            await _close_quietly(websocket, "internal: the server failed; it is logged")
        finally:
            session = getattr(websocket.state, "ws_session", None)
            if session is not None:
                session.finish()

    return guarded
