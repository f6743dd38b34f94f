"""One way to connect to Redis, whether REDIS_URL names a single server or a Redis Cluster.

The server asks the node REDIS_URL names whether cluster mode is on (``INFO cluster``) and
builds the matching client: ``redis.asyncio.Redis`` or ``redis.asyncio.RedisCluster`` (which
routes every command by its key's hash slot and follows the cluster's redirections). Every
key that one step touches together shares a hash tag (docs/architecture.md, "Redis keys"),
so the same code runs on both.
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence, Union

import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

AnyRedis = Union[aioredis.Redis, RedisCluster]


def cluster_enabled(url: str, timeout: float = 5.0) -> bool:
    """Whether the Redis at ``url`` runs in cluster mode (raises ``redis.RedisError`` if unreachable)."""
    client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        info = client.info("cluster")
    finally:
        client.close()
    return bool(info.get("cluster_enabled"))


def connect(url: str, *, cluster: bool | None = None, **options: Any) -> AnyRedis:
    """An asyncio client for ``url``; ``cluster=None`` asks the server which kind it is."""
    if cluster is None:
        cluster = cluster_enabled(url)
    if cluster:
        return RedisCluster.from_url(url, **options)
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


async def publish_all(redis: AnyRedis, messages: Iterable[tuple[str, str | bytes]]) -> None:
    """PUBLISH each (channel, message) in order: one pipeline on a single Redis; one command
    after another on a cluster, whose client refuses PUBLISH in a pipeline."""
    messages = list(messages)
    if not messages:
        return
    if is_cluster(redis):
        for channel, message in messages:
            await redis.publish(channel, message)
        return
    pipe = redis.pipeline(transaction=False)
    for channel, message in messages:
        pipe.publish(channel, message)
    await pipe.execute()


async def subscriber_count(redis: AnyRedis, channel: str) -> int:
    """How many connections subscribe to ``channel`` (on a cluster: summed over every node)."""
    extra = {"target_nodes": RedisCluster.ALL_NODES} if is_cluster(redis) else {}
    return int((await redis.pubsub_numsub(channel, **extra))[0][1])
