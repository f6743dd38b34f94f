"""What processes sharing a Redis must agree on: the time, and the secret that signs tokens.

Offers expire, riders go stale and sweeps run by each process's server clock, and every one
of them acts on the whole fleet's keys: a process whose clock runs ahead expires the offers
and drops the riders of every other. And a token one process signs must be good on every
other, or a client that lands on the odd one out is refused (1008 unauthorized) for a token
that works elsewhere. Three ways to disagree, each refused at start (:func:`check_at_start`)
and watched while running (:func:`watch`: the ``agreement`` task, a failure in ``/readyz``;
a host clock gone off while running is not a failure but a state, below):

- a host clock more than :data:`MAX_SKEW_S` from Redis's ``TIME`` (no NTP, a drifting VM);
- a server clock running at another speed (``TRACKER_TIME_SCALE``, a replay) than the other
  processes on that Redis. A scaled clock runs away from the wall clock from its process's
  start, so it agrees with no other process at all: a scaled server needs a Redis of its own;
- another ``TRACKER_SECRET`` than the other processes' (compared by a fingerprint, an HMAC of
  a fixed text under the secret, which does not give the secret away).

Every process keeps a field in the ``servers:clocks`` hash (``<host>:<pid>:<random>``, unique
per start even for containers that all run as pid 1 on one host name, -> ``"<scale>
<fingerprint> <until ms>"``, by Redis's clock) and refreshes it every :data:`REFRESH_S`;
fields of processes gone without a clean stop lapse after :data:`ENTRY_TTL_MS`. Fields this
version cannot read are neither counted nor removed; an earlier version's ``"<scale> <until>"``
counts for its clock only.

A scaled process also keeps :data:`MARK_KEY`, the clock mark: ``"<server ms> <scale>"``, a
server time no stamp it wrote to this Redis lies beyond (refreshed every :data:`REFRESH_S` to
:data:`MARK_LEAD_S` real seconds ahead, by the ``clock_mark`` task; its time exactly at a clean
stop). Its data (rider fixes, staleness scores, offer deadlines, cooldowns) is stamped in its
server time, hours ahead of the wall clock after a while at x300: a scaled process started
again on that Redis resumes its clock from the mark (:func:`start_clock`) rather than from the
wall clock, so the data does not lie in its future; one at real speed, which cannot move its
clock, is refused while the mark is ahead of the wall clock.

A host clock that goes off while the process runs (a jump, a drift) stops what this process does
to the whole fleet by it, as long as it is off: the offer-expiry sweep, the stale-rider sweep,
the silent-rider take-back, and planning (it lets go of its dispatch leases, so another process
plans). :class:`~tracker.clock.ClockCheck` (``rt.clock_check``) says whether it may; ``/readyz``
is 503 ``clock_disagreement`` meanwhile, and the log says in one line when it stops and when it
resumes, which it does by itself once the clocks agree again (checked every
:data:`CHECK_OFF_S` while off). A jump shows at once, between two roll calls
(:meth:`~tracker.clock.ClockCheck.skew_s`), and brings the next one forward.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import secrets
import time
from typing import Any

import redis

from tracker.clock import MAX_SKEW_S, Clock, ClockCheck
from tracker.logs import Reported
from tracker.redis_client import AnyRedis, first_answering, seed_urls
from tracker.runtime import Runtime

log = logging.getLogger("tracker.agreement")

CLOCKS_KEY = "servers:clocks"
MARK_KEY = "servers:clock_mark"
# MAX_SKEW_S (tracker.clock): the margin revocations already allow a token issuer (auth.ISSUER_CLOCK_SKEW_S)
REFRESH_S = 10.0
CHECK_OFF_S = 1.0  # how often the roll call runs while this host's clock is off (to resume soon after)
LOOK_S = 0.5  # how often the watch looks, between roll calls, whether the wall clock jumped
ENTRY_TTL_MS = 30_000
# Real seconds ahead of its clock a scaled process's refreshed mark reaches: to its next refresh,
# and as long again for one that comes late (a busy loop, a slow Redis), so that the stamps of a
# process killed outright still lie behind it.
MARK_LEAD_S = 2 * REFRESH_S

# KEYS: the clocks hash. ARGV: this process, its scale, "1" to (re)register it, entry TTL ms.
# Drops lapsed fields; returns Redis's time (ms) and the other live processes' entries.
_ROLL_CALL = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local all = redis.call('HGETALL', KEYS[1])
local out = {tostring(now)}
for i = 1, #all, 2 do
  if all[i] ~= ARGV[1] then
    local untl = tonumber(string.match(all[i + 1], ' (%d+)$'))
    if untl and untl > now then
      table.insert(out, all[i + 1])
    elseif untl then
      redis.call('HDEL', KEYS[1], all[i])
    end
  end
end
if ARGV[3] == '1' then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ' ' .. tostring(now + tonumber(ARGV[4])))
end
return out
"""


