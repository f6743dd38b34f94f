"""``X-Content-Type-Options: nosniff`` on every HTTP answer: the API's JSON, the pages, their
static files and the errors alike.

An answer is read as the type it names, never guessed from its bytes: a JSON body that echoes
client text (an order id, a reason) could otherwise be taken for HTML or a script by a browser
sniffing it. Set once here (and in the raw answers sent before a request reaches the app,
:mod:`tracker.http.head_timeout`), not per endpoint.
"""
from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = (b"x-content-type-options", b"nosniff")


class NoSniff:
    """ASGI middleware adding :data:`HEADER` to each HTTP response that does not carry it yet."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def marked(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if not any(name.lower() == HEADER[0] for name, _ in headers):
                    headers.append(HEADER)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, marked)
