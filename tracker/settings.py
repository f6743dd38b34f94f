"""Server settings: one place that reads, validates and documents every knob.

Each setting has an environment variable (``TRACKER_*``, plus ``REDIS_URL``); the CLI
overrides the environment. A bad value raises :class:`SettingsError` naming the
variable, the value and what is expected.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any, Callable, Mapping
from urllib.parse import urlparse

from redis.connection import parse_url

from tracker.errors import SettingsError
from tracker.open_files import CEILING, HTTP_CONNECTIONS, OTHER_FILES, REDIS_FILES_MAX
from tracker.redis_client import redacted_url, seed_urls

LOG_LEVELS = ("debug", "info", "warning", "error")


# The largest number any setting takes: beyond it, seconds turned into milliseconds and timers
# overflow (1e9 s is over 30 years; no setting means more).
MAX_NUMBER = 1e9
MAX_TIME_SCALE = 10_000.0  # a day in under 9 s of real time
MAX_SEND_BUFFER_BYTES = 64 * 1024 * 1024
MAX_DISPATCH_RADIUS_M = 200_000.0  # a search covers the H3 cells within it, on the event loop: 1,000 km took 7 s a round


def _number(kind: Callable[[str], Any], most: float, *, least: float | None = None,
            note: str = "") -> Callable[[str], Any]:
    """A parser of ``kind`` (``int`` or ``float``) values above 0 (from ``least`` when given) up to ``most``."""
    what = "integer" if kind is int else "number"
    limit = str(int(most)) if kind is int else f"{most:g}"
    expected = f"must be {'an' if what == 'integer' else 'a'} {what} from {least:g} to {limit}" if least is not None \
        else f"must be a positive {what} up to {limit}"

    def parse(raw: str) -> Any:
        value = kind(raw)
        if not ((least <= value) if least is not None else (0 < value)) or not value <= most:  # (NaN fails both)
            raise ValueError(expected + note)
        return value

    return parse


_positive_float = _number(float, MAX_NUMBER)
_non_negative_float = _number(float, MAX_NUMBER, least=0)
_time_scale = _number(float, MAX_TIME_SCALE)
_send_buffer = _number(int, MAX_SEND_BUFFER_BYTES, note=" (64 MiB)")
_dispatch_radius = _number(float, MAX_DISPATCH_RADIUS_M, note=" metres (200 km: a courier further off is no courier for this order)")
_port = _number(int, 65535, least=0, note=" (0 picks a free port)")
# Below a tenth of a metre a second every ETA runs to years and the kernel refuses the speed
# (its boundary wants 1e-5 m/min at least): every dispatch round would fail.
_rider_speed = _number(float, MAX_NUMBER, least=0.1, note=" metres a second")
_positive_int = _number(int, MAX_NUMBER)


def target_seconds(minutes: float) -> int:
    """The on-time target (``TRACKER_ON_TIME_TARGET_MIN``) in whole seconds, as the on-time
    share, the late list and the ops page judge it."""
    return round(minutes * 60)


def _on_time_target(raw: str) -> float:
    """A positive number of minutes that is a whole number of seconds: the fleet's click-to-door
    is kept to the second (orders/counts.py), so the on-time share is exact for such targets only."""
    value = _positive_float(raw)
    if abs(value * 60 - target_seconds(value)) > 1e-6 or target_seconds(value) < 1:
        raise ValueError("must be minutes that make a whole number of seconds, at least 1 s "
                         "(e.g. 40, 7.5 for 7 min 30 s, 0.25 for 15 s)")
    return value


_socket_count = _number(int, CEILING, note=" (more sockets than a process can have files)")


def _log_level(raw: str) -> str:
    value = raw.lower()
    if value not in LOG_LEVELS:
        raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
    return value


def _log_format(raw: str) -> str:
    if raw not in ("json", "text"):
        raise ValueError("must be 'json' or 'text'")
    return raw


def _redis_url(raw: str) -> str | None:
    if raw == "":
        return None
    seeds = seed_urls(raw)
    if len(seeds) > 1:
        if any(not seed.startswith(("redis://", "rediss://")) for seed in seeds):
            raise ValueError("naming several addresses (a Redis Cluster's nodes, comma-separated) takes "
                             "redis:// or rediss:// URLs only")
        for seed in seeds:
            _redis_url(seed)
        return raw
    if raw.rstrip().endswith(","):
        raise ValueError("ends with a comma: several addresses are each a full redis:// URL, comma-separated")
    parts = urlparse(raw)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ValueError("must be a redis://, rediss:// or unix:// URL")
    try:
        port = parts.port  # None when not given; raises on a port that is not a number from 0 to 65535
    except ValueError:
        port = -1
    if port is not None and not 1 <= port <= 65535:
        raise ValueError("must have a port from 1 to 65535 (in a password, characters such as / ? # @ : must be "
                         "percent-encoded)")
    if parts.scheme != "unix" and parts.path.strip("/") and not parts.path.strip("/").isdigit():
        raise ValueError(f"names database {parts.path.strip('/')!r}: a database is a number (redis://host:6379/0)")
    try:
        parse_url(raw)  # what redis-py will make of it: its options (?socket_timeout=...) included
    except ValueError as exc:
        raise ValueError(f"is not one redis-py takes ({exc})") from None
    return raw


def _host(raw: str) -> str:
    if not raw:
        raise ValueError("must not be empty (0.0.0.0 listens on every interface, 127.0.0.1 on this host only)")
    return raw


def _text(raw: str) -> str:
    return raw


TILE_FIELDS = ("{z}", "{x}", "{y}")  # what the pages fill in (common.js drawTiles), wherever they stand


def tile_authority(tile_url: str) -> str | None:
    """The ``host[:port]`` part of a tile template (``userinfo@`` included, if any), or ``None``
    for a path on the pages' own server (``/tiles/...``)."""
    if tile_url.startswith("/") and not tile_url.startswith("//"):
        return None
    rest = tile_url.partition("//")[2]
    for end in "/?#":
        rest = rest.split(end, 1)[0]
    return rest


