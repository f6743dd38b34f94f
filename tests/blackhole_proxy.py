"""A TCP proxy to Redis that can black-hole pub/sub connections: while :meth:`BlackholeProxy.blackhole`
is on, every connection that has sent SUBSCRIBE has its bytes dropped both ways and stays open,
no RST, no FIN: a half-open TCP connection, or a NAT or firewall that lost the flow's state. Other
connections (commands) pass, so Redis still answers everything but the pub/sub listener.

It runs in a thread of its own (servers started with ``ServerProcess.start`` are waited for
with blocking calls), and can front several Redis nodes (one port each: a Redis Cluster's,
through redis-py's ``address_remap``)::

    proxy = BlackholeProxy()
    port = proxy.listen("127.0.0.1:6379")   # or a unix socket's path
    proxy.blackhole(); ...; proxy.lift()
    proxy.close()
"""
from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field


@dataclass
class Link:
    """One client connection through the proxy."""

    pubsub: bool = False  # it sent SUBSCRIBE
    upstream: bytearray = field(default_factory=bytearray)  # what it passed on to Redis once pub/sub
    dropped: int = 0  # bytes dropped, both ways


class BlackholeProxy:
    def __init__(self) -> None:
        self.links: list[Link] = []
        self._holed = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="blackhole-proxy", daemon=True)
        self._thread.start()
        self._servers: list[asyncio.AbstractServer] = []

    def listen(self, upstream: str) -> int:
        """Forward a new port of 127.0.0.1 to ``upstream`` (``host:port`` or a unix socket path); returns the port."""
        return asyncio.run_coroutine_threadsafe(self._listen(upstream), self._loop).result(10)

    def blackhole(self) -> None:
        """Drop every byte of every pub/sub connection, both ways, until :meth:`lift`."""
        self._holed.set()

    def lift(self) -> None:
        self._holed.clear()

    def pings(self) -> int:
        """PINGs the pub/sub connections have passed on to Redis."""
        return sum(bytes(link.upstream).count(b"PING\r\n") for link in self.links if link.pubsub)

    def close(self) -> None:
        async def stop() -> None:
            for server in self._servers:
                server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)  # (done before the loop stops: no noise)
        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _listen(self, upstream: str) -> int:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                await self._serve(upstream, reader, writer)
            except asyncio.CancelledError:  # (closing; a cancelled handler is logged by Python 3.11's asyncio)
                pass
        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        self._servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    async def _serve(self, upstream: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if ":" in upstream and not upstream.startswith("/"):
                host, port = upstream.rsplit(":", 1)
                up_reader, up_writer = await asyncio.open_connection(host, int(port))
            else:
                up_reader, up_writer = await asyncio.open_unix_connection(upstream)
        except OSError:
            writer.close()
            return
        link = Link()
        self.links.append(link)
        pipes = [asyncio.ensure_future(self._pipe(reader, up_writer, link, True)),
                 asyncio.ensure_future(self._pipe(up_reader, writer, link, False))]
        try:
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pipes:
                task.cancel()
            for w in (writer, up_writer):
                w.close()

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, link: Link, up: bool) -> None:
        try:
            while data := await src.read(65536):
                if up and b"SUBSCRIBE" in data.upper():
                    link.pubsub = True
                if link.pubsub and self._holed.is_set():
                    link.dropped += len(data)
                    continue
                if up and link.pubsub:
                    link.upstream += data
                dst.write(data)
                await dst.drain()
        except (ConnectionError, OSError):
            return
