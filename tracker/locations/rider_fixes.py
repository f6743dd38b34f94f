"""The rider socket's location side: ``location`` and ``availability`` messages.

Per rider it keeps (shared by the rider's sockets on this process, riders_here.py) the last
good fix (for the sanity rule), a token bucket and the newest fix the bucket refused (held,
and taken once the budget allows unless a newer fix is taken first: a burst ends at its newest
position, not at the burst allowance's oldest); per connection a flood guard, what the
socket's silences explain (a backlog, ratelimit.Backlog: a link that stalled delivers the
fixes sent meanwhile at once, which is neither a flood nor a run of teleports), and the set
of orders the rider carries (loaded on connect, reloaded on the orders feature's
``_orders_changed`` notice) so that fix listeners (the customer channel) are only called for
riders carrying orders, without a Redis read per fix. A fix that arrives while that reload
is in flight waits for it, and once reloaded the last fix is fed to the listeners again: the
notice travels through Redis pub/sub and may come after the rider's first fix as a carrier
(more so on Redis Cluster), and a new order's customer should see the rider at once.
"""
from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass, replace
from typing import Any

from tracker.errors import ApiError
from tracker.locations import store
from tracker.locations.fix import Fix, parse_fix, require_fresh_client_ts
from tracker.locations.ratelimit import Backlog, FloodGuard
from tracker.locations.riders_here import RiderHere, RidersHere
from tracker.locations.sanity import CONFIRMING_FIXES, Verdict
from tracker.locations.writer import FixWriter
from tracker.logs import log_failure
from tracker.riders.endpoint import ON_CONNECT, ON_DISCONNECT, ON_INBOX_GAP, RiderConnection, handles, handles_internal
from tracker.validate import optional_int, require_bool
from tracker.wsconn import CLOSE_GOING_AWAY, CLOSE_NORMAL, CLOSE_POLICY

log = logging.getLogger("tracker.locations")

FLOOD_REFUSALS = 50
FLOOD_WINDOW_S = 10.0
# A socket silent this long (counted up to the longest a stalled socket stays open: the server's
# keepalive pings every 20 s and waits 20 s for the answer) may deliver a backlog after it.
BACKLOG_MIN_GAP_S = 1.0
BACKLOG_MAX_GAP_S = 40.0


def flood_close_reason(fix_rate: float) -> str:
    """The 1008 reason of a socket closed for flooding fixes: when to come back, and how fast."""
    return (f"rate_limited: too many location fixes, connection closed; reconnect in {FLOOD_WINDOW_S:g} s "
            f"and send at most {fix_rate:g} a second")


@dataclass
class HeldFix:
    """A ``location`` message the rate refused, kept to be taken when the budget allows."""

    conn: RiderConnection
    msg: dict[str, Any]
    arrived: float  # monotonic
    at_ms: int  # server time it arrived: its ts when taken
    backlog_ms: int


def rider_orders_key(rider_id: str) -> str:
    """The set of order ids a rider carries (written by the orders feature only)."""
    return f"rider:{{{rider_id}}}:orders"


LEAVING_CLOSE_CODES = (CLOSE_NORMAL, CLOSE_GOING_AWAY)  # a client closing its socket on purpose
CARRYING_RIDERS = "carrying:riders"  # ids of riders that carry orders (the ops page shows them even when silent)


def _writer(conn: RiderConnection) -> FixWriter:
    return conn.runtime.services["fix_writer"]


def _riders(conn: RiderConnection) -> RidersHere:
    return conn.runtime.services["riders_here"]


async def _load_orders(conn: RiderConnection) -> None:
    conn.state["orders"] = frozenset(await conn.runtime.redis.smembers(rider_orders_key(conn.rider_id)))


async def on_connect(conn: RiderConnection) -> None:
    """Load the rider's last good fix and carried orders; join the rider's shared state here."""
    last, region, _ = await store.last_fix(conn.runtime.redis, conn.rider_id)
    conn.state["here"] = _riders(conn).attach(conn.rider_id, last)
    _writer(conn).known_region(conn.rider_id, region)
    conn.state["attached"] = True  # (a connect that failed before this is not detached below)
    conn.state["flood"] = FloodGuard(FLOOD_REFUSALS, FLOOD_WINDOW_S)
    conn.state["backlog"] = Backlog(_riders(conn).fix_rate, BACKLOG_MIN_GAP_S, BACKLOG_MAX_GAP_S)
    await _load_orders(conn)


