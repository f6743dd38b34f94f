"""A TCP proxy whose link can stall: while stalled it forwards nothing either way and closes
nothing, so TCP holds the bytes (in the proxy's buffers and the kernels') and neither end sees
an error; :meth:`StallProxy.resume` lets everything held go on at once, in order. That is a
mobile link that stops for a while shorter than the keepalive (a tunnel, a cell handover): a
client that kept writing meanwhile has its backlog delivered in one burst.

    proxy = StallProxy(server.port)
    port = await proxy.start()      # connect to 127.0.0.1:port instead of the server
    proxy.stall(); ...; proxy.resume()
    proxy.close()
"""
from __future__ import annotations

import asyncio


class StallProxy:
    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.connections = 0  # accepted so far
        self.forwarded = {"up": 0, "down": 0}  # bytes passed on, client -> server and back
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        """Listen on a free port of 127.0.0.1; returns it."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def stalled(self) -> bool:
        return not self._flowing.is_set()

    def stall(self) -> None:
        """Stop forwarding, both ways, on every connection (and on new ones)."""
        self._flowing.clear()

    def resume(self) -> None:
        """Forward again: what was held goes on at once."""
        self._flowing.set()

    def close(self) -> None:
        """Stop listening and drop every connection."""
        if self._server is not None:
            self._server.close()
        for task in self._tasks:
            task.cancel()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.close()
            return
        pipes = [asyncio.ensure_future(self._pipe(reader, up_writer, "up")),
                 asyncio.ensure_future(self._pipe(up_reader, writer, "down"))]
        self._tasks.update(pipes)
        try:
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pipes:
                task.cancel()
                self._tasks.discard(task)
            for w in (writer, up_writer):
                w.close()

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, direction: str) -> None:
        try:
            while True:
                await self._flowing.wait()
                data = await src.read(65536)
                if not data:
                    return
                await self._flowing.wait()  # (read just as the link stalled: held too)
                dst.write(data)
                await dst.drain()
                self.forwarded[direction] += len(data)
        except (ConnectionError, OSError):
            return