class Disagreement(Reported):
    """This process's clock or secret does not agree with the others sharing its Redis (its
    message says which, and what to do: logged in one line)."""


_NAME = f"{os.uname().nodename}:{os.getpid()}:{secrets.token_hex(4)}"


def process_name() -> str:
    """This process's field in :data:`CLOCKS_KEY` (host and pid to read, a random part to be unique)."""
    return _NAME


def fingerprint(secret: str) -> str:
    """A short mark of ``secret`` that tells two secrets apart without giving either away."""
    return "fp:" + hmac.new(secret.encode(), b"tracker token secret", hashlib.sha256).hexdigest()[:16]


def _fingerprint_of(entry: str) -> str | None:
    """The secret's fingerprint in a roll-call entry (``None`` for an earlier version's entry)."""
    parts = entry.split(" ")
    return parts[1] if len(parts) == 3 and parts[1].startswith("fp:") else None


def _scale_of(entry: str) -> float | None:
    """The clock speed in a roll-call entry, ``None`` when it is not one this version can read."""
    try:
        scale = float(entry.split(" ", 1)[0])
    except ValueError:
        return None
    return scale if scale > 0 and scale == scale else None


def disagreement(local_ms: float, redis_ms: float, scale: float, others: list[str], mark: str) -> str | None:
    """Why this process's clock or secret (its fingerprint ``mark``) cannot serve beside
    ``others`` (their roll-call entries), or ``None``. ``local_ms`` is the wall clock at the
    moment Redis read ``redis_ms``."""
    return skew_problem(local_ms, redis_ms) or fleet_problem(scale, others, mark)


def skew_problem(local_ms: float, redis_ms: float) -> str | None:
    """Why this host's clock (``local_ms`` when Redis read ``redis_ms``) is too far from Redis's, or ``None``."""
    skew_s = (local_ms - redis_ms) / 1000.0
    if abs(skew_s) > MAX_SKEW_S:
        side = "ahead of" if skew_s > 0 else "behind"
        return (f"this host's clock is {abs(skew_s):.1f} s {side} Redis's: processes sharing a Redis must agree "
                f"on the time within {MAX_SKEW_S:.0f} s (offers, rider fixes and sweeps go by it); set the host's "
                "clock (NTP)")
    return None


def fleet_problem(scale: float, others: list[str], mark: str) -> str | None:
    """Why this process's clock speed ``scale`` or secret (its fingerprint ``mark``) cannot serve
    beside ``others`` (their roll-call entries), or ``None``."""
    known = [s for s in map(_scale_of, others) if s is not None]
    lapse = f" (a process stopped without a clean stop counts for {ENTRY_TTL_MS // 1000} s more)"
    if scale != 1.0 and known:
        return (f"this server's clock runs at TRACKER_TIME_SCALE={scale:g}, and {len(known)} other server "
                "process(es) use this Redis: a scaled clock agrees with no other process, so a replay's server "
                "needs a Redis of its own" + lapse)
    faster = sorted({s for s in known if s != 1.0})
    if faster:
        return (f"this Redis is in use by a server whose clock runs at TRACKER_TIME_SCALE={faster[0]:g} (a replay), "
                "whose sweeps would expire this server's offers and drop its riders: give the replay a Redis of its "
                "own, or stop it" + lapse)
    marks = {m for m in map(_fingerprint_of, others) if m is not None}
    if marks - {mark}:
        return (f"{len(others)} other server process(es) on this Redis sign tokens with another TRACKER_SECRET: a "
                "token one of them issues is refused by this one and the other way round; give every process the "
                "same secret (to change it, stop them all first)" + lapse)
    return None


def _values(reply: list[Any]) -> list[str]:
    """The roll call's answer as text: Redis's time (ms), then the other processes' entries."""
    return [v.decode() if isinstance(v, bytes) else str(v) for v in reply]


def _judge(reply: list[Any], local_ms: float, scale: float, mark: str) -> str | None:
    values = _values(reply)
    return disagreement(local_ms, float(values[0]), scale, values[1:], mark)


def _entry(scale: float, mark: str) -> str:
    """This process's roll-call entry without its end (the script appends ``" <until>"``)."""
    return f"{scale!r} {mark}"


