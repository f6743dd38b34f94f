"""Token revocation: an operator ends every token one rider, merchant, customer or operator holds.

``POST /v1/tokens/revoke`` with ``{"role", "sub"}`` records, for that subject, the time up to
which tokens are void: a token issued before it (by its ``iat``; a token with no ``iat`` cannot
show when it was issued) is refused ``unauthorized: token revoked`` on every process, and the
sockets it holds open are closed 1008. The time is Redis's clock plus :data:`CLOCK_MARGIN_MS`,
so an issuer whose clock runs up to that much ahead cannot slip a token past it. A token issued
later works: revoking a leaked link or a lost phone's token takes one call, and the subject
gets a new token. A revoked rider also leaves nearby search and dispatch at once, as one whose
app closed its socket, even when its phone is already gone.

Revocations live in one Redis hash (``role:sub`` -> ms, some 40 bytes each; kept, as a token
may live for years). The script that records one publishes it too, so a revocation stored is
a revocation announced. Every process holds the whole list in memory
(:class:`tracker.auth.RevocationList`: checking a request costs no round trip), reads it at
start, follows new revocations over pub/sub, and reads it whole again after any gap in the feed
and every :data:`RELOAD_EVERY_S`.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tracker.auth import ISSUER_CLOCK_SKEW_S, Role
from tracker.errors import ApiError
from tracker.http.body import json_body
from tracker.jsonutil import JSONResponse
from tracker.locations import store as rider_store
from tracker.pubsub import GAP
from tracker.redis_client import LUA_NOW_MS, AnyRedis
from tracker.runtime import Runtime, runtime_of
from tracker.validate import require_id
from tracker.wsconn import REVOKED_CLOSE

log = logging.getLogger("tracker.revocations")

REVOKED_KEY = "tokens:revoked"  # hash: "role:sub" -> the time (ms) up to which its tokens are void
REVOKED_CHANNEL = "tokens:revoked"
CLOCK_MARGIN_MS = ISSUER_CLOCK_SKEW_S * 1000  # how far ahead a token issuer's clock may run
RELOAD_EVERY_S = 300.0  # the whole list is read again this often (besides after every gap)

# Keeps the later of the stored and the new time; publishes what is in force; returns it.
_REVOKE = LUA_NOW_MS + """
local void_until = now + tonumber(ARGV[2])
local current = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if current and current > void_until then void_until = current end
redis.call('HSET', KEYS[1], ARGV[1], void_until)
redis.call('PUBLISH', ARGV[3], cjson.encode({role = ARGV[4], sub = ARGV[5], ['until'] = void_until}))
return void_until
"""


async def revoke(redis: AnyRedis, role: Role, sub: str) -> int:
    """Void ``role``/``sub``'s tokens issued up to now (Redis's clock, plus the margin), and
    announce it to every process; the time (ms) in force."""
    return int(await redis.eval(_REVOKE, 1, REVOKED_KEY, f"{role.value}:{sub}", CLOCK_MARGIN_MS,
                                REVOKED_CHANNEL, role.value, sub))


async def load(rt: Runtime) -> None:
    """Read every stored revocation into the process's list (unreadable entries are logged and skipped)."""
    unreadable = rt.revocations.merge(await rt.redis.hgetall(REVOKED_KEY))
    if unreadable:
        log.warning("skipped %d unreadable revocation(s) in %s, e.g. %r", len(unreadable), REVOKED_KEY,
                    unreadable[0])


async def _close_revoked(rt: Runtime) -> None:
    closed = await rt.hub.close_where(rt.revocations.refuses, REVOKED_CLOSE)
    if closed:
        log.info("closed %d socket(s) whose token was revoked", closed)


async def _follow(rt: Runtime) -> None:
    """Apply revocations made by any process as they are published; read the list whole after a
    gap, and every :data:`RELOAD_EVERY_S` in case one was missed."""
    sub = await rt.pubsub.subscribe(REVOKED_CHANNEL, "the revocations task")
    try:
        await load(rt)  # (after subscribing: nothing falls in between)
        await _close_revoked(rt)
        while True:
            try:
                async with asyncio.timeout(RELOAD_EVERY_S):
                    item = await sub.get()
            except TimeoutError:
                item = GAP
            if item is GAP:
                await load(rt)
            else:
                message: dict[str, Any] = orjson.loads(item)
                if not rt.revocations.apply(Role(message["role"]), message["sub"], int(message["until"])):
                    continue
            await _close_revoked(rt)
    finally:
        await sub.close()


async def start(rt: Runtime) -> None:
    """Read the revocations before the first request, then follow new ones."""
    await load(rt)
    rt.supervisor.spawn("token-revocations", lambda: _follow(rt))


async def _rider_gone(rt: Runtime, rider_id: str) -> None:
    """Take a revoked rider out of nearby search and dispatch now, wherever its sockets were
    (a lost phone's dropped without a close), and withdraw its open offer, so its orders go to
    another rider now, not at the offer's timeout.

    The rider is marked left as of :data:`CLOCK_MARGIN_MS` (real time) from now, not as of its
    last stored fix: fixes its revoked sockets sent meanwhile (still in a process's write batch,
    or taken by a process the revocation has not reached yet) are stamped before that and do
    not bring it back; its first fix with a new token (issued after ``revoked_until``) does."""
    now = rt.clock.now_ms()
    ahead = int(CLOCK_MARGIN_MS * rt.clock.scale)  # (a margin of real time: a replay's clock runs faster)
    await rider_store.mark_left(rt.redis, rider_id, now + ahead, now)
    dispatcher = rt.services.get("dispatcher")
    if dispatcher is not None:
        await dispatcher.withdraw_offer_of(rider_id)


async def revoke_endpoint(request: Request) -> Response:
    """``POST /v1/tokens/revoke`` (operator): void a subject's tokens issued up to now."""
    rt = runtime_of(request)
    operator = rt.authenticate(request)
    operator.require(Role.OPERATOR)
    body = await json_body(request)
    roles = [r.value for r in Role]
    if not isinstance(body.get("role"), str) or body["role"] not in roles:
        raise ApiError("bad_message", f"'role' must be one of {', '.join(roles)}")
    role, sub = Role(body["role"]), require_id(body, "sub")
    until = await revoke(rt.redis, role, sub)
    rt.revocations.apply(role, sub, until)  # (this process's own copy of the message may come later)
    await _close_revoked(rt)
    if role is Role.RIDER:
        await _rider_gone(rt, sub)
    log.info("tokens of %s %s issued up to %d revoked", role.value, sub, until, extra={"by": operator.sub})
    return JSONResponse({"role": role.value, "sub": sub, "revoked_until": until})


routes = [Route("/v1/tokens/revoke", revoke_endpoint, methods=["POST"])]
