"""A reverse proxy that asks for HTTP Basic auth on every request, WebSocket handshakes included,
as nginx's ``auth_basic`` does in front of a server: without the right ``Authorization: Basic``
it answers its own 401 (an HTML page, not the server's JSON), else it passes the request on
as it came (Authorization included). One request per connection (``connection: close``
upstream), so each one is checked; a WebSocket's bytes go both ways once its handshake is."""
from __future__ import annotations

import asyncio
import base64

DENIED = b"<html><head><title>401 Authorization Required</title></head><body>401 Authorization Required</body></html>"


class BasicAuthProxy:
    def __init__(self, upstream_port: int, user: str = "u", password: str = "p") -> None:
        self.upstream_port = upstream_port
        self.expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self.denied: list[str] = []  # "METHOD path" of every request turned away
        self.passed: list[str] = []
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    def close(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            writer.close()
            return
        lines = head.decode("latin-1").split("\r\n")
        request = " ".join(lines[0].split(" ")[:2])
        headers = [line.split(":", 1) for line in lines[1:] if ":" in line]
        auth = [v.strip() for k, v in headers if k.strip().lower() == "authorization"]
        if auth != [self.expected]:
            self.denied.append(request)
            writer.write(b"HTTP/1.1 401 Unauthorized\r\nwww-authenticate: Basic realm=\"tracker\"\r\n"
                         b"content-type: text/html\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % len(DENIED) + DENIED)
            await writer.drain()
            writer.close()
            return
        self.passed.append(request)
        upgrade = any(k.strip().lower() == "upgrade" for k, _ in headers)
        if not upgrade:  # one request per connection: the next one comes on a new one, and is checked
            kept = [f"{k}:{v}" for k, v in headers if k.strip().lower() != "connection"]
            head = "\r\n".join([lines[0], *kept, "connection: close", "", ""]).encode("latin-1")
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return
        up_writer.write(head)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer), return_exceptions=True)
