"""The process's open-file limit, and how it is shared between WebSockets and Redis.

Every socket is an open file. A process that runs out of them can neither accept a
connection nor open one to Redis (its background tasks fail, its sockets close with
``redis_unavailable``). So ``tracker serve`` raises its soft limit to the hard one at start,
sizes its Redis connection pool to a quarter of the limit (at most 256), keeps 64 files for
HTTP requests, logs and the rest, and unless told otherwise holds at most what is left in
WebSockets: the next one is refused (1013 ``over_capacity``) while Redis still has its files.
"""
from __future__ import annotations

import resource

CEILING = 1 << 20  # the soft limit asked for when the hard one is higher (or unlimited)
REDIS_POOL_MAX = 256
OTHER_FILES = 64  # HTTP requests, the listening socket, logs, pub/sub, the embedded Redis's pipes


def open_files_limit() -> int:
    """The process's soft RLIMIT_NOFILE (:data:`CEILING` when unlimited)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return CEILING if soft == resource.RLIM_INFINITY else soft


def raise_open_files_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard one (at most :data:`CEILING`); return the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = CEILING if hard == resource.RLIM_INFINITY else min(hard, CEILING)
    if soft != resource.RLIM_INFINITY and soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        except (ValueError, OSError):  # (a container may refuse: the soft limit stands)
            pass
    return open_files_limit()


def redis_pool_size(open_files: int) -> int:
    """Connections the Redis client may open: a quarter of the files, from 8 to :data:`REDIS_POOL_MAX`."""
    return max(8, min(REDIS_POOL_MAX, open_files // 4))


def socket_budget(open_files: int) -> int:
    """WebSockets a process with ``open_files`` may hold once Redis and the rest have theirs."""
    return max(1, open_files - redis_pool_size(open_files) - OTHER_FILES)
