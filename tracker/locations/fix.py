"""A location fix: its validation at the wire boundary, and the rider record read back."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from tracker.errors import ApiError
from tracker.validate import coordinates, optional_int, optional_number


@dataclass(frozen=True)
class Fix:
    """One accepted GPS fix. ``ts`` is the server time it was received (ms)."""

    lat: float
    lng: float
    ts: int
    client_ts: int | None = None
    speed: float | None = None  # m/s
    heading: float | None = None  # degrees clockwise from north
    accuracy: float | None = None  # metres
    confirmed: bool = False  # accepted by confirming fixes, far from the last good one (sanity.py)
    # Arrived in a backlog (rider_fixes.py): a stalled link may have held it back this long (ms),
    # so the sanity rule takes at least this long to have passed since the last good fix.
    backlog_ms: int = 0


def parse_fix(msg: Mapping[str, Any], now_ms: int) -> Fix:
    """Validate a ``location`` frame; ``bad_coordinates`` / ``bad_message`` on bad fields."""
    lat, lng = coordinates(msg.get("lat"), msg.get("lng"))
    return Fix(
        lat=lat,
        lng=lng,
        ts=now_ms,
        client_ts=optional_int(msg, "ts", lo=0, hi=2**53),
        speed=_reading(msg, "speed", hi=150),
        heading=_reading(msg, "heading", hi=360),
        accuracy=optional_number(msg, "accuracy", lo=0, hi=100_000),
    )


def _reading(msg: Mapping[str, Any], field: str, *, hi: float) -> float | None:
    """An optional sensor reading in ``[0, hi]``; a negative number means the phone does not know
    it (iOS reports -1 for an invalid speed or course) and reads as absent, so the fix's position
    is kept rather than refused. A non-number or one above ``hi`` is ``bad_message``."""
    value = msg.get(field)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
        return None
    return optional_number(msg, field, lo=0, hi=hi)


def require_fresh_client_ts(fix: Fix, max_skew_ms: int) -> None:
    """Refuse a fix whose own timestamp is far from server time (``clock_skew``)."""
    if fix.client_ts is not None and abs(fix.client_ts - fix.ts) > max_skew_ms:
        raise ApiError(
            "clock_skew",
            f"fix timestamp {fix.client_ts} is {abs(fix.client_ts - fix.ts) / 1000:.0f} s away from server "
            f"time {fix.ts}; send server-synchronised time or omit 'ts'",
        )
