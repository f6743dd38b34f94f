"""The last answer to an HTTP request whose handler failed unexpectedly: 500 ``internal``.

Starlette's own last-resort handler sends its response and then re-raises to the server,
which logs the traceback a second time and closes the connection, sometimes before the client
has read the answer. This middleware sits inside it: it logs the failure once and answers
``{"error": {"code": "internal", ...}}``, and only a failure after the response began (nothing
left to answer with) goes on to the server. A client that left while its body was being read
(a flaky network) is no failure: a debug line, no answer.
"""
from __future__ import annotations

import logging

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tracker.errors import ApiError
from tracker.jsonutil import JSONResponse

log = logging.getLogger("tracker.app")


class AnswerUnexpected:
    """ASGI middleware: an unexpected exception in an HTTP handler becomes a logged 500 ``internal``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except ClientDisconnect:  # left before its body arrived whole: no one to answer, nothing went wrong here
            log.debug("client left during %s %s before its request body arrived", scope["method"], scope["path"])
        except Exception:
            log.exception("unhandled error on %s %s", scope["method"], scope["path"])
            if started:
                raise
            err = ApiError("internal", "internal server error")
            await JSONResponse(err.body(), status_code=err.status)(scope, receive, send)