async def on_disconnect(conn: RiderConnection) -> None:
    """Leave the rider's shared state here (and the writer's, with its last socket); a client that
    closed the socket itself has left, and so has a rider whose token was revoked."""
    here: RiderHere | None = conn.state.get("here")
    if here is not None and here.held is not None and here.held.conn is conn:
        here.held = None  # (its task ends at its next look)
    if conn.state.get("attached") and _riders(conn).detach(conn.rider_id):  # (its last socket here)
        _writer(conn).forget(conn.rider_id)
    leaving = (conn.session.peer_close_code in LEAVING_CLOSE_CODES
               or conn.runtime.revocations.refuses(conn.session.principal))
    if leaving and conn.state.get("sent_fix"):
        # Out of nearby searches and dispatch now, not when its fix goes stale; a dropped
        # connection (no close frame, or one without a code) keeps the rider, as a phone often
        # comes back; a socket that sent no fix of its own (another of the rider's) changes nothing.
        await store.mark_left(conn.runtime.redis, conn.rider_id, conn.state["sent_fix"], conn.runtime.clock.now_ms())
        await _withdraw_open_offer(conn)  # its orders go to another rider at the next round, no refusal


async def _withdraw_open_offer(conn: RiderConnection) -> None:
    """Withdraw the offer the rider is considering, if any (it left, or went off duty): no
    cooldown, no refusal counted, the orders back to the next round."""
    dispatcher = conn.runtime.services.get("dispatcher")
    if dispatcher is not None:
        await dispatcher.withdraw_offer_of(conn.rider_id)


ON_CONNECT.append(on_connect)
ON_DISCONNECT.append(on_disconnect)
ON_INBOX_GAP.append(_load_orders)  # an _orders_changed notice may have been lost


@handles_internal("_orders_changed")
async def orders_changed(conn: RiderConnection, msg: dict[str, Any]) -> None:
    # Visible to location() from the moment the notice is taken: a fix handled during the
    # SMEMBERS round trip must not be judged against the old set (and skip the listeners).
    reload = conn.state["orders_reload"] = asyncio.ensure_future(_load_orders(conn))
    await reload
    here: RiderHere | None = conn.state.get("here")  # (none yet while the connection is being set up)
    last = here.judge.last if here is not None else None  # the rider's last good fix
    fresh_ms = conn.runtime.settings.stale_after_s * 1000
    if last is not None and conn.state["orders"] and conn.runtime.clock.now_ms() - last.ts <= fresh_ms:
        # Fed at once, not at the rider's next fix: a new order's customer sees the rider and
        # its ETA from the moment of assignment, and the orders a rider keeps get ETAs
        # without the leg of one it gave back. A fix too old to count (a rider back after a
        # while) waits for the next one.
        await _feed_listeners(conn, last, again=True)


@handles("location")
async def location(conn: RiderConnection, msg: dict[str, Any]) -> None:
    """Validate, rate-limit and sanity-check a fix, then queue it for the batched write.

    A fix over the rider's budget is refused ``rate_limited`` and held, replacing any older one
    held (:func:`_take_held` takes it when the budget allows). Refusals close the socket as a
    flood, except those the socket's silence before them explains (a backlog)."""
    now = time.monotonic()
    here: RiderHere = conn.state["here"]
    backlog: Backlog = conn.state["backlog"]
    backlog.arrived(now)
    held = HeldFix(conn, msg, now, conn.runtime.clock.now_ms(), round(backlog.held_s(now) * 1000))
    if not here.bucket.take(now):
        if not backlog.excuse(now) and conn.state["flood"].refused(now):
            await conn.session.close(CLOSE_POLICY, flood_close_reason(_riders(conn).fix_rate))
        else:
            _hold(here, held)
        raise _rate_limited(_riders(conn), here)
    await _take(held)


def _hold(here: RiderHere, held: HeldFix) -> None:
    """Keep ``held`` (the newest refused fix) to be taken when the budget allows."""
    here.held = held
    if here.held_task is None:
        here.held_task = asyncio.ensure_future(_take_held(here))


async def _take_held(here: RiderHere) -> None:
    """Take the rider's held fix as soon as its budget allows, unless a newer fix was taken
    first (or its socket closed): the newest position of a burst is not lost to the rate."""
    try:
        while here.held is not None:
            await asyncio.sleep(max(0.005, here.bucket.wait_s()))
            held = here.held
            if held is None or held.conn.session.closed:
                here.held = None
            elif here.bucket.take(time.monotonic()):
                here.held = None
                await held.conn.session.answer(held.msg, _take(held))
    finally:
        here.held_task = None


