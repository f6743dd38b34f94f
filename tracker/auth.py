"""Signed tokens (HS256 JWT) carrying a ``role`` and a scope (``sub``).

``issue_token`` makes one, ``verify_token`` checks one and returns a :class:`Principal`;
``token_from_connection`` reads it from the ``X-Tracker-Token`` header (the pages'), the
``Authorization: Bearer`` header or (WebSocket only) the ``token`` query parameter. A :class:`RevocationList` says which tokens an operator
has voided since they were issued (kept current by ``tracker.revocations``);
``authenticate`` does all three for a request or a handshake.
"""
from __future__ import annotations

import enum
import logging
import math
import os
import secrets
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import jwt
from starlette.requests import HTTPConnection

from tracker.errors import ApiError, StartupError
from tracker.validate import ID_RULE, is_valid_id

log = logging.getLogger("tracker.auth")

ALGORITHMS = ["HS256"]
DEFAULT_TTL_S = 24 * 3600
MAX_TTL_S = 10 * 365 * 24 * 3600
MIN_SECRET_BYTES = 32  # RFC 7518 3.2: an HS256 key at least as long as the hash
ISSUER_CLOCK_SKEW_S = 5  # how far ahead of this server's clock a token's issuer may be (``iat``)

# A short secret is reported once, in our words (``weak_secret_warning``), not by PyJWT on
# every token signed or checked.
_PYJWT_KEY_WARNING = getattr(jwt, "InsecureKeyLengthWarning", None)  # (PyJWT 2.10 and later)
if _PYJWT_KEY_WARNING is not None:
    warnings.filterwarnings("ignore", category=_PYJWT_KEY_WARNING)


class Role(str, enum.Enum):
    RIDER = "rider"
    CUSTOMER = "customer"
    MERCHANT = "merchant"
    OPERATOR = "operator"


@dataclass(frozen=True)
class Principal:
    """Who is calling: a role and the id it is scoped to (rider, order, merchant, operator name)."""

    role: Role
    sub: str
    expires_at: float = math.inf  # the token's ``exp`` (Unix seconds, real time)
    issued_at: int | None = None  # its ``iat``, when it has one

    @property
    def is_operator(self) -> bool:
        return self.role is Role.OPERATOR

    def require(self, *roles: Role) -> None:
        """Raise ``forbidden`` unless the principal has one of ``roles`` (operators always pass)."""
        if self.role not in roles and not self.is_operator:
            allowed = ", ".join(r.value for r in roles)
            raise ApiError("forbidden", f"role '{self.role.value}' may not do this (needs {allowed})")


REVOKED = "token revoked: ask for a new one"  # the message (and close reason) of a revoked token


class RevocationList:
    """Per subject (role and sub), the time (ms) up to which its tokens' ``iat`` is void."""

    def __init__(self) -> None:
        self._void_until: dict[tuple[str, str], int] = {}

    def refuses(self, principal: Principal) -> bool:
        """True when ``principal``'s token was issued at or before its subject's revocation (or
        cannot show when it was issued)."""
        until = self._void_until.get((principal.role.value, principal.sub))
        if until is None:
            return False
        return principal.issued_at is None or principal.issued_at * 1000 <= until

    def check(self, principal: Principal) -> Principal:
        """``principal`` itself, or ``unauthorized: token revoked``."""
        if self.refuses(principal):
            raise ApiError("unauthorized", REVOKED)
        return principal

    def apply(self, role: Role, sub: str, until_ms: int) -> bool:
        """Record a revocation; True when it voids more tokens than were void already."""
        key = (role.value, sub)
        if until_ms <= self._void_until.get(key, -math.inf):
            return False
        self._void_until[key] = until_ms
        return True

    def merge(self, stored: Mapping[str, str]) -> list[str]:
        """Apply every revocation of the stored hash (``role:sub`` -> ms); the fields it could
        not read (they are skipped)."""
        unreadable = []
        for field, until in stored.items():
            role, _, sub = field.partition(":")
            try:
                self.apply(Role(role), sub, int(until))
            except ValueError:
                unreadable.append(field)
        return unreadable


def issue_token(secret: str, role: Role | str, sub: str, ttl_s: float = DEFAULT_TTL_S, *, now: float | None = None) -> str:
    """A signed token for ``role``/``sub`` that expires after ``ttl_s`` seconds."""
    role = Role(role)
    if not is_valid_id(sub):
        raise ValueError(f"sub must be {ID_RULE}")
    if not 0 < ttl_s <= MAX_TTL_S:  # (NaN and infinity too)
        raise ValueError(f"ttl must be more than 0 and at most {MAX_TTL_S} seconds (10 years)")
    issued = int(now if now is not None else time.time())
    claims = {"role": role.value, "sub": sub, "iat": issued, "exp": issued + math.ceil(ttl_s)}
    return jwt.encode(claims, secret, algorithm="HS256")


