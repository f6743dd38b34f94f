"""Structured logging: one JSON object a line (or readable text), with extra fields kept.

Tokens never reach the log: uvicorn logs every WebSocket handshake with its URL, and pages
pass their token in the query string, so every record's ``token=`` value is masked; at debug
the WebSocket layer also logs each handshake header, so ``Bearer`` credentials are masked too.
:func:`log_failure` keeps an outage readable: a failure because Redis is down is one line,
at most every few seconds per kind, not a traceback per rider fix.
"""
from __future__ import annotations

import asyncio
import logging
import re
import sys
import time
from typing import Any
from urllib.parse import unquote_plus

import orjson

from tracker.redis_client import REDIS_DOWN

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime", "taskName", "color_message"}


THROTTLE_S = 10.0
_last_logged: dict[tuple[str, str], tuple[float, int]] = {}  # (logger, message) -> (last logged, held back)


def log_throttled(logger: logging.Logger, message: str, detail: str = "", *, level: int = logging.ERROR,
                  **extra: Any) -> None:
    """``message`` (and ``detail``) at ``level``, at most once per :data:`THROTTLE_S` for this logger
    and message; the line says how many like it were held back since the last one. Those held
    back are counted in a line of their own at the end of the window (when an event loop runs),
    so a burst that stops is counted whole all the same."""
    key, now = (logger.name, message), time.monotonic()
    last, held_back = _last_logged.get(key, (-THROTTLE_S, 0))
    if now - last < THROTTLE_S:
        _last_logged[key] = (last, held_back + 1)
        if not held_back:
            _count_later(logger, message, level, last)
        return
    _last_logged[key] = (now, 0)
    logger.log(level, "%s%s%s", message, f" ({detail})" if detail else "",
               f"; {held_back} more like it in the last {now - last:.0f} s" if held_back else "", extra=extra)


def _count_later(logger: logging.Logger, message: str, level: int, since: float) -> None:
    """At the end of the window opened at ``since``: log how many lines it held back, if none did."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # (no loop: the next line counts them)
        return
    loop.call_later(max(0.0, since + THROTTLE_S - time.monotonic()), _count_held_back, logger, message, level, since)


def _count_held_back(logger: logging.Logger, message: str, level: int, since: float) -> None:
    key, now = (logger.name, message), time.monotonic()
    last, held_back = _last_logged.get(key, (-THROTTLE_S, 0))
    if last != since or not held_back:
        return  # a line since counted them
    _last_logged[key] = (now, 0)  # (a new window: what comes next is held back and counted likewise)
    logger.log(level, "%s; %d more like it in the last %.0f s", message, held_back, now - since)


class Reported(Exception):
    """A failure whose message says all there is to say (what is wrong and what to do): logged
    as one line, without a traceback, which would only point at where it was noticed."""


def log_failure(logger: logging.Logger, message: str, exc: BaseException, **extra: Any) -> None:
    """Log a failure: with its traceback, unless Redis is down (then one line, throttled) or it
    is a :class:`Reported` one (one line)."""
    if isinstance(exc, Reported):
        logger.error("%s: %s", message, exc, extra=extra)
        return
    if not isinstance(exc, REDIS_DOWN):
        logger.error(message, exc_info=exc, extra=extra)
        return
    log_throttled(logger, f"{message}: Redis unavailable", f"{type(exc).__name__}: {exc}", **extra)


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD}


_TOKEN_IN_URL = re.compile(r"([?&](?:access_)?token=)[^&#\s\"']+", re.IGNORECASE)
# "authorization: Bearer <jwt>" (a handshake header the WebSocket layer logs at debug), any scheme.
_BEARER = re.compile(r"(\bbearer\s+)[^\s\"',;]+", re.IGNORECASE)
# "x-tracker-token: <jwt>", the pages' own header for it (tracker.auth.TOKEN_HEADER).
_TOKEN_HEADER = re.compile(r"(\bx-tracker-token\s*:\s*)[^\s\"',;]+", re.IGNORECASE)
# A signed token wherever it stands (a parameter name spelt %74oken, say): every JWT's header
# is base64url JSON, so it starts "eyJ", and its three parts are joined by dots.
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
# A query parameter as logged, percent-escapes and all: the server decodes the name and value
# it reads, so ``?%74oken=%65yJ...%2E...`` is a token the patterns above would not know.
_PARAM = re.compile(r"([?&])([^=&#\s\"']+)=([^&#\s\"']*)")
_TOKEN_NAMES = ("token", "access_token")


def _masked_param(match: re.Match[str]) -> str:
    sep, name, value = match.groups()
    if unquote_plus(name).lower() in _TOKEN_NAMES or _JWT.search(unquote_plus(value)):
        return f"{sep}{name}=***"
    return match.group(0)


def mask_tokens(text: str) -> str:
    """``text`` with the value of every ``token=`` URL parameter, every ``Bearer`` credential,
    every ``X-Tracker-Token`` header and any other signed token (JWT) replaced by ``***``."""
    lowered = text.lower()
    if "token=" in lowered:
        text = _TOKEN_IN_URL.sub(r"\1***", text)
    if "bearer" in lowered:
        text = _BEARER.sub(r"\1***", text)
    if "x-tracker-token" in lowered:
        text = _TOKEN_HEADER.sub(r"\1***", text)
    if "eyJ" in text:
        text = _JWT.sub("***", text)
    if "%" in text:
        text = _PARAM.sub(_masked_param, text)
    return text


class MaskTokens(logging.Filter):
    """Masks ``token=`` values in a record's message and its string extras."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record is the formatter's problem
            return True
        masked = mask_tokens(message)
        if masked != message:
            record.msg, record.args = masked, ()
        for key, value in _extras(record).items():
            if isinstance(value, str):
                setattr(record, key, mask_tokens(value))
        return True


