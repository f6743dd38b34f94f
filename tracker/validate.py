"""Field validators shared by every endpoint: ids, coordinates, numbers, booleans.

Each raises :class:`~tracker.errors.ApiError` with a stable code and a message that
names the field, so handlers can validate a message in a few lines.
"""
from __future__ import annotations

import math
import re
import unicodedata
from typing import Any, Mapping

from tracker.errors import ApiError

# Not only dots: a browser resolves "." and ".." in every address a page builds (/track/..,
# /v1/riders/../pause) as path segments, so such an order or rider could never be reached.
ID_RE = re.compile(r"(?!\.+\Z)[A-Za-z0-9_.:-]{1,64}")  # whole string only: fullmatch (``$`` also matches before a final newline)
ID_RULE = "1-64 characters from [A-Za-z0-9_.:-], not only dots"  # what every refusal of an id says
# A number as it is written in a URL's query: ASCII digits, an optional sign, fraction and
# exponent; no spaces, underscores or other scripts' digits (which ``float()`` accepts).
PLAIN_NUMBER_RE = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_MISSING = object()


def is_valid_id(value: object) -> bool:
    """True for a string of 1-64 characters from ``[A-Za-z0-9_.:-]`` that is not only dots."""
    return isinstance(value, str) and ID_RE.fullmatch(value) is not None


def plain_number(raw: str) -> float | None:
    """``raw`` read as a plain decimal number, or ``None`` when it is not one."""
    return float(raw) if PLAIN_NUMBER_RE.fullmatch(raw) else None


def require_id(msg: Mapping[str, Any], field: str) -> str:
    """The id in ``msg[field]`` or ``bad_message``."""
    value = msg.get(field, _MISSING)
    if value is _MISSING:
        raise ApiError("bad_message", f"missing required field '{field}'")
    if not is_valid_id(value):
        raise ApiError("bad_message", f"'{field}' must be a string of {ID_RULE}")
    return value  # type: ignore[return-value]


def _number(value: Any, field: str, code: str) -> float:
    # bool is an int subclass; true/false is never a number on our wire.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ApiError(code, f"'{field}' must be a number")
    number = float(value) + 0.0  # (-0.0 is read as 0: the same order, the same position, when sent again as 0)
    if not math.isfinite(number):
        raise ApiError(code, f"'{field}' must be finite")
    return number


def require_number(msg: Mapping[str, Any], field: str, *, lo: float | None = None, hi: float | None = None) -> float:
    """A finite number in ``[lo, hi]`` from ``msg[field]`` or ``bad_message``."""
    if field not in msg:
        raise ApiError("bad_message", f"missing required field '{field}'")
    number = _number(msg[field], field, "bad_message")
    if (lo is not None and number < lo) or (hi is not None and number > hi):
        raise ApiError("bad_message", f"'{field}' must be between {lo} and {hi}, got {msg[field]}")  # as sent: -1, not -1.0
    return number


def optional_number(msg: Mapping[str, Any], field: str, *, lo: float | None = None, hi: float | None = None) -> float | None:
    """Like :func:`require_number` but ``None`` when absent or null."""
    if msg.get(field) is None:
        return None
    return require_number(msg, field, lo=lo, hi=hi)


def optional_int(msg: Mapping[str, Any], field: str, *, lo: int | None = None, hi: int | None = None) -> int | None:
    """A whole number in ``[lo, hi]`` (e.g. a ts in ms) or ``None``; a fraction is ``bad_message``, never truncated."""
    number = optional_number(msg, field, lo=lo, hi=hi)
    if number is None:
        return None
    if not number.is_integer():
        raise ApiError("bad_message", f"'{field}' must be a whole number, got {msg[field]}")
    whole = msg[field] if isinstance(msg[field], int) else int(number)
    if (lo is not None and whole < lo) or (hi is not None and whole > hi):  # (past 2**53 a float rounds: 2**53 + 1 passed)
        raise ApiError("bad_message", f"'{field}' must be between {lo} and {hi}, got {msg[field]}")
    return whole


MAX_REASON_CHARS = 200

