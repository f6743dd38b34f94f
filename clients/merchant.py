"""A merchant's kitchen tablet: the feed of its orders, confirm / ready / delay, prompts."""
from __future__ import annotations

from typing import Any

from clients._socket import JsonSocket


class MerchantClient(JsonSocket):
    """One merchant's connection to ``/v1/ws/merchant``."""

    @classmethod
    async def connect(cls, base_url: str, token: str, last_event_id: str | None = None, **kwargs: Any) -> "MerchantClient":
        url = base_url.rstrip("/") + "/v1/ws/merchant"
        if last_event_id:
            url += f"?last_event_id={last_event_id}"
        sock = await JsonSocket.open(url, token, **kwargs)
        return cls(sock.ws)

    async def confirm(self, order_id: str) -> None:
        await self.send({"type": "confirm", "order_id": order_id})

    async def ready(self, order_id: str) -> None:
        await self.send({"type": "ready", "order_id": order_id})

    async def delay(self, order_id: str, minutes: float) -> None:
        await self.send({"type": "delay", "order_id": order_id, "minutes": minutes})

    async def event(self, order_id: str, kind: str, timeout: float = 10.0) -> dict[str, Any]:
        """Wait for the feed event ``kind`` of ``order_id``."""
        return await self.expect(lambda f: f.get("type") == "event" and f.get("order_id") == order_id and f.get("kind") == kind, timeout)
