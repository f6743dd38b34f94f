"""One rider, one position: old, out-of-order and contradictory fixes never replace a newer one,
whichever socket or server process they come through, and the fix budget is the rider's."""
from __future__ import annotations

import asyncio
import time

from tests.test_locations import eventually, rider, rider_and_redis
from tracker.launcher import ServerProcess
from tracker.redis_client import connect

BERLIN, MUNICH = (52.52, 13.405), (48.137, 11.575)  # 504 km apart


def now_ms() -> int:
    return int(time.time() * 1000)


async def _stored(red, rid: str) -> tuple[float, float, str]:  # type: ignore[no-untyped-def]
    h = await red.hgetall(f"rider:{{{rid}}}")
    return float(h["lat"]), float(h["lng"]), h.get("client_ts", "")


async def test_a_fix_older_than_the_last_accepted_one_is_refused_and_changes_nothing(server: ServerProcess, redis_url: str, uid) -> None:  # type: ignore[no-untyped-def]
    rid = uid("late")
    async with rider_and_redis(server, redis_url, rid) as (r, red):
        t = now_ms()
        await r.location(52.5200, 13.4050, ts=t)
        assert await eventually(lambda: red.exists(f"rider:{{{rid}}}"))
        written = await red.hget(f"rider:{{{rid}}}", "ts")
        await asyncio.sleep(1.2)
        await r.location(52.5195, 13.4050, ts=t - 240_000, id="old")  # taken 4 minutes before, 55 m away
        error = await r.expect("error")
        assert error["code"] == "out_of_order_fix" and error["ref"] == "old", error
        await r.location(52.5195, 13.4050, ts=t, id="same")  # no later than the last one either
        assert (await r.expect("error"))["code"] == "out_of_order_fix"
        await asyncio.sleep(0.3)
        assert await _stored(red, rid) == (52.52, 13.405, str(t))
        assert await red.hget(f"rider:{{{rid}}}", "ts") == written  # not made fresh by the old fix


async def test_an_older_fix_through_another_server_process_never_replaces_the_stored_one(server: ServerProcess, start_server, redis_url: str, uid) -> None:  # type: ignore[no-untyped-def]
    rid = uid("twoproc")
    other = start_server()
    first, second = await rider(server, rid), await rider(other, rid)  # both connect before any fix
    red = connect(redis_url, decode_responses=True)
    try:
        t = now_ms()
        await first.location(*BERLIN, ts=t)
        assert await eventually(lambda: red.exists(f"rider:{{{rid}}}"))
        await asyncio.sleep(0.5)
        await second.location(BERLIN[0] - 0.0005, BERLIN[1], ts=t - 20_000)  # the other phone's, 20 s older
        await asyncio.sleep(0.5)
        assert await _stored(red, rid) == (*BERLIN, str(t))
    finally:
        await first.close()
        await second.close()
        await red.aclose()


async def _alternate(a, b, red, rid: str, rounds: int) -> tuple[list[float], list[str]]:  # type: ignore[no-untyped-def]
    """Berlin on ``a``, Munich on ``b``, 0.6 s apart: the stored latitude after each, and b's errors."""
    seen = []
    for i in range(rounds):
        await a.location(*BERLIN, ts=now_ms())
        await asyncio.sleep(0.6)
        seen.append((await _stored(red, rid))[0])
        await b.location(*MUNICH, ts=now_ms())
        await asyncio.sleep(0.6)
        seen.append((await _stored(red, rid))[0])
    codes = []
    while True:
        try:
            frame = await b.recv(timeout=0.3)
        except (asyncio.TimeoutError, TimeoutError):
            break
        if frame.get("type") == "error":
            codes.append(frame["code"])
    return seen, codes


async def test_a_rider_on_two_sockets_is_judged_from_its_one_last_good_fix(server: ServerProcess, redis_url: str, uid) -> None:  # type: ignore[no-untyped-def]
    rid = uid("twosock")
    a, b = await rider(server, rid), await rider(server, rid)
    red = connect(redis_url, decode_responses=True)
    try:
        seen, codes = await _alternate(a, b, red, rid, 4)
        assert seen == [BERLIN[0]] * 8
        assert codes == ["implausible_fix"] * 4
    finally:
        await a.close()
        await b.close()
        await red.aclose()


async def test_a_rider_on_two_server_processes_is_not_moved_by_the_other_phone(server: ServerProcess, start_server, redis_url: str, uid) -> None:  # type: ignore[no-untyped-def]
    rid = uid("twoproc2")
    other = start_server()
    a, b = await rider(server, rid), await rider(other, rid)
    red = connect(redis_url, decode_responses=True)
    try:
        # The store refuses b's first Munich fix (b's process had no fix to judge it from) and
        # b's process judges the next ones from the stored Berlin: implausible_fix. The third
        # refused in a row would move the rider, as the rule says (three that agree).
        seen, codes = await _alternate(a, b, red, rid, 3)
        assert seen == [BERLIN[0]] * 6
        assert codes == ["implausible_fix"] * 2
    finally:
        await a.close()
        await b.close()
        await red.aclose()


async def test_the_fix_rate_limit_is_the_riders_not_each_sockets(server: ServerProcess, uid) -> None:  # type: ignore[no-untyped-def]
    rid = uid("burst")
    a, b = await rider(server, rid), await rider(server, rid)
    try:
        for i in range(15):
            await a.location(40.0 + i * 1e-5, 3.0)
            await b.location(40.0 + i * 1e-5, 3.0001)
        limited = []
        for sock in (a, b):
            while True:
                try:
                    frame = await sock.recv(timeout=0.5)
                except (asyncio.TimeoutError, TimeoutError):
                    break
                if frame.get("code") == "rate_limited":
                    limited.append(frame)
        assert 30 - len(limited) <= 12, len(limited)  # a burst of 10 (and a token or two meanwhile), not 20
        assert all(0 < f["retry_after_ms"] <= 200 for f in limited), limited[:2]
        assert "per rider" in limited[0]["message"] and "bursts of 10" in limited[0]["message"]
    finally:
        await a.close()
        await b.close()
