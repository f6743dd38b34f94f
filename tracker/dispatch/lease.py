"""A Redis lease: at most one holder at a time per key, renewed while the holder lives.

The dispatcher takes one lease per region so that, across all server processes, one of them
plans a region at a time. A holder that dies stops renewing and the lease expires after its
TTL; another process then takes it over. Renew and release are Lua scripts that act only if
the caller still owns the lease, so a slow former holder can never extend or drop the lease
of its successor.
"""
from __future__ import annotations

from tracker.redis_client import AnyRedis


_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

# Delete KEYS[1] only if it still holds ARGV[1]; shared by every "release if mine" step.
COMPARE_AND_DELETE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class Lease:
    """One named lease held by ``owner`` for ``ttl_ms`` real milliseconds at a time."""

    def __init__(self, redis: AnyRedis, key: str, owner: str, ttl_ms: int) -> None:
        self.redis, self.key, self.owner, self.ttl_ms = redis, key, owner, int(ttl_ms)
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(COMPARE_AND_DELETE)

    async def hold(self) -> bool:
        """Take the lease if free, or renew it if already ours; True when we hold it."""
        if await self.renew():
            return True
        return bool(await self.redis.set(self.key, self.owner, nx=True, px=self.ttl_ms))

    async def renew(self) -> bool:
        """Renew the lease if it is still ours, never taking it afresh; False when it lapsed or
        another holds it (whatever we did since we last held it may be another's to do now)."""
        return bool(await self._renew(keys=[self.key], args=[self.owner, self.ttl_ms]))

    async def release(self) -> bool:
        """Give the lease up if we hold it; True when it was ours."""
        return bool(await self._release(keys=[self.key], args=[self.owner]))
