"""One way to connect to Redis, whether REDIS_URL names a single server or a Redis Cluster.

The server asks the node REDIS_URL names whether cluster mode is on (``INFO cluster``) and
builds the matching client: ``redis.asyncio.Redis`` or ``redis.asyncio.RedisCluster`` (which
routes every command by its key's hash slot and follows the cluster's redirections). Every
key that one step touches together shares a hash tag (docs/architecture.md, "Redis keys"),
so the same code runs on both.
"""
from __future__ import annotations

import asyncio
import re
from typing import Any, Sequence, Union
from urllib.parse import urlsplit, urlunsplit

import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterPipeline, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.asyncio.connection import DefaultParser
from redis.exceptions import (AskError, ClusterError, OutOfMemoryError, ReadOnlyError, RedisClusterUnreachableError,
                              ResponseError, SlotNotCoveredError, TryAgainError)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from tracker.errors import ApiError

AnyRedis = Union[aioredis.Redis, RedisCluster]

# Put before a Lua script's own text: ``now``, Redis's own clock in ms (``TIME``), the clock
# stream ids (``*``) use and the same for every process, whatever the host's or the server's
# (a replay's runs faster) clock says.
LUA_NOW_MS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""


# Redis answers but refuses writes for now: out of memory (``maxmemory`` with ``noeviction``),
# or read-only (a replica, as during a failover). Nothing was written; the same again later works.
REDIS_REFUSES_WRITES: tuple[type[Exception], ...] = (OutOfMemoryError, ReadOnlyError)

# Redis did not answer (down, restarting, paused; on a cluster also a node down, every node
# down, a slot not served, a slot moving), or refuses writes: a client sees
# ``redis_unavailable`` (503) and may try again. A slot being migrated between nodes answers
# ``ASK`` (and ``TRYAGAIN`` for some keys moved, some not) until it is done: redis-py follows a
# command's redirection but not a ``MULTI``'s, and gives up after its retries with ``AskError``
# (``MovedError`` derives from it: a slot map that kept changing), which is the slot moving too.
REDIS_DOWN: tuple[type[Exception], ...] = (RedisConnectionError, RedisTimeoutError, ClusterError,
                                           RedisClusterUnreachableError, SlotNotCoveredError, TryAgainError,
                                           AskError, *REDIS_REFUSES_WRITES)


class WriteRefusalParser(DefaultParser):  # type: ignore[misc,valid-type]
    """redis-py's reply parser, naming by its class a write that Redis refused inside a Lua
    script: Redis 7 passes the refusal's code through (``OOM ...``, which redis-py already maps),
    while Redis 6 (the embedded one) wraps it as ``Error running script ... -OOM ...``."""

    @classmethod
    def parse_error(cls, response: str) -> Exception:
        exc = super().parse_error(response)
        if type(exc) is ResponseError:
            for marker, kind in (("-OOM ", OutOfMemoryError), ("-READONLY ", ReadOnlyError)):
                if marker in response:
                    return kind(response)
        return exc


def redis_unavailable(exc: BaseException) -> ApiError:
    """The typed error for a request that failed because Redis did not answer, or refused writes."""
    if isinstance(exc, OutOfMemoryError):
        why = "Redis is out of memory and refuses writes (its maxmemory)"
    elif isinstance(exc, ReadOnlyError):
        why = "Redis is read-only (a replica: a failover may be under way)"
    elif isinstance(exc, (AskError, TryAgainError)):
        why = f"a Redis Cluster slot is being moved between nodes ({type(exc).__name__})"
    else:
        why = f"Redis does not answer ({type(exc).__name__})"
    return ApiError("redis_unavailable", f"{why}; try again shortly")


_QUERY_PASSWORD = re.compile(r"([?&]password=)[^&#]*", re.IGNORECASE)


# Between the addresses of a REDIS_URL naming several cluster nodes: a comma before the next
# ``redis://``, ``rediss://`` or ``unix://`` (so a comma inside a password splits nothing).
_NEXT_SEED = re.compile(r",\s*(?=(?:rediss?|unix)://)")