# What a blocking client raises when Redis does not serve it: a cluster client that reaches no
# node (or no node serving a slot) raises ``RedisClusterException``s, which are no ``RedisError``.
SYNC_REDIS_ERRORS: tuple[type[BaseException], ...] = (redis.RedisError, redis.exceptions.RedisClusterException,
                                                      OSError)


def _sync_client(url: str, cluster: bool, timeout: float) -> Any:
    """A blocking client for the checks made before the server runs (and after it stopped).

    ``url`` may name several nodes of a cluster (``REDIS_URL``): the client starts from the first
    that answers (a cluster client learns every node at its construction, so one that cannot reach
    its address raises there), so a server stopping while the node it started from is down still
    reaches the others."""
    if not cluster:  # (a cluster of one primary, named with its replicas, too)
        return redis.Redis.from_url(first_answering(url, timeout), socket_connect_timeout=timeout,
                                    socket_timeout=timeout)
    seeds = seed_urls(url)
    for i, seed in enumerate(seeds):
        try:
            return redis.RedisCluster.from_url(seed, socket_connect_timeout=timeout, socket_timeout=timeout)
        except SYNC_REDIS_ERRORS:
            if i == len(seeds) - 1:
                raise
    raise AssertionError("unreachable")  # (seed_urls names one address at least)


def check_at_start(url: str, scale: float, secret: str, *, cluster: bool, timeout: float = 5.0) -> None:
    """Raise :class:`Disagreement` if this process's clock or secret cannot join the servers on ``url``."""
    client = _sync_client(url, cluster, timeout)
    mark = fingerprint(secret)
    try:
        before = time.time() * 1000
        reply = client.eval(_ROLL_CALL, 1, CLOCKS_KEY, process_name(), _entry(scale, mark), "0", ENTRY_TTL_MS)
        local_ms = (before + time.time() * 1000) / 2
    finally:
        client.close()
    problem = _judge(reply, local_ms, scale, mark)
    if problem is not None:
        raise Disagreement(problem)


async def watch(redis_client: AnyRedis, scale: float, secret: str, check: ClockCheck | None = None) -> None:
    """Keep this process on the roll call and check, every :data:`REFRESH_S`, that it still agrees
    with the others. Another clock speed or secret raises (the supervisor logs and shows it, and
    restarts this); a host clock too far from Redis's is ``check``'s state (see the module's
    words), measured every :data:`CHECK_OFF_S` until it agrees again, and at once when the wall
    clock jumps between two roll calls."""
    check = check if check is not None else ClockCheck()
    roll_call = redis_client.register_script(_ROLL_CALL)
    name, mark = process_name(), fingerprint(secret)
    while True:
        before = time.time() * 1000
        reply = await roll_call(keys=[CLOCKS_KEY], args=[name, _entry(scale, mark), "1", ENTRY_TTL_MS])
        local_ms = (before + time.time() * 1000) / 2
        values = _values(reply)
        was = check.problem
        skew = skew_problem(local_ms, float(values[0]))
        check.measured((local_ms - float(values[0])) / 1000.0, skew)
        if skew is not None and was is None:
            log.error("%s. Until it agrees again this process neither expires offers, sweeps stale riders, takes "
                      "orders back from silent riders nor dispatches (it lets go of its dispatch leases), and "
                      "/readyz is 503 clock_disagreement", skew)
        elif skew is None and was is not None:
            log.info("this host's clock agrees with Redis's again (%.1f s apart): this process expires offers, "
                     "sweeps riders and dispatches again", check.skew_s())
        problem = fleet_problem(scale, values[1:], mark)
        if problem is not None:
            raise Disagreement(problem)
        await _until_next_roll_call(check)


async def _until_next_roll_call(check: ClockCheck) -> None:
    """Wait :data:`REFRESH_S` (:data:`CHECK_OFF_S` while the clock is off), or until the wall
    clock is seen to jump (so the next roll call measures it at once)."""
    if check.problem is not None:
        await asyncio.sleep(CHECK_OFF_S)
        return
    deadline = time.monotonic() + REFRESH_S
    while (left := deadline - time.monotonic()) > 0:
        await asyncio.sleep(min(left, LOOK_S))
        if not check.agrees:
            return


async def leave(redis_client: AnyRedis) -> None:
    """Take this process off the roll call (a clean stop)."""
    await redis_client.hdel(CLOCKS_KEY, process_name())


def _mark_of(raw: bytes | str | None) -> tuple[int, float] | None:
    """The server time (ms) and clock speed in a clock mark, ``None`` for none or one unreadable."""
    if raw is None:
        return None
    text = raw.decode() if isinstance(raw, bytes) else raw
    try:
        ms_text, scale_text = text.split(" ")
        ms, scale = int(ms_text), float(scale_text)
    except ValueError:
        return None
    return (ms, scale) if scale > 0 and scale == scale else None


