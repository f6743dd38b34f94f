"""The process's open-file limit, and how it is shared between WebSockets and Redis.

Every socket is an open file. A process that runs out of them can neither accept a
connection nor open one to Redis (its background tasks fail, its sockets close with
``redis_unavailable``). So ``tracker serve`` raises its soft limit to the hard one at start,
gives its Redis connection pools a quarter of the limit (at most 256 in all, shared out over a
cluster's primaries, since each node has a pool of its own), keeps 64 files for HTTP requests,
logs and the rest, and unless told otherwise holds at most what is left in WebSockets: the
next one is refused (1013 ``over_capacity``) while Redis still has its files. Connections of
any kind are bounded too (:func:`connection_limit`): one beyond is answered 503
``over_capacity`` as soon as it is accepted, so a flood of HTTP clients cannot take Redis's
files either.
"""
from __future__ import annotations

import resource

CEILING = 1 << 20  # the soft limit asked for when the hard one is higher (or unlimited)
FALLBACK = 10240  # what macOS allows a process when the hard limit says "unlimited"
REDIS_FILES_MAX = 256
MIN_POOL = 8
OTHER_FILES = 64  # HTTP requests, the listening socket, logs, pub/sub, the embedded Redis's pipes
HTTP_CONNECTIONS = 32  # of those: connections beyond the WebSocket limit (HTTP, operators' sockets)


def open_files_limit() -> int:
    """The process's soft RLIMIT_NOFILE (:data:`CEILING` when unlimited)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return CEILING if soft == resource.RLIM_INFINITY else soft


def raise_open_files_limit() -> int:
    """Raise the soft RLIMIT_NOFILE towards the hard one (at most :data:`CEILING`); return the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = CEILING if hard == resource.RLIM_INFINITY else min(hard, CEILING)
    for candidate in (want, min(want, FALLBACK)):
        if soft != resource.RLIM_INFINITY and soft >= candidate:
            break
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (candidate, hard))
            break
        except (ValueError, OSError):  # (above what the system allows a process: try less; else it stands)
            continue
    return open_files_limit()


def redis_pool_size(open_files: int, primaries: int = 1) -> int:
    """Connections the Redis client may open to each primary: a quarter of the files (at most
    :data:`REDIS_FILES_MAX`) shared out over ``primaries``, and at least :data:`MIN_POOL`."""
    return max(MIN_POOL, min(REDIS_FILES_MAX, open_files // 4) // max(1, primaries))


def socket_budget(open_files: int, primaries: int = 1) -> int:
    """WebSockets a process with ``open_files`` may hold once Redis and the rest have theirs."""
    return max(1, open_files - primaries * redis_pool_size(open_files, primaries) - OTHER_FILES)


def connection_limit(max_sockets: int, budget: int) -> int:
    """Connections of any kind a process holds open: its WebSockets (``budget``, as many as its
    files allow, or a higher ``max_sockets``) and :data:`HTTP_CONNECTIONS` more."""
    return max(max_sockets, budget) + HTTP_CONNECTIONS
