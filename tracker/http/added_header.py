"""An ASGI middleware that adds one header to HTTP answers that do not set it themselves."""
from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class AddedHeader:
    """Adds ``header`` (a lower-case name and its value, as bytes) to each HTTP answer that does
    not carry that header yet, except answers to paths starting with ``skip_prefix``."""

    header: tuple[bytes, bytes]
    skip_prefix: str | None = None

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (self.skip_prefix and scope["path"].startswith(self.skip_prefix)):
            await self.app(scope, receive, send)
            return
        name = self.header[0]

        async def marked(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if not any(key.lower() == name for key, _ in headers):
                    headers.append(self.header)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, marked)