def _tile_url(raw: str) -> str | None:
    """A raster tile template the pages' maps can fill in; empty means none (vectors only).

    Refused at start, rather than accepted with a map that never shows a tile: a placeholder the
    pages do not fill (``{s}``, ``{r}``), a ``user:password@`` (browsers do not load images from
    such an address), an address with no host or a port that is no port."""
    if not raw:
        return None
    if not raw.startswith(("https://", "http://", "/")) or any(f not in raw for f in TILE_FIELDS):
        raise ValueError("must be an http(s) URL or a / path, a template with {z}, {x} and {y} "
                         "(e.g. https://tile.openstreetmap.org/{z}/{x}/{y}.png or /tiles/{z}/{x}/{y}.png), or unset")
    rest = raw
    for f in TILE_FIELDS:
        rest = rest.replace(f, "")
    if "{" in rest or "}" in rest:
        other = rest[rest.index("{"):].split("}", 1)[0] + "}" if "{" in rest else "}"
        hint = (": name one of the servers instead (https://a.tile.openstreetmap.org/..., or "
                "https://tile.openstreetmap.org/..., which needs none)") if other == "{s}" else ""
        raise ValueError(f"must hold no placeholder but {{z}}, {{x}} and {{y}}, the only ones the pages fill in; "
                         f"it holds {other!r}{hint}")
    authority = tile_authority(raw)
    if authority is None:
        return raw
    if "@" in authority:
        raise ValueError("must not carry a user name or password (user:password@host): browsers load no image "
                         "from such an address; serve the tiles without one, or through a proxy that adds it")
    host, port = authority, None
    if not authority.endswith("]") and ":" in authority.rpartition("]")[2]:
        host, _, port = authority.rpartition(":")
    if not host.strip("[]"):
        raise ValueError("must name the tile server's host (https://tiles.example/{z}/{x}/{y}.png)")
    if port and not (port.isdigit() and 1 <= int(port) <= 65535):
        raise ValueError(f"must have a port from 1 to 65535, not {port!r}")
    return raw


def shown_value(env: str, raw: str) -> str:
    """``raw`` as an error message may show it: a secret not at all, a Redis URL without its
    password (:func:`~tracker.redis_client.redacted_url`, which hides a malformed one's too)."""
    if env == "TRACKER_SECRET":
        return "<hidden>"
    return redacted_url(raw) if env == "REDIS_URL" else raw


def _path(raw: str) -> Path:
    if not raw:
        raise ValueError("must not be empty")
    return Path(raw)


def _setting(env: str, parse: Callable[[str], Any], default: Any, doc: str) -> Any:
    return field(default=default, metadata={"env": env, "parse": parse, "doc": doc})