async def _take(held: HeldFix) -> None:
    """Judge the fix of ``held`` (taken within the budget) and queue it for the write."""
    conn, msg = held.conn, held.msg
    here: RiderHere = conn.state["here"]
    verdict, fix = here.judge.judge(_fresh_fix(conn, msg, held.at_ms, held.backlog_ms))
    if verdict is Verdict.DUPLICATE:
        return
    if verdict is Verdict.NO_FIX:
        raise ApiError("implausible_fix", "a fix at exactly 0, 0 is what a GPS without a fix sends; ignored")
    if verdict is Verdict.TELEPORT:
        raise ApiError("implausible_fix", "fix implies an impossible speed from the last good fix; ignored "
                       f"(a rider is moved by {CONFIRMING_FIXES} such fixes in a row that agree with each other)")
    if verdict is Verdict.OUT_OF_ORDER:
        raise ApiError("out_of_order_fix", f"fix ts {fix.client_ts} is not after the ts of the rider's last accepted "
                       f"fix ({here.judge.last.client_ts}); ignored, the newer position kept")
    if here.held is not None and here.held.arrived <= held.arrived:
        here.held = None  # a newer fix was taken: the one held is older
    conn.state["sent_fix"] = fix.ts  # this socket's own last fix: its clean close means the rider left
    _writer(conn).submit(conn.rider_id, fix)
    reload = conn.state.get("orders_reload")
    if reload is not None and not reload.done():
        await asyncio.wait([reload])  # the orders changed a moment ago: use the new set
    if conn.state["orders"]:
        await _feed_listeners(conn, fix)


def _fresh_fix(conn: RiderConnection, msg: dict[str, Any], at_ms: int, backlog_ms: int) -> Fix:
    """The frame's fix, validated and stamped with the server's time it arrived at (``clock_skew``
    when far off), and with how long a backlog may have held it back."""
    fix = parse_fix(msg, at_ms)
    require_fresh_client_ts(fix, int(conn.runtime.settings.max_clock_skew_s * 1000))
    return replace(fix, backlog_ms=backlog_ms) if backlog_ms else fix


def _rate_limited(riders: RidersHere, here: RiderHere) -> ApiError:
    """``rate_limited`` for a fix over the rider's budget, with when the next one is taken."""
    retry_ms = max(1, math.ceil(here.bucket.wait_s() * 1000))
    return ApiError("rate_limited", f"at most {riders.fix_rate:g} location fixes per second per rider on one server "
                    f"process (bursts of {riders.fix_burst:g}); the next is taken in {retry_ms} ms, and the newest "
                    "refused meanwhile then, unless a newer one comes first", retry_after_ms=retry_ms)


async def _feed_listeners(conn: RiderConnection, fix: Fix, *, again: bool = False) -> None:
    """Hand a fix of a rider carrying orders to the fix listeners (the orders' live channels);
    ``again``: the last fix once more, for orders that changed (no new position)."""
    for listener in conn.runtime.services.get("fix_listeners", ()):
        try:
            await listener(conn.rider_id, fix, conn.state["orders"], again=again)
        except Exception as exc:  # noqa: BLE001 - a listener must never break the rider's socket
            log_failure(log, "fix listener failed", exc, rider=conn.rider_id)


@handles("availability")
async def availability(conn: RiderConnection, msg: dict[str, Any]) -> None:
    """Whether the rider takes offers; optional ``shift_start``/``shift_end`` (server ts) for dispatch.

    A ``shift_start`` still ahead announces the shift: the dispatcher plans with the rider
    from then (where it is now) and offers it nothing before. Going unavailable withdraws the
    rider's open offer.
    """
    available = require_bool(msg, "available")
    shift_start = optional_int(msg, "shift_start", lo=0, hi=2**53)
    shift_end = optional_int(msg, "shift_end", lo=0, hi=2**53)
    if shift_start is not None and shift_end is not None and shift_start >= shift_end:
        raise ApiError("bad_message", f"shift_start {shift_start} is not before shift_end {shift_end}")
    await store.set_availability(conn.runtime.redis, conn.rider_id, available, shift_end, shift_start=shift_start)
    if not available:  # off duty: the offer it is considering goes to another rider, as on a pause
        await _withdraw_open_offer(conn)


