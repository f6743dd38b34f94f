"""The server's clock: real time, or K times faster for replays (``--time-scale K``).

At real speed server time is the wall clock itself, so every process and host (each kept in
time by NTP) stamps alike, however long it has run. A replay's clock starts at ``origin_ms``
(the wall clock, or where the last scaled run on its Redis left off: :func:`tracker.agreement.start_clock`)
and then advances ``scale`` times faster, on the monotonic clock. Every stamp (``ts``), timer, interval and timeout in the server
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
        self._wall = self.scale == 1.0 and origin_ms is None

    def now_ms(self) -> int:
        """Current server time (ms since epoch)."""
        if self._wall:
            return int(time.time() * 1000)
        return self._origin_ms + int((time.monotonic() - self._mono0) * 1000.0 * self.scale)

    def real_seconds(self, server_seconds: float) -> float:
        """How many real seconds ``server_seconds`` of server time take."""
        return server_seconds / self.scale

    async def sleep(self, server_seconds: float) -> None:
        """Sleep for ``server_seconds`` of server time."""
        await asyncio.sleep(max(0.0, server_seconds) / self.scale)