def verify_token(secret: str, token: str) -> Principal:
    """Check signature, expiry and claims; raise ``unauthorized`` with the reason.

    A token issued up to :data:`ISSUER_CLOCK_SKEW_S` "in the future" (its issuer's clock a little
    ahead of ours) is taken; one issued later than that is refused.
    """
    try:
        claims = jwt.decode(token, secret, algorithms=ALGORITHMS,
                            options={"require": ["exp", "sub", "role"], "verify_iat": False})
    except jwt.ExpiredSignatureError:
        raise ApiError("unauthorized", "token expired") from None
    except jwt.InvalidTokenError as exc:
        raise ApiError("unauthorized", f"invalid token: {_why_invalid(exc)}") from None
    try:
        role = Role(claims["role"])
    except ValueError:
        raise ApiError("unauthorized", f"unknown role {claims['role']!r}") from None
    sub = claims["sub"]
    if not is_valid_id(sub):
        raise ApiError("unauthorized", f"token 'sub' is not a valid id ({ID_RULE})")
    exp = claims["exp"]
    if isinstance(exp, bool) or not isinstance(exp, (int, float)):  # (PyJWT takes "9999999999", a string, too)
        raise ApiError("unauthorized", "invalid token: 'exp' is not a time (a JSON number of seconds)")
    try:
        expires_at = float(exp)  # (PyJWT took it as a whole number: it may be beyond a float)
    except (OverflowError, TypeError, ValueError):
        raise ApiError("unauthorized", "invalid token: 'exp' is not a usable time") from None
    if not math.isfinite(expires_at):
        raise ApiError("unauthorized", "invalid token: 'exp' is not a usable time")
    issued = claims.get("iat")
    if issued is not None:
        try:
            usable = not isinstance(issued, bool) and isinstance(issued, (int, float)) and math.isfinite(issued)
        except OverflowError:  # (a whole number beyond a float)
            usable = False
        if not usable:
            raise ApiError("unauthorized", "invalid token: 'iat' is not a time")
        if issued > time.time() + ISSUER_CLOCK_SKEW_S:
            raise ApiError("unauthorized", f"invalid token: issued in the future ('iat' more than "
                                           f"{ISSUER_CLOCK_SKEW_S} s ahead of the server's clock)")
    return Principal(role=role, sub=sub, expires_at=expires_at, issued_at=None if issued is None else int(issued))


def _why_invalid(exc: jwt.InvalidTokenError) -> str:
    """Why a token was refused, in plain words per PyJWT's exception class: its own words are about
    its internals ("Not enough segments", "Invalid header string: 'utf-8' codec can't decode ...").
    Those it words plainly itself (a missing claim, ``nbf``) are kept; never a quote of the token:
    a ``crit`` header's extension names are whatever its maker wrote (any length, any script)."""
    if isinstance(exc, jwt.InvalidSignatureError):  # (a DecodeError too: first)
        return "signature does not match (signed with another secret: another server's?)"
    if isinstance(exc, jwt.DecodeError):
        return "malformed: not a token this service issued"
    if isinstance(exc, jwt.InvalidAlgorithmError):
        return f"signed with an algorithm this service does not accept (it takes {', '.join(ALGORITHMS)})"
    text = str(exc)
    if "critical extension" in text.lower():
        return "unsupported critical header extension ('crit')"
    return text


def authenticate(conn: HTTPConnection, secret: str, revocations: RevocationList, *, allow_query: bool) -> Principal:
    """The caller of a request or WebSocket handshake: its token read, verified and not revoked,
    else ``unauthorized``."""
    return revocations.check(verify_token(secret, token_from_connection(conn, allow_query=allow_query)))


TOKEN_HEADER = "x-tracker-token"  # the pages' own header for their token (``X-Tracker-Token``)


