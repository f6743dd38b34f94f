"""Servers sharing a Redis agree on the time and on the token secret, or the one that cannot
is refused (or flagged).

A replay's server (a fast clock) beside production ones expired their offers and dropped their
riders; so did a host whose clock ran 40 s ahead; a process given another TRACKER_SECRET
refused every token the others issued. Each is now refused at start with one line.
"""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import httpx
import pytest
import redis

from tracker.launcher import ServerProcess, free_port
from tracker.redis_client import cluster_enabled

SECRET = "clock-secret-0123456789abcdef0123456789abcdef"


def _serve(redis_url: str, data_dir: Path, env: dict[str, str] | None = None,
           clock_ahead_s: float = 0.0) -> subprocess.CompletedProcess[str]:
    """``tracker serve`` on ``redis_url`` as an operator starts it; its host clock ``clock_ahead_s`` ahead."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER_") and k != "REDIS_URL"}
    full.update({"REDIS_URL": redis_url, "TRACKER_SECRET": SECRET, "TRACKER_DATA_DIR": str(data_dir), **(env or {})})
    args = ["serve", "--port", str(free_port())]
    if clock_ahead_s:  # the process's wall clock, as a host whose clock is off would give it
        code = (f"import sys, time; real = time.time; time.time = lambda: real() + {clock_ahead_s}; "
                f"sys.argv = ['tracker', *{args!r}]; from tracker.cli import main; raise SystemExit(main())")
        cmd = [sys.executable, "-c", code]
    else:
        cmd = [sys.executable, "-m", "tracker", *args]
    return subprocess.run(cmd, env=full, capture_output=True, text=True, timeout=60)


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if "tracker:" in line]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def test_a_replay_server_and_a_real_time_one_never_share_a_redis(
        own_redis: str, start_server: Callable[..., ServerProcess], tmp_path: Path) -> None:
    real_time = start_server(redis=own_redis)
    line = _one_line(_serve(own_redis, tmp_path / "fast", {"TRACKER_TIME_SCALE": "300"}))
    assert "TRACKER_TIME_SCALE=300" in line and "Redis of its own" in line, line
    real_time.stop()  # a clean stop leaves the roll call at once

    fast = start_server({"TRACKER_TIME_SCALE": "300"}, redis=own_redis)
    line = _one_line(_serve(own_redis, tmp_path / "x1"))
    assert "TRACKER_TIME_SCALE=300" in line and "replay" in line, line
    line = _one_line(_serve(own_redis, tmp_path / "fast2", {"TRACKER_TIME_SCALE": "300"}))  # not even at its speed
    assert "agrees with no other process" in line, line
    fast.stop()
    # Its clean stop left the roll call, but its data is stamped ahead of the wall clock: a real-time
    # server is refused for that now, and a server at its speed resumes its clock.
    line = _one_line(_serve(own_redis, tmp_path / "x1-after"))
    assert f"REDIS_URL={own_redis}" in line and "ahead of the wall clock" in line and "--time-scale 300" in line, line
    again = start_server({"TRACKER_TIME_SCALE": "300"}, redis=own_redis)
    assert httpx.get(f"{again.base_url}/healthz").json()["time_scale"] == 300.0


def test_a_host_whose_clock_is_off_is_refused(server: ServerProcess, tmp_path: Path) -> None:
    line = _one_line(_serve(server.redis_url or "", tmp_path / "ahead", clock_ahead_s=40))
    assert "40" in line and "ahead of Redis" in line and "NTP" in line, line
    line = _one_line(_serve(server.redis_url or "", tmp_path / "behind", clock_ahead_s=-40))
    assert "behind Redis" in line, line


def test_a_disagreement_that_arises_later_shows_in_readyz(
        own_redis: str, start_server: Callable[..., ServerProcess]) -> None:
    kind = redis.RedisCluster if cluster_enabled(own_redis) else redis.Redis
    client = kind.from_url(own_redis, decode_responses=True)
    client.hset("servers:clocks", "newer-version:1", "1.0x 99999999999999")  # an entry of a form to come: ignored
    srv = start_server(redis=own_redis)
    ready = httpx.get(f"{srv.base_url}/readyz").json()
    assert "agreement" in [t["name"] for t in ready["tasks"]] and not ready["degraded"], ready
    # A fast-clocked server joins the roll call in the same instant (two started at once): its
    # entry is written as that process writes it.
    try:
        seconds, micros = client.time()
        client.hset("servers:clocks", "replay-host:4242:0", f"300.0 {seconds * 1000 + micros // 1000 + 60_000}")
        assert client.hget("servers:clocks", "newer-version:1")  # kept, not removed
    finally:
        client.close()
    deadline = time.monotonic() + 25
    while time.monotonic() < deadline:
        ready = httpx.get(f"{srv.base_url}/readyz").json()
        if "agreement" in ready["degraded"]:
            break
        time.sleep(0.5)
    task = next(t for t in ready["tasks"] if t["name"] == "agreement")
    assert "agreement" in ready["degraded"] and "TRACKER_TIME_SCALE=300" in (task["last_error"] or ""), ready
    log = srv.log_path.read_text()
    assert "TRACKER_TIME_SCALE=300" in log and "Traceback" not in log, log[-3000:]  # (its message says it all: one line)


def test_a_process_with_another_secret_is_refused(own_redis: str, start_server: Callable[..., ServerProcess],
                                                  tmp_path: Path) -> None:
    """A process started with another TRACKER_SECRET beside running ones had started as if all
    were well, then refused (1008) every token the others issued to clients that landed on it."""
    running = start_server(redis=own_redis)
    line = _one_line(_serve(own_redis, tmp_path / "odd", {"TRACKER_SECRET": SECRET}))
    assert "TRACKER_SECRET" in line and "same secret" in line and running.secret not in line and SECRET not in line, line
    peer = start_server(redis=own_redis)  # the same secret joins
    assert httpx.get(f"{peer.base_url}/readyz").status_code == 200
    kind = redis.RedisCluster if cluster_enabled(own_redis) else redis.Redis
    client = kind.from_url(own_redis, decode_responses=True)
    try:
        entries = list(client.hgetall("servers:clocks").values())
    finally:
        client.close()
    assert len(entries) == 2 and all(running.secret not in e for e in entries), entries  # never the secret itself


# A host clock that jumps while the server runs (no libfaketime here): the server's time.time()
# is the wall clock plus the seconds written in the file TRACKER_TEST_CLOCK_AHEAD_FILE names.
_CLOCK_HOOK = '''
import os, threading, time
_path = os.environ.get("TRACKER_TEST_CLOCK_AHEAD_FILE")
if _path:
    _real, _ahead = time.time, [0.0]
    time.time = lambda: _real() + _ahead[0]

    def _follow():
        while True:
            try:
                with open(_path) as f:
                    _ahead[0] = float(f.read().strip() or 0)
            except (OSError, ValueError):
                pass
            time.sleep(0.05)

    threading.Thread(target=_follow, daemon=True).start()
'''


def _readyz(srv: ServerProcess, status: int, timeout: float = 10.0) -> dict:  # type: ignore[type-arg]
    """``/readyz`` once it answers ``status`` (within ``timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        ready = httpx.get(f"{srv.base_url}/readyz", timeout=10)
        if ready.status_code == status or time.monotonic() > deadline:
            assert ready.status_code == status, ready.text
            return ready.json()
        time.sleep(0.1)


@pytest.mark.parametrize("jump_s", [120, -120])
async def test_a_process_whose_clock_jumps_stops_acting_on_the_fleet_until_it_agrees_again(
        own_redis: str, start_server: Callable[..., ServerProcess], tmp_path: Path, uid: Callable[[str], str],
        jump_s: int) -> None:
    """A server whose host clock jumps 120 s ahead (or back) after it started, beside one whose
    clock is right: ahead, it had gone on expiring the fleet's offers by its clock (every pending
    offer at once, each a refusal and a cooldown for its rider), dropping riders fresh by every
    other clock, and planning under the dispatch lease by its clock (its riders looked stale: no
    offer at all), while /readyz said 200 (only ``degraded``). Now it lets go of the lease
    and sweeps nothing while its clock is off, /readyz is 503 ``clock_disagreement``, and it
    resumes by itself once the clocks agree again: a rider on the other server gets an offer
    with the fleet's deadline and can accept it after the jumped process's sweep had its turns."""
    from tests.orders_helpers import PICKUP, Ops, confirmed_order, rider
    from tracker.geo import dispatch_region

    hook, ahead = tmp_path / "clock-hook", tmp_path / "clock-ahead"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(_CLOCK_HOOK)
    fast = {"TRACKER_DISPATCH_INTERVAL_S": "0.5", "TRACKER_OFFER_TIMEOUT_S": "30"}
    path = os.pathsep.join(p for p in (str(hook), os.environ.get("PYTHONPATH", "")) if p)
    jumper = start_server({**fast, "PYTHONPATH": path, "TRACKER_TEST_CLOCK_AHEAD_FILE": str(ahead)}, redis=own_redis)
    kind = redis.RedisCluster if cluster_enabled(own_redis) else redis.Redis
    client = kind.from_url(own_redis, decode_responses=True)
    lease = f"lease:dispatch:{{{dispatch_region(PICKUP['lat'], PICKUP['lng'])}}}"
    ops = Ops(jumper)
    oid, mid, rid = uid("o"), uid("m"), uid("r")
    try:
        await confirmed_order(jumper, ops, oid, mid)  # (no rider yet: nothing is offered)
        deadline = time.monotonic() + 10
        while f":{jumper.proc.pid}:" not in (client.get(lease) or ""):  # type: ignore[union-attr]
            assert time.monotonic() < deadline, client.get(lease)
            await asyncio.sleep(0.1)
        normal = start_server(fast, redis=own_redis)
        ahead.write_text(str(jump_s))
        _readyz(jumper, 503)  # (the jump is in effect: a loaded machine once ran the hook late, after a round it let commit)
        courier = await rider(normal, rid)
        try:
            await courier.location(PICKUP["lat"] + 0.002, PICKUP["lng"])
            offer = await courier.expect("offer", timeout=15)
            made_at = time.time()
            assert abs(offer["expires_at"] / 1000 - made_at - 30) < 5, (offer["expires_at"] / 1000 - made_at)
            assert f":{normal.proc.pid}:" in (client.get(lease) or "")  # type: ignore[union-attr,operator]
            await asyncio.sleep(2)  # (the jumped process's offer sweep had many turns)
            await courier.accept(offer["offer_id"])
            assigned = await courier.expect(lambda f: f.get("type") in ("assigned", "offer_expired", "error"))
            assert assigned["type"] == "assigned", assigned
        finally:
            await courier.close()
        off = _readyz(jumper, 503)
        side = "ahead of Redis" if jump_s > 0 else "behind Redis"
        assert off["error"]["code"] == "clock_disagreement" and "120" in off["error"]["message"], off
        assert side in off["error"]["message"] and "dispatch" in off["error"]["message"], off
        _readyz(normal, 200)
        ahead.write_text("0")  # the host's clock set right again
        _readyz(jumper, 200)
        log = jumper.log_tail(400)
        assert "Traceback" not in log, log
        stopped = [line for line in log.splitlines() if f"120.0 s {side}" in line]
        resumed = [line for line in log.splitlines() if "agrees with Redis's again" in line]
        assert len(stopped) == 1 and len(resumed) == 1, log
    finally:
        client.close()
        await ops.close()
