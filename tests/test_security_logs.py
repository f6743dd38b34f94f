"""Secrets never reach the log: bearer tokens in WebSocket handshake headers, Redis passwords."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import websockets

from tracker.launcher import ServerProcess, free_port


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_bearer_tokens_in_websocket_headers_never_reach_the_log(redis_url: str, tmp_path: Path, log_format: str) -> None:
    """At debug the WebSocket layer logs every handshake header; the Authorization one and
    X-Tracker-Token (the pages' own header for the token) are masked, and so is a token in a
    query parameter whose name is percent-encoded (``%74oken``, which the server reads as token)."""
    env = {"TRACKER_LOG_FORMAT": log_format, "TRACKER_LOG_LEVEL": "debug"}
    with ServerProcess(redis_url=redis_url, data_dir=tmp_path / "data", env=env) as proc:
        good = proc.token("rider", "leaky-header")
        bad = good[:-4] + "AAAA"

        own = proc.token("rider", "leaky-own-header")  # (the pages' own header for it)
        spelt = proc.token("rider", "leaky-spelt-name")  # (in ?%74oken=: taken as token=, logged as sent)

        async def connect() -> None:
            async with websockets.connect(f"{proc.ws_url}/v1/ws/rider",
                                          additional_headers={"Authorization": f"Bearer {good}"}) as ws:
                await ws.recv()  # the route frame: the handshake is done and logged
            async with websockets.connect(f"{proc.ws_url}/v1/ws/rider", additional_headers={"X-Tracker-Token": own}) as ws:
                await ws.recv()
            async with websockets.connect(f"{proc.ws_url}/v1/ws/rider?%74oken={spelt}") as ws:
                await ws.recv()
            escaped = "%65" + spelt[1:]  # (its first letter escaped: read as the token all the same)
            dotted = spelt.replace(".", "%2E")
            for value in (escaped, dotted):
                async with websockets.connect(f"{proc.ws_url}/v1/ws/rider?%74oken={value}") as ws:
                    await ws.recv()
            async with websockets.connect(f"{proc.ws_url}/v1/ws/rider",
                                          additional_headers={"Authorization": f"Bearer {bad}"}) as ws:
                with pytest.raises(websockets.ConnectionClosed):
                    await ws.recv()

        asyncio.run(connect())
        time.sleep(0.3)
        log = proc.log_path.read_text()
        assert "authorization: Bearer ***" in log.replace("\\", ""), log[-3000:]  # the line is still there, masked
        assert "x-tracker-token: ***" in log.lower(), log[-3000:]
        for secret in (good, bad, good.split(".")[2], bad.split(".")[2], good.split(".")[1], own, own.split(".")[2],
                       spelt, spelt.split(".")[2], spelt.split(".")[1][1:]):
            assert secret not in log


def _with_password(url: str, password: str) -> str:
    """``url`` carrying credentials (Redis's default user has no password: any one is taken)."""
    if url.startswith("unix://"):
        return f"{url}{'&' if '?' in url else '?'}username=default&password={password}"
    scheme, rest = url.split("://", 1)
    return f"{scheme}://default:{password}@{rest}"


def test_redis_passwords_never_reach_the_log_nor_the_ops_snapshot(redis_url: str, tmp_path: Path) -> None:
    """The server names its Redis when it starts (and when it cannot reach it), and shows the
    operator its settings: without the password, and without the token secret."""
    password = "S3cretRedisPassw0rd"
    with ServerProcess(redis_url=_with_password(redis_url, password), data_dir=tmp_path / "data") as proc:
        time.sleep(0.2)
        log = proc.log_path.read_text()
        assert "tracker listening" in log
        assert password not in log, log
        snap = httpx.get(proc.base_url + "/v1/ops/snapshot",
                         headers={"Authorization": "Bearer " + proc.token("operator", "ops")}, timeout=10)
        assert snap.status_code == 200 and snap.json()["settings"]["REDIS_URL"], snap.text
        assert password not in snap.text and proc.secret not in snap.text
        assert "TRACKER_SECRET" not in snap.json()["settings"]

    closed = f"redis://default:{password}@127.0.0.1:{free_port()}/0"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER_") and k != "REDIS_URL"}
    env.update({"REDIS_URL": closed, "TRACKER_DATA_DIR": str(tmp_path / "other"), "TRACKER_SECRET": "s" * 32})
    result = subprocess.run([sys.executable, "-m", "tracker", "serve", "--port", str(free_port())], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "cannot reach Redis" in result.stderr, result.stderr
    assert password not in result.stderr + result.stdout, result.stderr


def test_a_reason_cannot_forge_a_line_of_the_text_log(redis_url: str, tmp_path: Path) -> None:
    """A pause reason is logged; with ``--log-format text`` what it holds stays on its own record's line."""
    forged = "06:39:11 INFO    tracker.riders: rider resumed [rider=r1 by=mallory]"
    with ServerProcess(redis_url=redis_url, data_dir=tmp_path / "data", env={"TRACKER_LOG_FORMAT": "text"}) as proc:
        op = {"Authorization": "Bearer " + proc.token("operator", "ops")}
        broken = httpx.post(proc.base_url + "/v1/riders/r-forge/pause", json={"reason": f"flat tyre\n{forged}"},
                            headers=op, timeout=10)
        assert broken.status_code == 400 and broken.json()["error"]["code"] == "bad_message", broken.text
        assert "control characters" in broken.json()["error"]["message"]
        separated = httpx.post(proc.base_url + "/v1/riders/r-forge/pause", json={"reason": f"flat tyre\u2028{forged}"},
                               headers=op, timeout=10)  # (a line separator is no control character: taken, and escaped)
        assert separated.status_code == 200, separated.text
        time.sleep(0.3)
        lines = [line for line in proc.log_path.read_text().splitlines() if "mallory" in line]
        assert lines and all(" INFO    tracker.riders: rider paused " in line for line in lines), lines
        assert "flat tyre\\u2028" in lines[0], lines
