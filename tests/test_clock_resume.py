"""A sped-up server started again on its data folder resumes its clock where it left off.

A replay's server (x300; here x3000) stamps everything it writes in its own server time, hours
ahead of the wall clock after a while. Its clock started again from the wall clock at every
start, so after a restart (a supervisor's, after it exited 1) the rider it knew had its last fix
in the future: every new fix of it was refused ``out_of_order_fix`` (and the staleness checks
saw it as fresh; offers and cooldowns ran late by as much). A server at real speed on that data
cannot move its clock there and is refused, in one line.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.test_locations import eventually, rider
from tracker.launcher import ServerProcess, free_port
from tracker.redis_client import connect

# Server seconds at x3000: rounds 1.2 real s apart, and a fix stamped with /healthz's ts taken in
# time (within 12 real s) however slow the machine.
SCALED = {"TRACKER_TIME_SCALE": "3000", "TRACKER_DISPATCH_INTERVAL_S": "3600", "TRACKER_MAX_CLOCK_SKEW_S": "36000"}
LEAD_MS = 3_600_000  # how far ahead of the wall clock the first run's clock gets before its rider's fix
SPOT = (40.7128, -74.0060)


def server_now(srv: ServerProcess) -> int:
    """The server's own time (ms), as its /healthz stamps it."""
    return int(httpx.get(f"{srv.base_url}/healthz", timeout=10).json()["ts"])


def run_ahead(srv: ServerProcess) -> None:
    """Wait until the scaled server's clock is :data:`LEAD_MS` ahead of the wall clock (1.2 s at
    x3000), as a replay's is after a while: far more than a restart takes to catch up."""
    while server_now(srv) - time.time() * 1000 < LEAD_MS:
        time.sleep(0.1)


async def fix_after_restart(tmp_path: Path, rid: str, *, crash: bool) -> None:
    """A rider's fix on a scaled server, which is stopped (``crash``: killed) and started again on
    its data folder; its clock goes on from where it was, and the rider's next fix is taken."""
    srv = ServerProcess(data_dir=tmp_path / "replay", env=SCALED)
    try:
        srv.start()
        run_ahead(srv)
        r = await rider(srv, rid)
        first_ts = server_now(srv)
        await r.location(*SPOT, ts=first_ts)
        red = connect(srv.effective_redis_url, decode_responses=True)
        try:
            assert await eventually(lambda: red.exists(f"rider:{{{rid}}}"))
        finally:
            await red.aclose()
        r.ws.transport.abort()  # dropped without a close, as a phone losing its network
        last_before = server_now(srv)
        if crash:  # no clean stop: its last stamps lie past the mark it last refreshed, within the lead
            assert srv.proc is not None
            srv.proc.kill()
            srv.proc.wait()
            srv.proc = None
        else:
            assert srv.stop() == 0

        srv.start()  # the same data folder (and so the same embedded Redis data), a new process
        assert server_now(srv) >= last_before  # its clock goes on, not back to the wall clock

        r = await rider(srv, rid)
        red = connect(srv.effective_redis_url, decode_responses=True)
        try:
            next_ts = server_now(srv)
            await r.location(SPOT[0] + 0.0003, SPOT[1], ts=next_ts, id="after-restart")

            async def taken() -> bool:
                return await red.hget(f"rider:{{{rid}}}", "client_ts") == str(next_ts)

            if not await eventually(taken):
                refusal = await r.expect("error")
                raise AssertionError(f"the rider's fix after the restart was not taken: {refusal}")
        finally:
            await r.close()
            await red.aclose()
    finally:
        srv.cleanup()


async def test_a_scaled_server_started_again_resumes_its_clock_and_takes_its_riders_next_fix(
        tmp_path: Path, uid) -> None:  # type: ignore[no-untyped-def]
    await fix_after_restart(tmp_path, uid("resumed"), crash=False)


async def test_a_scaled_server_killed_and_started_again_resumes_its_clock_past_its_last_stamps(
        tmp_path: Path, uid) -> None:  # type: ignore[no-untyped-def]
    await fix_after_restart(tmp_path, uid("killed"), crash=True)


def test_a_real_time_server_on_a_scaled_servers_data_folder_is_refused_in_one_line(tmp_path: Path) -> None:
    folder = tmp_path / "replay"
    srv = ServerProcess(data_dir=folder, env=SCALED)
    try:
        srv.start()
        run_ahead(srv)
        assert srv.stop() == 0
    finally:
        srv.cleanup()

    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER_") and k != "REDIS_URL"}
    env["TRACKER_DATA_DIR"] = str(folder)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tracker", "serve", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        while proc.poll() is None:  # refused at start, or (the bug) serving on the data stamped ahead
            try:
                started = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200
            except httpx.HTTPError:
                started = False
            assert not started, "a real-time server started on data its scaled predecessor stamped ahead"
            time.sleep(0.1)
        stderr = proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert proc.returncode == 1, stderr
    lines = [line for line in stderr.strip().splitlines() if line.startswith("tracker:")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    line = lines[0]
    assert f"the data folder {folder}" in line and "ahead of the wall clock" in line, line
    assert "TRACKER_TIME_SCALE=3000" in line and "--time-scale 3000" in line and "TRACKER_DATA_DIR" in line, line
