"""A rider app in a few lines: stream fixes, follow a path, answer offers, report progress.

    async with await RiderClient.connect("ws://127.0.0.1:8000", token) as rider:
        await rider.location(52.52, 13.40)
        offer = await rider.expect("offer")
        await rider.accept(offer["offer_id"])
"""
from __future__ import annotations

import asyncio
from typing import Any, Iterable

from clients._socket import JsonSocket


class RiderClient(JsonSocket):
    """One rider's connection to ``/v1/ws/rider``."""

    @classmethod
    async def connect(cls, base_url: str, token: str, **kwargs: Any) -> "RiderClient":
        """Open ``/v1/ws/rider`` on ``base_url`` (``ws://host:port``)."""
        sock = await JsonSocket.open(base_url.rstrip("/") + "/v1/ws/rider", token, **kwargs)
        return cls(sock.ws)

    async def location(self, lat: float, lng: float, **extra: Any) -> None:
        """Send one fix (``speed``, ``heading``, ``accuracy``, ``ts`` optional)."""
        await self.send({"type": "location", "lat": lat, "lng": lng, **extra})

    async def availability(self, available: bool, shift_end: int | None = None,
                           shift_start: int | None = None) -> None:
        """Take offers or not; a shift's end and an announced, later start (server ms)."""
        msg: dict[str, Any] = {"type": "availability", "available": available}
        if shift_end is not None:
            msg["shift_end"] = shift_end
        if shift_start is not None:
            msg["shift_start"] = shift_start
        await self.send(msg)

    async def accept(self, offer_id: str) -> None:
        await self.send({"type": "accept", "offer_id": offer_id})

    async def decline(self, offer_id: str) -> None:
        await self.send({"type": "decline", "offer_id": offer_id})

    async def progress(self, order_id: str, step: str) -> None:
        await self.send({"type": "progress", "order_id": order_id, "step": step})

    async def release(self, order_id: str, reason: str | None = None) -> None:
        """Hand an accepted order back before pickup; dispatch offers it to another rider."""
        msg: dict[str, Any] = {"type": "release", "order_id": order_id}
        if reason is not None:
            msg["reason"] = reason
        await self.send(msg)

    async def follow(self, path: Iterable[tuple[float, float]], rate_hz: float = 1.0) -> None:
        """Send one fix per point of ``path`` at ``rate_hz``."""
        for lat, lng in path:
            await self.location(lat, lng)
            await asyncio.sleep(1.0 / rate_hz)