@dataclass(frozen=True)
class Settings:
    """Every server setting with its default; build with :meth:`from_env`."""

    host: str = _setting("TRACKER_HOST", _host, "127.0.0.1", "address to listen on")
    port: int = _setting("TRACKER_PORT", _port, 8000, "TCP port to listen on")
    redis_url: str | None = _setting(
        "REDIS_URL", _redis_url, None, "Redis to use (or several nodes of one Redis Cluster, comma-separated); unset starts an embedded redis-server"
    )
    data_dir: Path = _setting(
        "TRACKER_DATA_DIR", _path, Path(".tracker"), "folder for the embedded Redis data and the dev secret"
    )
    secret: str | None = _setting(
        "TRACKER_SECRET", _text, None,
        "HS256 key for tokens, the same for every process; unset (or empty) generates one in the data folder, "
        "which only a server with an embedded Redis may use"
    )
    time_scale: float = _setting(
        "TRACKER_TIME_SCALE", _time_scale, 1.0,
        f"server clock speed relative to real time (replays), at most {MAX_TIME_SCALE:g}; a scaled server needs a "
        "Redis of its own"
    )
    log_level: str = _setting("TRACKER_LOG_LEVEL", _log_level, "info", "debug, info, warning or error")
    log_format: str = _setting("TRACKER_LOG_FORMAT", _log_format, "json", "json (one object a line) or text")
    body_timeout_s: float = _setting(
        "TRACKER_BODY_TIMEOUT_S", _positive_float, 10.0,
        "seconds an HTTP request body may take to arrive whole (then 408 request_timeout)",
    )
    header_timeout_s: float = _setting(
        "TRACKER_HEADER_TIMEOUT_S", _positive_float, 10.0,
        "seconds a connection may take to send a request's headers (then 408 request_timeout and closed)",
    )
    keepalive_s: float = _setting(
        "TRACKER_KEEPALIVE_S", _positive_float, 5.0,
        "seconds an idle kept-alive HTTP connection waits for its next request; behind a load balancer that keeps "
        "connections to its backends, set it above the balancer's idle timeout",
    )
    shutdown_grace_s: float = _setting(
        "TRACKER_SHUTDOWN_GRACE_S", _non_negative_float, 5.0, "seconds to drain in-flight work on shutdown"
    )
    max_frame_bytes: int = _setting(
        "TRACKER_MAX_FRAME_BYTES", _positive_int, 16384, "largest WebSocket frame accepted"
    )
    max_sockets_per_subject: int = _setting(
        "TRACKER_MAX_SOCKETS_PER_SUBJECT", _positive_int, 20,
        "WebSockets one rider, merchant or customer token's subject may hold open on one process (operators: no limit)"
    )
    max_sockets: int | None = _setting(
        "TRACKER_MAX_SOCKETS", _socket_count, None,
        f"WebSockets one process holds open, at most {CEILING} (operators' not counted; the next is closed 1013 "
        f"over_capacity); unset: what the open-file limit leaves once Redis (a quarter, at most {REDIS_FILES_MAX}) "
        f"and {OTHER_FILES} other files have theirs. Connections of any kind: {HTTP_CONNECTIONS} more than the "
        "larger of the two, then 503 over_capacity"
    )
    ws_send_buffer_bytes: int = _setting(
        "TRACKER_WS_SEND_BUFFER_BYTES", _send_buffer, 65536, "kernel send buffer of each WebSocket connection"
    )

    stale_after_s: float = _setting(
        "TRACKER_STALE_AFTER_S", _positive_float, 30.0,
        "server seconds after a rider's last fix when it drops out of nearby search and dispatch",
    )
    rider_max_fix_rate: float = _setting(
        "TRACKER_RIDER_MAX_FIX_RATE", _positive_float, 5.0, "location fixes per second one rider may send (all its sockets on one process together)"
    )
    max_rider_speed_mps: float = _setting(
        "TRACKER_MAX_RIDER_SPEED_MPS", _positive_float, 60.0, "a fix implying a faster move is refused as a teleport"
    )
    max_clock_skew_s: float = _setting(
        "TRACKER_MAX_CLOCK_SKEW_S", _positive_float, 300.0, "a fix whose own ts is further from server time is refused"
    )

    rider_speed_mps: float = _setting(
        "TRACKER_RIDER_SPEED_MPS", _rider_speed, 5.0, "riders' average speed for ETAs and dispatch (m/s, straight line)"
    )
    pickup_service_s: float = _setting(
        "TRACKER_PICKUP_SERVICE_S", _non_negative_float, 240.0, "seconds a rider spends at the restaurant"
    )
    dropoff_service_s: float = _setting(
        "TRACKER_DROPOFF_SERVICE_S", _non_negative_float, 240.0, "seconds a rider spends handing an order over"
    )
    default_prep_min: float = _setting(
        "TRACKER_DEFAULT_PREP_MIN", _non_negative_float, 10.0, "preparation estimate for orders that give none"
    )
    arriving_prompt_s: float = _setting(
        "TRACKER_ARRIVING_PROMPT_S", _non_negative_float, 120.0, "rider_arriving prompt when the rider is this close (s)"
    )
    on_time_target_min: float = _setting(
        "TRACKER_ON_TIME_TARGET_MIN", _on_time_target, 40.0,
        "click-to-door target for the on-time share, in minutes that make a whole number of seconds (40, 7.5)"
    )

    estimate_grace_s: float = _setting(
        "TRACKER_ESTIMATE_GRACE_S", _non_negative_float, 30.0,
        "server seconds a waiting order keeps its estimate when the dispatcher has briefly no rider for it",
    )
    dispatch_interval_s: float = _setting(
        "TRACKER_DISPATCH_INTERVAL_S", _positive_float, 10.0, "server seconds between dispatch rounds"
    )
    offer_timeout_s: float = _setting(
        "TRACKER_OFFER_TIMEOUT_S", _positive_float, 30.0, "server seconds a rider has to accept an offer"
    )
    decline_cooldown_s: float = _setting(
        "TRACKER_DECLINE_COOLDOWN_S", _non_negative_float, 300.0,
        "server seconds a rider who declined (or let expire, or released) an order is not offered it again",
    )
    silent_take_back_s: float = _setting(
        "TRACKER_SILENT_TAKE_BACK_S", _non_negative_float, 300.0,
        "server seconds a rider carrying orders may send no fix before the orders it has not collected go to another rider (0: never)",
    )
    dispatch_radius_m: float = _setting(
        "TRACKER_DISPATCH_RADIUS_M", _dispatch_radius, 8000.0, "how far from a restaurant riders are considered (at most 200 km)"
    )

    order_retention_s: float = _setting(
        "TRACKER_ORDER_RETENTION_S", _positive_float, 7 * 24 * 3600.0,
        "wall-clock seconds a delivered, cancelled or failed order (its record, history and id) is kept in Redis",
    )
    followup_repair_s: float = _setting(
        "TRACKER_FOLLOWUP_REPAIR_S", _positive_float, 10.0,
        "wall-clock seconds after which an order step's unfinished follow-up writes are re-derived",
    )

    tile_url: str | None = _setting(
        "TRACKER_TILE_URL", _tile_url, None, "raster tile URL template ({z}/{x}/{y}; no other placeholder, no user:password@) under the pages' maps; unset draws vectors only"
    )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> "Settings":
        """Read settings from ``environ`` (default ``os.environ``), then apply ``overrides``.

        Overrides that are ``None`` are ignored, so CLI flags left unset fall through to the
        environment. Raises :class:`SettingsError` naming the first bad setting.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            name = f.metadata["env"]
            raw = overrides.get(f.name)
            source = f"--{f.name.replace('_', '-')}"
            if raw is None:
                if name not in env:
                    continue
                raw, source = env[name], name
            if not isinstance(raw, str):
                raw = str(raw)
            try:
                values[f.name] = f.metadata["parse"](raw.strip())
            except ValueError as exc:
                detail = str(exc) if "must" in str(exc) else f"has the wrong form ({exc})"
                raise SettingsError(f"invalid setting {source}={shown_value(name, raw)!r}: {detail}") from None
        return cls(**values)


def public_settings(settings: "Settings") -> dict[str, Any]:
    """Every setting by its environment variable as this process runs with it, for the operator
    (``GET /v1/ops/snapshot``): the secret left out, a Redis URL without its password."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(settings):
        env, value = f.metadata["env"], getattr(settings, f.name)
        if env == "TRACKER_SECRET":
            continue
        out[env] = shown_value(env, str(value)) if isinstance(value, (str, PurePath)) else value
    return out


def _shown(default: Any) -> str:
    """A default as a user writes it: ``unset``, ``.tracker``, ``127.0.0.1``, ``30.0``."""
    if default is None:
        return "unset"
    return str(default) if isinstance(default, (str, PurePath)) else repr(default)


def describe() -> list[tuple[str, str, str]]:
    """(environment variable, default as a user writes it, description) for every setting:
    ``tracker serve --help`` lists them, and the docs' settings table is checked against them."""
    return [(f.metadata["env"], _shown(f.default), f.metadata["doc"]) for f in dataclasses.fields(Settings)]