class ClientFaultsWithoutTraceback(logging.Filter):
    """A client's bad bytes that the WebSocket layer logs with a traceback (invalid UTF-8 in a
    text frame: it closes the socket with 1007, as it should) become one warning line."""

    MESSAGES = ("Invalid UTF-8 sequence received from client.",)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("uvicorn") and record.msg in self.MESSAGES:
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.msg = f"{record.msg[:-1]}: the socket is closed with 1007"
        return True


class ConnectionLinesAtDebug(logging.Filter):
    """uvicorn logs every WebSocket's opening at info ("... [accepted]", "connection open",
    "connection closed"): with thousands of riders reconnecting that is most of the log. They
    are debug lines here, shown only at ``TRACKER_LOG_LEVEL=debug``; refusals stay at info."""

    PLAIN = ("connection open", "connection closed")

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("uvicorn") or record.levelno != logging.INFO:
            return True
        msg = str(record.msg)
        if msg in self.PLAIN or (msg.startswith('%s - "WebSocket %s"') and msg.endswith("[accepted]")):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger().isEnabledFor(logging.DEBUG)
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            **_extras(record),
        }
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


# Line breaks and other control characters (and Unicode's line and paragraph separators).
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def one_line(text: str) -> str:
    """``text`` with every control character written as an escape (``\\n``, ``\\x00``), so what a
    client sent cannot start a line of its own in a text log."""
    return _UNPRINTABLE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


class TextFormatter(logging.Formatter):
    """``HH:MM:SS LEVEL logger: message [key=value ...]``, one line a record (a traceback follows)."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        extras = " ".join(f"{k}={one_line(str(v))}" for k, v in _extras(record).items())
        line = f"{stamp} {record.levelname:<7} {record.name}: {one_line(record.getMessage())}"
        if extras:
            line += f" [{extras}]"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure(level: str = "info", fmt: str = "json") -> None:
    """Send every log record to stderr in the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(ConnectionLinesAtDebug())  # (first: it reads uvicorn's own message)
    handler.addFilter(MaskTokens())
    handler.addFilter(ClientFaultsWithoutTraceback())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        lg = logging.getLogger(name)
        lg.handlers[:] = []
        lg.propagate = True
    logging.getLogger("uvicorn.access").setLevel("WARNING")