def seed_urls(url: str) -> list[str]:
    """The addresses ``url`` names: itself, or each of several comma-separated ``redis://`` or
    ``rediss://`` URLs of one Redis Cluster's nodes (``redis://a:7000,redis://b:7000``)."""
    return _NEXT_SEED.split(url)


def first_answering(url: str, timeout: float = 5.0) -> str:
    """The first of ``url``'s addresses (:func:`seed_urls`) whose Redis answers a PING, so that a
    server (re)started while one named node is down starts from another; ``url`` itself when it
    names one address. Raises ``redis.ConnectionError`` naming each address's failure when none answers."""
    seeds = seed_urls(url)
    if len(seeds) == 1:
        return url
    failures = []
    for seed in seeds:
        client = redis.Redis.from_url(seed, socket_connect_timeout=timeout, socket_timeout=timeout)
        try:
            client.ping()
            return seed
        except (redis.RedisError, OSError) as exc:
            failures.append(f"{redacted_url(seed)}: {exc}")
        finally:
            client.close()
    raise redis.ConnectionError("no address answers (" + "; ".join(failures) + ")")


def redacted_url(url: str) -> str:
    """``url`` fit for a log line or an error message: its password (``user:password@`` or a
    ``password=`` query parameter) replaced by ``***``, in each address of a list (:func:`seed_urls`).
    Read as text, not parsed, so a malformed URL (a password with ``/``, ``#`` or ``@`` not
    percent-encoded) is hidden whole too: all after the user's ``:`` up to the last ``@``."""
    seeds = seed_urls(url)
    if len(seeds) > 1:
        return ",".join(map(redacted_url, seeds))
    head, at, address = url.rpartition("@")
    if at:
        start = head.find("//") + 2 if "//" in head else 0
        user, colon, _ = head[start:].partition(":")
        if colon:
            url = f"{head[:start]}{user}:***@{address}"
    return _QUERY_PASSWORD.sub(r"\1***", url)


def cluster_enabled(url: str, timeout: float = 5.0) -> bool:
    """Whether the Redis at ``url`` runs in cluster mode (raises ``redis.RedisError`` if unreachable)."""
    client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        return bool(client.info("cluster").get("cluster_enabled"))
    finally:
        client.close()


def check_cluster(url: str, timeout: float = 5.0) -> int:
    """Raise :class:`ClusterNotOk` if ``url`` names a cluster that cannot serve every slot now
    (its state is not ok, or a primary does not answer); else return its primaries (1 for a
    single Redis)."""
    seed = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout, decode_responses=True)
    try:
        if not seed.info("cluster").get("cluster_enabled"):
            return 1
        state = seed.cluster("info").get("cluster_state")
        if state != "ok":
            raise ClusterNotOk(f"the Redis Cluster at {redacted_url(url)} cannot serve every slot: cluster_state:{state}")
        nodes = seed.cluster("nodes")
    finally:
        seed.close()
    primaries = 0
    for address, node in nodes.items():
        flags = node.get("flags", "")
        if "master" not in flags or not node.get("slots"):
            continue
        primaries += 1
        if "myself" in flags:
            continue
        host, _, port = address.partition("@")[0].rpartition(":")
        other = redis.Redis.from_url(_node_url(url, host, int(port)), socket_connect_timeout=timeout,
                                     socket_timeout=timeout)
        try:
            if "fail" in flags:
                raise ClusterNotOk(f"node {address} is marked {flags}")
            other.ping()
        except (redis.RedisError, OSError) as exc:
            raise ClusterNotOk(f"the Redis Cluster at {redacted_url(url)} cannot serve every slot: node {address}: {exc}") from None
        finally:
            other.close()
    return max(1, primaries)


def _node_url(url: str, host: str, port: int) -> str:
    """``url`` (its scheme, so TLS, and its credentials) pointed at another node of its cluster."""
    parts = urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    address = f"[{host}]:{port}" if ":" in host else f"{host or parts.hostname}:{port}"
    return urlunsplit(parts._replace(netloc=f"{userinfo}@{address}" if userinfo else address, path=""))


