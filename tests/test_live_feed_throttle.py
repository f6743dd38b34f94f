"""The rider feed's pace: a fix fed again for changed orders does not hold back later fixes.

A rider sending a fix a second had its positions on its customers' screens 2 ms after each fix,
until a kitchen's ``delay`` had its last fix fed again (the orders changed): that re-publication,
held to the end of the second, restarted the second, so every later fix waited up to ~1 s more,
for good. Real positions stay at most one a second, and no two frames come closer than a
customer socket's spacing (it would drop the second).
"""
from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

from tracker.locations import Fix
from tracker.orders.feed_pace import AGAIN_GRACE_S, MIN_INTERVAL_S, SPACING_S
from tracker.orders.live import RiderOrdersFeed

ORDERS, MORE = frozenset({"o1"}), frozenset({"o1", "o2"})
SLACK = 0.15  # timers' and the test's own scheduling


def _feed() -> tuple[RiderOrdersFeed, list[tuple[float, Fix, frozenset[str]]]]:
    """A feed whose deliveries are only recorded: (when, fix, orders)."""
    settings = SimpleNamespace(rider_speed_mps=5.0, pickup_service_s=240.0, dropoff_service_s=240.0)
    feed = RiderOrdersFeed(SimpleNamespace(settings=settings))  # type: ignore[arg-type]
    sent: list[tuple[float, Fix, frozenset[str]]] = []

    async def deliver(rider_id: str, fix: Fix, orders: frozenset[str]) -> None:
        sent.append((time.monotonic(), fix, orders))

    feed._deliver = deliver  # type: ignore[method-assign]
    return feed, sent


def _fix(i: int) -> Fix:
    return Fix(52.52 + i / 1000, 13.40, 1_000 * i)


async def _at(start: float, t: float) -> None:
    await asyncio.sleep(max(0.0, start + t - time.monotonic()))


async def test_a_rider_streaming_a_fix_a_second_is_not_held_back_by_a_kitchens_delay() -> None:
    """The fix fed again waits for the second's end and a little more; the rider's next fix,
    due then, goes at once instead, with the new orders; and so does every later one."""
    feed, sent = _feed()
    start = time.monotonic()
    for i in range(4):
        await _at(start, i * MIN_INTERVAL_S)
        fed = time.monotonic()
        await feed("r1", _fix(i), MORE if i else ORDERS)
        await asyncio.sleep(SLACK)  # (one that came a hair before its second's end waits for it)
        assert sent[-1][1] == _fix(i) and sent[-1][0] - fed < SLACK, (i, sent)  # at once
        if i == 0:
            await _at(start, MIN_INTERVAL_S / 2)
            await feed("r1", _fix(0), MORE, again=True)  # the kitchen's delay: the orders changed
    assert [fix for _, fix, _ in sent] == [_fix(i) for i in range(4)] and sent[1][2] == MORE


async def test_a_fix_fed_again_goes_alone_when_no_fix_comes_and_the_next_is_not_held_back_for_good() -> None:
    feed, sent = _feed()
    start = time.monotonic()
    await feed("r1", _fix(0), ORDERS)
    await _at(start, 0.5)
    await feed("r1", _fix(0), MORE, again=True)
    await _at(start, MIN_INTERVAL_S + AGAIN_GRACE_S + SLACK)
    assert [(fix, orders) for _, fix, orders in sent] == [(_fix(0), ORDERS), (_fix(0), MORE)], sent
    again_at = sent[1][0]
    assert again_at - start >= MIN_INTERVAL_S + AGAIN_GRACE_S - 0.01
    await _at(start, 1.4)  # the rider's next fix, late: it waits for the spacing, once
    await feed("r1", _fix(1), MORE)
    await _at(start, 1.4 + SPACING_S + SLACK)
    assert len(sent) == 3 and sent[2][0] - again_at >= SPACING_S - 0.01, sent
    await _at(start, 2.5)  # a second after the last one came (not after it went): at once
    fed = time.monotonic()
    await feed("r1", _fix(2), MORE)
    await asyncio.sleep(SLACK)
    assert len(sent) == 4 and sent[3][0] - fed < SLACK, sent


async def test_real_fixes_stay_at_most_one_a_second_the_newest_kept() -> None:
    feed, sent = _feed()
    start = time.monotonic()
    await feed("r1", _fix(0), ORDERS)
    await _at(start, 0.2)
    await feed("r1", _fix(1), ORDERS)  # too soon: waits
    await feed("r1", _fix(0), MORE, again=True)  # the orders changed meanwhile: the fix waiting goes with them
    await feed("r1", _fix(2), MORE)  # newer still: replaces it
    await _at(start, MIN_INTERVAL_S + SLACK)
    assert [(fix, orders) for _, fix, orders in sent] == [(_fix(0), ORDERS), (_fix(2), MORE)], sent
    assert sent[1][0] - sent[0][0] >= MIN_INTERVAL_S - 0.01
    await feed("r1", _fix(3), MORE)  # a second counts from the last one's publication: waits
    assert len(sent) == 2
    await _at(start, 2 * MIN_INTERVAL_S + SLACK)
    assert len(sent) == 3 and sent[2][0] - sent[1][0] >= MIN_INTERVAL_S - 0.01
