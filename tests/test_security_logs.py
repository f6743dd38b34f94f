"""Secrets never reach the log: bearer tokens in WebSocket handshake headers, Redis passwords."""
from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import pytest
import websockets

from tracker.launcher import ServerProcess, free_port


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_bearer_tokens_in_websocket_headers_never_reach_the_log(redis_url: str, tmp_path: Path, log_format: str) -> None:
    """At debug the WebSocket layer logs every handshake header; the Authorization one is masked."""
    env = {"TRACKER_LOG_FORMAT": log_format, "TRACKER_LOG_LEVEL": "debug"}
    with ServerProcess(redis_url=redis_url, data_dir=tmp_path / "data", env=env) as proc:
        good = proc.token("rider", "leaky-header")
        bad = good[:-4] + "AAAA"

        async def connect() -> None:
            async with websockets.connect(f"{proc.ws_url}/v1/ws/rider",
                                          additional_headers={"Authorization": f"Bearer {good}"}) as ws:
                await ws.recv()  # the route frame: the handshake is done and logged
            async with websockets.connect(f"{proc.ws_url}/v1/ws/rider",
                                          additional_headers={"Authorization": f"Bearer {bad}"}) as ws:
                with pytest.raises(websockets.ConnectionClosed):
                    await ws.recv()

        asyncio.run(connect())
        time.sleep(0.3)
        log = proc.log_path.read_text()
        assert "authorization: Bearer ***" in log.replace("\\", ""), log[-3000:]  # the line is still there, masked
        for secret in (good, bad, good.split(".")[2], bad.split(".")[2], good.split(".")[1]):
            assert secret not in log