class QueuingRedisCluster(RedisCluster):
    """A cluster client whose commands and pipelines wait their turn when ``max_connections``
    are in use, instead of failing at once (redis-py's asyncio cluster client has no blocking
    pool): fewer run at a time than a node's pool holds (some room is left for connections
    the client is still closing after a topology change), so no node runs out."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        most = int(kwargs.get("max_connections") or 2**31)
        self._turns = asyncio.Semaphore(max(1, most - max(1, most // 8)))

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        async with self._turns:
            return await super().execute_command(*args, **kwargs)

    def pipeline(self, transaction: Any | None = None, shard_hint: Any | None = None) -> ClusterPipeline:
        if shard_hint:
            return super().pipeline(transaction, shard_hint)  # (refused by redis-py)
        return _QueuingPipeline(self, transaction)


class _QueuingPipeline(ClusterPipeline):
    async def execute(self, *args: Any, **kwargs: Any) -> Any:
        async with self.cluster_client._turns:  # type: ignore[attr-defined]
            return await super().execute(*args, **kwargs)


REDIS_COMMAND_TIMEOUT_S = 5.0  # the server's wait for one answer (or a connection) from Redis: then redis_unavailable


def connect(url: str, *, cluster: bool | None = None, wait_for_connection_s: float | None = None,
            **options: Any) -> AnyRedis:
    """An asyncio client for ``url``; ``cluster=None`` asks the server which kind it is.

    ``wait_for_connection_s``: a command that finds all ``max_connections`` busy waits for one
    to be free (on a single Redis at most this long) instead of failing at once with "Too many
    connections", which a burst of work would read as Redis being down.
    """
    if cluster is None:
        cluster = cluster_enabled(url)
    if cluster:
        # A few quick retries (a redirection, a node restarting), then the error: a request on a
        # slot whose node is down answers 503 within about a second, not after redis-py's
        # default of ten attempts (several seconds).
        options.setdefault("retry", Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), 3))
        client_class = QueuingRedisCluster if wait_for_connection_s is not None else RedisCluster
        return client_class.from_url(url, **options)
    # (redis-py's cluster client takes no parser: on a cluster of Redis 7 nodes none is needed,
    # on Redis 6 nodes a write refused inside a script still answers ``internal``)
    options.setdefault("parser_class", WriteRefusalParser)
    if wait_for_connection_s is not None:
        pool = aioredis.BlockingConnectionPool.from_url(url, timeout=wait_for_connection_s, **options)
        return aioredis.Redis.from_pool(pool)  # (closed with the client)
    return aioredis.Redis.from_url(url, **options)


def is_cluster(redis: AnyRedis) -> bool:
    """Whether ``redis`` is a Redis Cluster client."""
    return isinstance(redis, RedisCluster)


async def get_many(redis: AnyRedis, keys: Sequence[str]) -> list[Any]:
    """GET of each key, in order: MGET on a single Redis, one pipeline (per node) on a cluster."""
    if not keys:
        return []
    if not is_cluster(redis):
        return list(await redis.mget(keys))
    pipe = redis.pipeline(transaction=False)
    for key in keys:
        pipe.get(key)
    return list(await pipe.execute())


async def subscriber_count(redis: AnyRedis, channel: str) -> int:
    """How many connections subscribe to ``channel`` (on a cluster: summed over every node)."""
    extra = {"target_nodes": RedisCluster.ALL_NODES} if is_cluster(redis) else {}
    return int((await redis.pubsub_numsub(channel, **extra))[0][1])


class ClusterNotOk(redis.exceptions.ClusterDownError):
    """A Redis Cluster node reports ``cluster_state`` other than ``ok`` (a node down, slots unserved)."""


READY_PROBE_KEY = "ready:probe"  # written by every readiness check, gone 10 s later


async def check_ready(redis: AnyRedis) -> None:
    """Raise unless Redis can serve: it takes a write (a Redis that answers PING but is out of
    memory or read-only cannot record an order); on a cluster, every primary answers and
    reports ``cluster_state:ok`` (one live node answering says nothing of the others)."""
    if not is_cluster(redis):
        await redis.set(READY_PROBE_KEY, "1", px=10_000)
        return
    for node, info in (await redis.cluster_info(target_nodes=RedisCluster.PRIMARIES)).items():
        if info.get("cluster_state") != "ok":
            raise ClusterNotOk(f"cluster node {node} reports cluster_state:{info.get('cluster_state')}")
