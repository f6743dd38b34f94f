"""The server's clock: real time, or K times faster for replays (``--time-scale K``).

Server time starts equal to the wall clock when the clock is made and then advances
``scale`` times faster. Every stamp (``ts``), timer, interval and timeout in the server
goes through one :class:`Clock`, so a replay speeds the whole server up consistently.
"""
from __future__ import annotations

import asyncio
import time


class Clock:
    """Scaled server time in integer milliseconds since the Unix epoch."""

    def __init__(self, scale: float = 1.0, *, origin_ms: int | None = None) -> None:
        if not scale > 0:
            raise ValueError("time scale must be positive")
        self.scale = float(scale)
        self._mono0 = time.monotonic()
        self._origin_ms = int(time.time() * 1000) if origin_ms is None else int(origin_ms)

    def now_ms(self) -> int:
        """Current server time (ms since epoch)."""
        return self._origin_ms + int((time.monotonic() - self._mono0) * 1000.0 * self.scale)

    def now_s(self) -> float:
        """Current server time in seconds since epoch (float)."""
        return self._origin_ms / 1000.0 + (time.monotonic() - self._mono0) * self.scale

    def real_seconds(self, server_seconds: float) -> float:
        """How many real seconds ``server_seconds`` of server time take."""
        return server_seconds / self.scale

    async def sleep(self, server_seconds: float) -> None:
        """Sleep for ``server_seconds`` of server time."""
        await asyncio.sleep(max(0.0, server_seconds) / self.scale)
