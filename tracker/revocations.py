"""Token revocation: an operator ends every token one rider, merchant, customer or operator holds.

``POST /v1/tokens/revoke`` with ``{"role", "sub"}`` records, for that subject, the second
before which tokens are void: a token issued at or before it (its ``iat``; a token with no
``iat`` cannot show when it was issued) is refused ``unauthorized: token revoked`` on every
process, and the sockets it holds open are closed 1008. A token issued in a later second works:
revoking a leaked link or a lost phone's token takes one call, and the subject gets a new token.

Revocations live in one Redis hash (``role:sub`` -> that second, some 40 bytes each; kept, as a
token may live for years). Every process holds the whole list in memory
(:class:`tracker.auth.RevocationList`: checking a request costs no round trip), reads it at start,
follows new revocations over pub/sub and reads it again whole after any gap in the feed.
"""
from __future__ import annotations

import logging
import time
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tracker.auth import RevocationList, Role
from tracker.errors import ApiError
from tracker.http.body import json_body
from tracker.jsonutil import JSONResponse
from tracker.pubsub import GAP
from tracker.redis_client import AnyRedis
from tracker.runtime import Runtime, runtime_of
from tracker.validate import require_id

log = logging.getLogger("tracker.revocations")

REVOKED_KEY = "tokens:revoked"  # hash: "role:sub" -> the last second whose tokens are void
REVOKED_CHANNEL = "tokens:revoked"

# Keeps the later of the stored and the new second (processes' clocks may differ a little);
# returns the second now in force.
_REVOKE = """
local current = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if tonumber(ARGV[2]) > current then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  return tonumber(ARGV[2])
end
return current
"""


async def revoke(redis: AnyRedis, role: Role, sub: str, now_s: float) -> int:
    """Void ``role``/``sub``'s tokens issued up to the second ``now_s``; the second in force."""
    second = int(now_s)
    return int(await redis.eval(_REVOKE, 1, REVOKED_KEY, f"{role.value}:{sub}", second))


async def load(redis: AnyRedis, revocations: RevocationList) -> None:
    """Read every stored revocation into ``revocations``."""
    revocations.replace(await redis.hgetall(REVOKED_KEY))


async def _close_revoked(rt: Runtime) -> None:
    closed = await rt.hub.close_where(rt.revocations.refuses, "unauthorized: token revoked")
    if closed:
        log.info("closed %d socket(s) whose token was revoked", closed)


async def _follow(rt: Runtime) -> None:
    """Apply revocations made by any process as they are published; read the list whole after a gap."""
    sub = await rt.pubsub.subscribe(REVOKED_CHANNEL)
    try:
        await load(rt.redis, rt.revocations)  # (after subscribing: nothing falls in between)
        await _close_revoked(rt)
        while True:
            item = await sub.get()
            if item is GAP:
                await load(rt.redis, rt.revocations)
            else:
                message: dict[str, Any] = orjson.loads(item)
                if not rt.revocations.apply(message["role"], message["sub"], int(message["until"])):
                    continue
            await _close_revoked(rt)
    finally:
        await sub.close()


async def start(rt: Runtime) -> None:
    """Read the revocations before the first request, then follow new ones."""
    await load(rt.redis, rt.revocations)
    rt.supervisor.spawn("token-revocations", lambda: _follow(rt))


async def revoke_endpoint(request: Request) -> Response:
    """``POST /v1/tokens/revoke`` (operator): void a subject's tokens issued up to now."""
    rt = runtime_of(request)
    rt.authenticate(request).require(Role.OPERATOR)
    body = await json_body(request)
    role_name = body.get("role")
    if role_name not in {r.value for r in Role}:
        raise ApiError("bad_message", f"'role' must be one of {', '.join(r.value for r in Role)}")
    role, sub = Role(role_name), require_id(body, "sub")
    until = await revoke(rt.redis, role, sub, time.time())
    rt.revocations.apply(role.value, sub, until)
    await rt.pubsub.publish(REVOKED_CHANNEL, orjson.dumps({"role": role.value, "sub": sub, "until": until}))
    await _close_revoked(rt)
    log.info("tokens of %s %s issued up to %d revoked", role.value, sub, until)
    return JSONResponse({"role": role.value, "sub": sub, "revoked_until": until})


routes = [Route("/v1/tokens/revoke", revoke_endpoint, methods=["POST"])]