# The bidi embeddings, overrides (U+202A-U+202E) and isolates (U+2066-U+2069): a reason shown on
# a page could reverse its own words ("\u202edeliver o3 to ...") or the page's text around it (the
# ops page's confirm question). Right-to-left letters (Arabic, Hebrew) need none of them.
_DIRECTION_CONTROLS = frozenset(map(chr, [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]))


def optional_reason(msg: Mapping[str, Any], field: str = "reason") -> str | None:
    """An optional free-text reason: a string of at most 200 characters without control
    characters (a line break, NUL, ...) or direction controls, else ``bad_message``."""
    reason = msg.get(field)
    if reason is None:
        return None
    if not isinstance(reason, str) or len(reason) > MAX_REASON_CHARS:
        raise ApiError("bad_message", f"'{field}' must be a string of at most {MAX_REASON_CHARS} characters")
    if any(unicodedata.category(ch) == "Cc" for ch in reason):
        raise ApiError("bad_message", f"'{field}' must be one line of text: no control characters "
                                      "(line breaks, tabs, U+0000-U+001F, U+007F-U+009F)")
    if any(ch in _DIRECTION_CONTROLS for ch in reason):
        raise ApiError("bad_message", f"'{field}' must not hold direction-control characters "
                                      "(U+202A-U+202E, U+2066-U+2069): they reorder the text around them")
    return reason


# Characters that show as nothing but are neither whitespace nor format characters (category
# Cf, the zero-width ones): the Braille blank and the Hangul fillers.
_INVISIBLE = frozenset("\u2800\u3164\u115f\u1160\uffa0")


# Format characters (zero-width ones) and combining marks with nothing to combine with.
_BLANK_CATEGORIES = frozenset({"Cf", "Mn", "Me"})


def _blank(text: str) -> bool:
    return all(ch.isspace() or ch in _INVISIBLE or unicodedata.category(ch) in _BLANK_CATEGORIES for ch in text)


def require_reason(msg: Mapping[str, Any], field: str = "reason") -> str:
    """A required free-text reason: as :func:`optional_reason`, and not missing or blank
    (invisible characters and combining marks only count as blank)."""
    reason = optional_reason(msg, field)
    if reason is None or _blank(reason):
        raise ApiError("bad_message", f"'{field}' is required: a string of 1 to {MAX_REASON_CHARS} characters")
    return reason


def path_id(value: str, what: str) -> str:
    """An id from a URL path (an order's, a rider's: ``what``), else ``bad_request``."""
    if not is_valid_id(value):
        raise ApiError("bad_request", f"{what} ids are {ID_RULE}")
    return value


def optional_bool(msg: Mapping[str, Any], field: str) -> bool:
    """A JSON boolean from ``msg[field]``, ``False`` when absent or null, else ``bad_message``."""
    return False if msg.get(field) is None else require_bool(msg, field)


def require_bool(msg: Mapping[str, Any], field: str) -> bool:
    """A JSON boolean from ``msg[field]`` or ``bad_message``."""
    value = msg.get(field, _MISSING)
    if not isinstance(value, bool):
        raise ApiError("bad_message", f"'{field}' must be true or false")
    return value


def coordinates(lat: Any, lng: Any) -> tuple[float, float]:
    """Validate a WGS84 position: finite ``lat`` in [-90, 90], ``lng`` in [-180, 180]."""
    if lat is None or lng is None:
        raise ApiError("bad_coordinates", "both 'lat' and 'lng' are required")
    la = _number(lat, "lat", "bad_coordinates")
    ln = _number(lng, "lng", "bad_coordinates")
    if not -90.0 <= la <= 90.0:
        raise ApiError("bad_coordinates", f"'lat' must be in [-90, 90], got {la}")
    if not -180.0 <= ln <= 180.0:
        raise ApiError("bad_coordinates", f"'lng' must be in [-180, 180], got {ln}")
    return la, ln


def require_point(msg: Mapping[str, Any], field: str) -> tuple[float, float]:
    """A ``{"lat", "lng"}`` object from ``msg[field]``."""
    value = msg.get(field)
    if not isinstance(value, Mapping):
        raise ApiError("bad_message", f"'{field}' must be an object with 'lat' and 'lng'")
    return coordinates(value.get("lat"), value.get("lng"))