def mark_value(clock: Clock, lead_s: float) -> str:
    """The clock mark ``lead_s`` real seconds ahead of ``clock`` now."""
    return f"{clock.now_ms() + int(lead_s * clock.scale * 1000)} {clock.scale!r}"


def _span(seconds: float) -> str:
    """``seconds`` as a person reads a span of time (``"45 s"``, ``"12 min"``, ``"3.4 h"``, ``"2.1 days"``)."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172_800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86_400:.1f} days"


def ahead_of_real_time(mark_ms: int, mark_scale: float, now_ms: int, where: str, own: str,
                       mark_deletable: bool) -> str:
    """The refusal of a real-speed server on a Redis (``where``: the data folder or the Redis) stamped
    by a scaled clock up to ``mark_ms``; ``own``: what to give this server instead; with
    ``mark_deletable`` (a Redis one can reach while this server is not running) deleting the mark too."""
    until = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(mark_ms / 1000))
    return (f"{where} holds data stamped up to {_span((mark_ms - now_ms) / 1000)} ahead of the wall clock, by a server "
            f"whose clock ran at TRACKER_TIME_SCALE={mark_scale:g} (a replay): a server at real speed cannot move its "
            "clock there, and would refuse its riders' fixes as out of order and keep silent riders as fresh; give this "
            f"server {own} of its own, or start it with --time-scale {mark_scale:g} to resume that clock (or wait until "
            f"{until}" + (f"; or, if nothing that replay stamped matters, delete the key {MARK_KEY} there)"
                          if mark_deletable else ")"))


def start_clock(url: str, scale: float, *, cluster: bool, where: str, own: str, mark_deletable: bool,
                timeout: float = 5.0) -> Clock:
    """The clock of a process starting on ``url``: the wall clock at real speed (raising
    :class:`Disagreement` when a scaled clock stamped this Redis further ahead of it than
    :data:`MAX_SKEW_S`); a scaled one resumes from the clock mark, if it is ahead of the wall clock,
    and moves the mark :data:`MARK_LEAD_S` ahead at once (a crash in its first moments is covered too).
    ``where``, ``own`` and ``mark_deletable`` word a refusal (:func:`ahead_of_real_time`)."""
    client = _sync_client(url, cluster, timeout)
    try:
        mark = _mark_of(client.get(MARK_KEY))
        now_ms = int(time.time() * 1000)
        if scale == 1.0:
            # (a real-speed process leaves the mark alone: one behind the wall clock is harmless)
            if mark is not None and mark[0] - now_ms > MAX_SKEW_S * 1000:
                raise Disagreement(ahead_of_real_time(mark[0], mark[1], now_ms, where, own, mark_deletable))
            return Clock()
        clock = Clock(scale, origin_ms=max(now_ms, mark[0]) if mark is not None else now_ms)
        client.set(MARK_KEY, mark_value(clock, MARK_LEAD_S))
        return clock
    finally:
        client.close()


def mark_stopped(url: str, clock: Clock, *, cluster: bool, timeout: float = 5.0) -> None:
    """Set the clock mark to ``clock``'s time now: a scaled process that stopped cleanly (nothing of
    it stamps any more) is resumed exactly where it left off, not :data:`MARK_LEAD_S` later."""
    client = _sync_client(url, cluster, timeout)
    try:
        client.set(MARK_KEY, mark_value(clock, 0.0))
    finally:
        client.close()


async def keep_mark(redis_client: AnyRedis, clock: Clock) -> None:
    """Keep the clock mark :data:`MARK_LEAD_S` ahead of ``clock``, every :data:`REFRESH_S` (the
    ``clock_mark`` task of a scaled process; a task of its own, so a disagreement, which fails the
    ``agreement`` task and holds it back for its backoff, never leaves the mark behind)."""
    while True:
        await redis_client.set(MARK_KEY, mark_value(clock, MARK_LEAD_S))
        await asyncio.sleep(REFRESH_S)


async def start(rt: Runtime) -> None:
    """Join the roll call and watch it (the ``agreement`` background task); a scaled process keeps
    its clock mark too (``clock_mark``)."""
    rt.supervisor.spawn("agreement", lambda: watch(rt.redis, rt.clock.scale, rt.secret, rt.clock_check))
    if rt.clock.scale != 1.0:
        rt.supervisor.spawn("clock_mark", lambda: keep_mark(rt.redis, rt.clock))


async def stop(rt: Runtime) -> None:
    """Leave the roll call, so a server started next at another speed is not refused for 30 s."""
    await leave(rt.redis)
