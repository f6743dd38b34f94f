"""Fan-out latency: one order event to 1,000 live subscribers of its channel.

Run on demand (not in CI):  python loadtests/bench_fanout.py --subscribers 1000 --events 50

Starts ``tracker serve`` (embedded Redis), connects ``--subscribers`` customer sockets to one
order (operator tokens may watch any order), then has the merchant post ``--events`` delay
events one at a time; each subscriber stamps the arrival of each event, and the latency is
arrival minus the event's server ``ts`` (same machine, same clock). Prints p50 / p99 / max
over all deliveries and how many were missed (there should be none).
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

import httpx
import orjson
import websockets

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: ``loadtests`` is not a package

from loadtests.arguments import ctrl_c_exits, positive_int  # noqa: E402
from tracker.launcher import ServerProcess  # noqa: E402


async def subscriber(url: str, token: str, want: int, out: list[float], ready: asyncio.Event, counter: list[int]) -> None:
    """Watch ``url`` as one subscriber: once the history frame is in, count itself in ``counter``
    ([connected, expected]; ``ready`` is set when all are), then append the latency (ms) of each of
    ``want`` delay events to ``out``."""
    async with websockets.connect(url, additional_headers={"Authorization": f"Bearer {token}"}, max_queue=None) as ws:
        await ws.recv()  # the order's placed event (history)
        counter[0] += 1
        if counter[0] >= counter[1]:
            ready.set()
        got = 0
        while got < want:
            frame = orjson.loads(await ws.recv())
            if frame.get("type") == "event" and frame.get("kind") == "food_delayed":
                out.append(time.time() * 1000 - frame["ts"])
                got += 1


async def run(server: ServerProcess, n: int, events: int) -> tuple[list[float], int]:
    """Create the order, connect ``n`` subscribers and post ``events`` delays as its merchant;
    returns the latencies (ms) and the number of deliveries missed."""
    op = server.token("operator", "bench")
    async with httpx.AsyncClient(base_url=server.base_url, headers={"Authorization": f"Bearer {op}"}) as http:
        await http.post("/v1/orders", json={"id": "fan-1", "merchant_id": "fan-m", "pickup": {"lat": 1, "lng": 1},
                                            "dropoff": {"lat": 1.01, "lng": 1.01}})
    latencies: list[float] = []
    ready = asyncio.Event()
    counter = [0, n]
    url = server.ws_url + "/v1/ws/customer?order_id=fan-1"
    subs = []
    for i in range(n):
        subs.append(asyncio.ensure_future(subscriber(url, op, events, latencies, ready, counter)))
        if i % 100 == 99:
            await asyncio.sleep(0.05)
    await asyncio.wait_for(ready.wait(), 120)
    async with websockets.connect(server.ws_url + "/v1/ws/merchant",
                                  additional_headers={"Authorization": "Bearer " + server.token("merchant", "fan-m")}) as kitchen:
        for _ in range(events):
            await kitchen.send(orjson.dumps({"type": "delay", "order_id": "fan-1", "minutes": 1}).decode())
            await asyncio.sleep(0.2)
    done, pending = await asyncio.wait(subs, timeout=30)
    for task in pending:
        task.cancel()
    return latencies, n * events - len(latencies)


def main() -> None:
    """Run the benchmark with the command-line flags against a fresh server and print the latencies."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subscribers", type=positive_int, default=1000)  # (0 would wait for ever for them)
    ap.add_argument("--events", type=positive_int, default=50)
    args = ap.parse_args()
    with ctrl_c_exits("bench_fanout.py"), ServerProcess(env={"TRACKER_LOG_LEVEL": "warning"}) as server:
        lat, missed = asyncio.run(run(server, args.subscribers, args.events))
    lat.sort()
    print(f"{args.subscribers} subscribers x {args.events} events = {len(lat)} deliveries, {missed} missed")
    if not lat:
        raise SystemExit("no event reached a subscriber: nothing to measure")
    print(f"event -> subscriber latency: p50 {statistics.median(lat):.1f} ms, p99 {lat[int(0.99 * (len(lat) - 1))]:.1f} ms, max {lat[-1]:.1f} ms")


if __name__ == "__main__":
    main()
