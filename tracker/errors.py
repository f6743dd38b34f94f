"""Typed errors with a stable ``code`` and a human ``message``.

Every error a client can see is an :class:`ApiError`. HTTP maps it to a status and the
body ``{"error": {"code", "message"}}``; a WebSocket sends it as an ``error`` frame.
The codes are part of the wire contract (docs/protocol.md).
"""
from __future__ import annotations

from typing import Any

# code -> HTTP status. One table, used by every HTTP handler.
STATUS_BY_CODE: dict[str, int] = {
    "bad_json": 400,
    "bad_message": 400,
    "bad_coordinates": 400,
    "bad_request": 400,
    "unknown_type": 400,
    "too_large": 413,
    "request_timeout": 408,
    "rate_limited": 429,
    "implausible_fix": 422,
    "clock_skew": 422,
    "out_of_order_fix": 422,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "method_not_allowed": 405,
    "conflict": 409,
    "invalid_transition": 409,
    "too_many_delays": 409,
    "upgrade_required": 426,
    "redis_unavailable": 503,
    "over_capacity": 503,
    "clock_disagreement": 503,  # (/readyz of a process whose host clock is off Redis's)
    "internal": 500,
}


class ApiError(Exception):
    """An error a client sees, with a stable ``code`` and a human ``message``."""

    def __init__(self, code: str, message: str, *, status: int | None = None, headers: dict[str, str] | None = None,
                 **extra: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status if status is not None else STATUS_BY_CODE.get(code, 400)
        self.headers = headers or {}  # HTTP response headers (e.g. Connection: close)
        self.extra = extra

    def body(self) -> dict[str, Any]:
        """The HTTP body: ``{"error": {"code", "message", ...extra}}``."""
        return {"error": {"code": self.code, "message": self.message, **self.extra}}

    def frame(self, ref: Any = None) -> dict[str, Any]:
        """The WebSocket error frame, echoing the offending message's ``id`` as ``ref``."""
        out: dict[str, Any] = {"type": "error", "code": self.code, "message": self.message, **self.extra}
        if ref is not None:
            out["ref"] = ref
        return out

    def __repr__(self) -> str:
        return f"ApiError({self.code!r}, {self.message!r})"


class SettingsError(Exception):
    """A setting is missing or invalid; the message names the setting."""


class StartupError(Exception):
    """The server cannot start (port in use, Redis unreachable, data folder unusable)."""


class ServerLost(Exception):
    """A running server had to stop: something it cannot run without is gone (exit status 1)."""