def token_from_connection(conn: HTTPConnection, *, allow_query: bool) -> str:
    """The bearer token of a request or WebSocket handshake, or ``unauthorized``.

    ``X-Tracker-Token: <token>``, when sent, is the token, and the Authorization header is not
    read at all: the pages send their token there, leaving Authorization to what stands in front
    of the server (HTTP Basic auth, whose credentials a browser attaches by itself unless a page
    sets Authorization, or a proxy's own Bearer). An empty one, or two that differ, is refused.
    Otherwise ``Authorization: Bearer <token>``. With ``allow_query`` (a WebSocket), an
    Authorization header of another scheme is passed over for ``?token=``: a browser behind HTTP
    Basic auth attaches ``Basic ...`` on its own, and a page cannot take it off a WebSocket. A
    malformed ``Bearer`` header is still refused, and so are two Authorization headers that differ.
    """
    own = {value.strip() for value in conn.headers.getlist(TOKEN_HEADER)}
    if len(own) > 1:
        raise ApiError("unauthorized", "X-Tracker-Token given twice, with two different tokens: send one")
    if own:
        token = own.pop()
        if not token:
            raise ApiError("unauthorized", "X-Tracker-Token header is empty: it must be the token itself")
        return token
    given = {value.strip() for value in conn.headers.getlist("authorization")}
    if len(given) > 1:  # (what stands in front may read another of them than this server would)
        raise ApiError("unauthorized", "Authorization given twice, with two different values: send one")
    header = given.pop() if given else ""
    query_token = conn.query_params.get("token") if allow_query else None
    if header:
        scheme, _, value = header.partition(" ")
        is_bearer = scheme.lower() == "bearer"
        if is_bearer and value.strip():
            return value.strip()
        if is_bearer or not query_token:
            raise ApiError("unauthorized", "Authorization header must be 'Bearer <token>'")
    if query_token:
        return query_token
    where = ("Authorization header, X-Tracker-Token header or 'token' query parameter" if allow_query
             else "Authorization header or X-Tracker-Token header")
    raise ApiError("unauthorized", f"missing token ({where})")


def weak_secret_warning(secret: str, name: str = "TRACKER_SECRET") -> str | None:
    """Why ``secret`` (given as ``name``) is too short to sign tokens safely, or ``None`` when it is long enough."""
    size = len(secret.encode())
    if size >= MIN_SECRET_BYTES:
        return None
    return (f"{name} is {size} bytes, under the {MIN_SECRET_BYTES} HS256 wants: whoever guesses it "
            f"can sign tokens for any role (make one with: python3 -c 'import secrets; print(secrets.token_urlsafe(32))')")


def secret_path(data_dir: Path) -> Path:
    """Where ``tracker serve`` keeps its development secret."""
    return data_dir / "secret"


def read_secret(data_dir: Path) -> str | None:
    """The development secret in ``data_dir``, or ``None`` when there is none (or it is empty);
    :class:`StartupError` when it cannot be read (a folder, not text, not readable)."""
    path = secret_path(data_dir)
    try:
        return path.read_text().strip() or None
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        why = "is not text" if isinstance(exc, UnicodeDecodeError) else f"cannot be read ({exc.strerror or exc})"
        raise StartupError(f"the development secret {path} {why}: remove it (a new one is made) or set TRACKER_SECRET") from None


def local_data_dir() -> Path:
    """The data folder a ``tracker serve`` started here would use: ``TRACKER_DATA_DIR``, default ``./.tracker``."""
    from tracker.settings import Settings, SettingsError  # (settings is the heavier module: imported when needed)

    try:
        return Settings.from_env().data_dir
    except SettingsError:
        return Path(os.environ.get("TRACKER_DATA_DIR") or ".tracker")


def local_secret() -> str | None:
    """The secret ``tracker token`` would sign with: ``TRACKER_SECRET``, else the development
    secret in the data folder (``TRACKER_DATA_DIR``, default ``./.tracker``); None when neither is
    there. :class:`StartupError` when that secret file cannot be read."""
    from tracker.settings import Settings, SettingsError

    try:
        settings = Settings.from_env()
    except SettingsError:
        return os.environ.get("TRACKER_SECRET") or None
    return settings.secret or read_secret(settings.data_dir)


def load_or_create_secret(configured: str | None, data_dir: Path) -> str:
    """The configured secret, else a development secret kept in ``data_dir/secret``."""
    if configured:
        if (weak := weak_secret_warning(configured)) is not None:
            log.warning("%s", weak)
        return configured
    path = secret_path(data_dir)
    secret = read_secret(data_dir)
    if secret:
        log.warning("TRACKER_SECRET unset: using the development secret in %s", path)
        return secret
    secret = secrets.token_urlsafe(32)
    try:
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secret + "\n")
    except OSError as exc:
        raise StartupError(f"cannot write the development secret {path} ({exc.strerror or exc}): choose another "
                           "--data-dir or set TRACKER_SECRET") from None
    log.warning("TRACKER_SECRET unset: generated a development secret in %s", path)
    return secret
