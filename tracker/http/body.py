"""Reading a JSON request body without ever holding more than the limit in memory."""
from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request

from tracker.errors import ApiError
from tracker.jsonutil import loads_object
from tracker.runtime import runtime_of

MAX_BODY_BYTES = 64 * 1024


async def json_body(request: Request, limit: int = MAX_BODY_BYTES) -> dict[str, Any]:
    """The request's JSON object (``{}`` when empty); ``too_large`` as soon as it passes ``limit``,
    ``request_timeout`` when it has not arrived whole within ``TRACKER_BODY_TIMEOUT_S``.

    A declared ``Content-Length`` over the limit is refused before reading; otherwise the body is
    read chunk by chunk and refused at the first byte beyond it (a client may lie or stream).
    """
    too_large = ApiError("too_large", f"request body larger than {limit // 1024} KiB", headers={"Connection": "close"})
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large
    timeout_s = runtime_of(request).settings.body_timeout_s
    chunks, size = [], 0
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise too_large
                chunks.append(chunk)
    except TimeoutError:
        raise ApiError("request_timeout", f"the request body did not arrive whole within {timeout_s:g} s",
                       headers={"Connection": "close"}) from None  # (the rest of the body would be read as a request)
    raw = b"".join(chunks)
    return loads_object(raw or b"{}")
