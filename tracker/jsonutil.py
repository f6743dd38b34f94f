"""One JSON codec for the whole wire: orjson in, orjson out."""
from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

from tracker.errors import ApiError


def dumps(obj: Any) -> bytes:
    """Encode ``obj`` as compact UTF-8 JSON (numpy scalars and arrays allowed)."""
    return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY)


def dumps_str(obj: Any) -> str:
    """Encode ``obj`` as a JSON ``str`` (for WebSocket text frames)."""
    return dumps(obj).decode()


def loads_object(data: str | bytes) -> dict[str, Any]:
    """Decode one JSON object or raise ``ApiError`` (``bad_json`` / ``bad_message``). ``bytes`` are a
    request body (WebSocket text frames come decoded, as ``str``): one that is not UTF-8 is said so."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        if isinstance(data, bytes):
            _refuse_bad_utf8(data)
        raise ApiError("bad_json", f"not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ApiError("bad_message", "a message must be a JSON object")
    return value


def _refuse_bad_utf8(data: bytes) -> None:
    """``bad_json`` naming the first byte that is not UTF-8, if any (orjson's own words blame surrogates)."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError("bad_json", f"not valid JSON: the request body is not valid UTF-8 (byte 0x{data[exc.start]:02x} "
                                   f"at offset {exc.start}); JSON must be UTF-8 text") from None


class JSONResponse(Response):
    """A Starlette response rendered with orjson."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return dumps(content)
