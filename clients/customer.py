"""A customer's phone: watch one order, resume after a drop with the last event id seen.

    watcher = CustomerClient("ws://127.0.0.1:8000", token, order_id)
    await watcher.connect()
    frame = await watcher.next()      # events, rider_location, resync...
    await watcher.reconnect()         # resumes after watcher.last_event_id
"""
from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from clients._socket import JsonSocket


class CustomerClient:
    """Follows ``/v1/ws/customer`` for one order across reconnects."""

    def __init__(self, base_url: str, token: str, order_id: str) -> None:
        self.base_url, self.token, self.order_id = base_url.rstrip("/"), token, order_id
        self.last_event_id: str | None = None
        self.events: list[dict[str, Any]] = []
        self.sock: JsonSocket | None = None

    def url(self) -> str:
        query = {"order_id": self.order_id}
        if self.last_event_id:
            query["last_event_id"] = self.last_event_id
        return f"{self.base_url}/v1/ws/customer?{urlencode(query)}"

    async def connect(self) -> "CustomerClient":
        self.sock = await JsonSocket.open(self.url(), self.token)
        return self

    async def next(self, timeout: float = 10.0) -> dict[str, Any]:
        """The next frame; events are remembered and advance ``last_event_id``."""
        assert self.sock is not None, "connect first"
        frame = await self.sock.recv(timeout)
        if frame.get("type") == "event":
            self.events.append(frame)
            self.last_event_id = frame["id"]
        return frame

    async def next_event(self, timeout: float = 10.0) -> dict[str, Any]:
        """The next ``event`` frame, skipping ephemeral ones."""
        while True:
            frame = await self.next(timeout)
            if frame.get("type") in ("event", "resync", "error"):
                return frame

    async def reconnect(self) -> "CustomerClient":
        await self.close()
        return await self.connect()

    async def close(self) -> None:
        if self.sock is not None:
            await self.sock.close()
            self.sock = None
