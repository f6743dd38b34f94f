"""What every client socket shares: JSON frames, waiting for a frame of a given type."""
from __future__ import annotations

import asyncio
from typing import Any, Callable

import orjson
import websockets


class BadFrame(ValueError):
    """The server sent a frame that is not a JSON object (the tracker never does: something
    else answered, or a proxy in the way garbled it). The socket stays usable."""

    def __init__(self, raw: str | bytes) -> None:
        text = raw if isinstance(raw, str) else raw.decode(errors="replace")
        shown = text if len(text) <= 60 else text[:57] + "..."
        super().__init__(f"the server sent a frame that is not a JSON object: {shown!r}")


def parse_frame(raw: str | bytes) -> dict[str, Any]:
    """A frame as the JSON object it must be; :class:`BadFrame` otherwise."""
    try:
        frame = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadFrame(raw) from None
    if not isinstance(frame, dict):
        raise BadFrame(raw)
    return frame


class JsonSocket:
    """A WebSocket speaking the tracker's JSON frames, with a buffer of frames not yet taken."""

    def __init__(self, ws: websockets.ClientConnection) -> None:
        self.ws = ws
        self.received: list[dict[str, Any]] = []

    @classmethod
    async def open(cls, url: str, token: str, **kwargs: Any) -> "JsonSocket":
        """Connect with the token in the Authorization header.

        Closing waits at most a second for the server's reply: a client that stopped reading
        (frames queued past ``max_queue``) never sees that reply, and would otherwise wait the
        library's default 10 s on every close or reconnect.
        """
        kwargs.setdefault("close_timeout", 1.0)
        ws = await websockets.connect(url, additional_headers={"Authorization": f"Bearer {token}"}, **kwargs)
        return cls(ws)

    async def send(self, message: dict[str, Any]) -> None:
        """Send ``message`` as one JSON text frame."""
        await self.ws.send(orjson.dumps(message).decode())

    async def recv(self, timeout: float = 10.0) -> dict[str, Any]:
        """The next frame (buffered ones first); :class:`BadFrame` for one that is not a JSON object."""
        if self.received:
            return self.received.pop(0)
        return parse_frame(await asyncio.wait_for(self.ws.recv(), timeout))

    async def expect(self, match: str | Callable[[dict[str, Any]], bool], timeout: float = 10.0) -> dict[str, Any]:
        """The first frame of type ``match`` (or satisfying it); other frames stay buffered
        (:class:`BadFrame` for one that is not a JSON object)."""
        test = (lambda m: m.get("type") == match) if isinstance(match, str) else match
        for i, frame in enumerate(self.received):
            if test(frame):
                return self.received.pop(i)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise asyncio.TimeoutError(f"no frame matching {match!r} within {timeout} s")
            frame = parse_frame(await asyncio.wait_for(self.ws.recv(), remaining))
            if test(frame):
                return frame
            self.received.append(frame)

    async def close(self) -> None:
        """Close the WebSocket."""
        await self.ws.close()

    async def __aenter__(self) -> "JsonSocket":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
