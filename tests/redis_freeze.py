"""Freeze a real Redis (SIGSTOP) at the very moment a chosen command is on its way to it.

Freezing Redis from a test at a chosen wall-clock moment cannot say which of a step's commands
(its reads, its journal entry, the atomic Lua step) was caught. :class:`FreezingRelay` sits
between a ``tracker serve`` and its Redis and passes every byte on unchanged; armed with
:meth:`freeze_before`, it stops the ``redis-server`` process with SIGSTOP just before it passes
on the first chunk that holds every given marker, then passes it on: that command waits in the
stopped Redis's socket exactly as one sent a moment before a real freeze does. The test sends
SIGCONT (:meth:`thaw`) when it wants Redis back. Armed with :meth:`hold_before` instead, it
keeps that one command back (Redis runs on) until :meth:`let_go`: one process's step arrives late
while others go on, as when that process stalls just before sending it.
"""
from __future__ import annotations

import asyncio
import os
import signal
import threading

from tracker.embedded_redis import EmbeddedRedis, free_port


class FreezingRelay:
    """A TCP relay to ``redis``, on its own event loop in a thread (a test's loop may block,
    e.g. while ``ServerProcess.start`` waits for the server); ``url`` is its address."""

    def __init__(self, redis: EmbeddedRedis) -> None:
        assert redis.url is not None and redis.url.startswith("redis://") and redis.pid is not None, \
            "the relay forwards TCP: start the EmbeddedRedis with a port"
        self.target = redis.url.removeprefix("redis://").split("/")[0].rpartition(":")
        self.pid = redis.pid
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._markers: tuple[bytes, ...] = ()
        self._frozen = threading.Event()
        self._hold: tuple[bytes, ...] = ()
        self._held = threading.Event()
        self._go: asyncio.Event | None = None
        self._loop = asyncio.new_event_loop()
        threading.Thread(target=self._loop.run_forever, daemon=True, name="freezing-relay").start()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(timeout=10)

    def freeze_before(self, *markers: bytes) -> None:
        """Stop Redis just before the next chunk sent to it that holds every one of ``markers``."""
        self._frozen.clear()
        self._loop.call_soon_threadsafe(setattr, self, "_markers", markers)

    async def frozen(self, timeout: float = 10.0) -> None:
        """Wait until the armed freeze happened (``AssertionError`` if it did not in time)."""
        assert await asyncio.to_thread(self._frozen.wait, timeout), "the command to freeze on never went to Redis"

    def hold_before(self, *markers: bytes) -> None:
        """Keep back the next chunk that holds every one of ``markers`` until :meth:`let_go`."""
        self._held.clear()
        self._loop.call_soon_threadsafe(setattr, self, "_hold", markers)

    async def held(self, timeout: float = 10.0) -> None:
        """Wait until the armed hold caught its command (``AssertionError`` if not in time)."""
        assert await asyncio.to_thread(self._held.wait, timeout), "the command to hold never went to Redis"

    def let_go(self) -> None:
        """Pass the held command on to Redis."""
        self._loop.call_soon_threadsafe(lambda: self._go and self._go.set())

    def thaw(self) -> None:
        """SIGCONT: Redis reads what waited in its sockets and goes on."""
        os.kill(self.pid, signal.SIGCONT)

    def close(self) -> None:
        """Stop relaying; a Redis left frozen is thawed, a command left held is let go."""
        self.thaw()
        self.let_go()
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)

    def __enter__(self) -> "FreezingRelay":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)

    async def _stop(self) -> None:
        self._server.close()

    async def _relay(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        host, _, port = self.target
        try:
            redis_r, redis_w = await asyncio.open_connection(host, int(port))
        except OSError:
            client_w.close()
            return
        await asyncio.gather(self._pipe(client_r, redis_w, watch=True), self._pipe(redis_r, client_w, watch=False))

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, *, watch: bool) -> None:
        tail = b""  # (a marker split across two chunks is still seen)
        try:
            while data := await src.read(65536):
                if watch and self._markers and all(m in tail + data for m in self._markers):
                    os.kill(self.pid, signal.SIGSTOP)
                    self._markers = ()
                    self._frozen.set()
                if watch and self._hold and all(m in tail + data for m in self._hold):
                    self._hold, self._go = (), asyncio.Event()
                    self._held.set()
                    await self._go.wait()
                tail = data[-256:]
                dst.write(data)
                await dst.drain()
        except OSError:
            pass
        finally:
            dst.close()
