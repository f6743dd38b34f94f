"""Fan-out latency: one order event to 1,000 live subscribers of its channel.

Run on demand (not in CI):  python loadtests/bench_fanout.py --subscribers 1000 --events 50

Starts ``tracker serve`` (embedded Redis), and for each order in turn connects ``--subscribers``
customer sockets to it (operator tokens may watch any order), then has its kitchen post delays
one at a time: a kitchen may delay one order at most ``MAX_DELAYS`` (10) times, so ``--events``
are spread over as many orders as that takes, each of them delayed up to 10 times. Each delay is
posted once the previous one was answered (its ``food_delayed`` in the kitchen's feed, or an
error frame: a refusal, counted and named). Each subscriber stamps the arrival of each event,
and the latency is arrival minus the event's server ``ts`` (same machine, same clock). Prints
p50 / p99 / max over all deliveries and how many were missed; exits 1 when an event was refused
or a delivery missed (there should be none), and with one line when its server does not start.
"""
from __future__ import annotations

import argparse
import asyncio
import math
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import websockets

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: ``loadtests`` is not a package

from loadtests.arguments import could_not_start, ctrl_c_exits, positive_int  # noqa: E402
from tracker.launcher import ServerProcess  # noqa: E402
from tracker.orders.sockets import MAX_DELAYS  # noqa: E402

MERCHANT = "fan-m"
ANSWER_S = 10.0  # the kitchen's wait for a delay's answer
DELIVERY_S = 30.0  # the subscribers' wait for an order's last event


@dataclass
class Tally:
    """What a run measured: latencies (ms), deliveries expected, refusals (``order: code message``)."""

    latencies: list[float] = field(default_factory=list)
    expected: int = 0
    refused: list[str] = field(default_factory=list)

    @property
    def missed(self) -> int:
        return self.expected - len(self.latencies)


async def subscriber(url: str, token: str, order_id: str, got: list[float], ready: asyncio.Event,
                     counter: list[int]) -> None:
    """Watch ``order_id`` as one subscriber: once the history frame is in, count itself in ``counter``
    ([connected, expected]; ``ready`` is set when all are), then append the latency (ms) of each
    ``food_delayed`` event to ``got`` until cancelled."""
    async with websockets.connect(f"{url}?order_id={order_id}", additional_headers={"Authorization": f"Bearer {token}"},
                                  max_queue=None) as ws:
        await ws.recv()  # the order's placed event (history)
        counter[0] += 1
        if counter[0] >= counter[1]:
            ready.set()
        while True:
            frame = orjson.loads(await ws.recv())
            if frame.get("type") == "event" and frame.get("kind") == "food_delayed":
                got.append(time.time() * 1000 - frame["ts"])


async def post_delay(kitchen: Any, order_id: str, n: int) -> str | None:
    """Delay ``order_id`` a minute as its kitchen and wait for the answer: None once its
    ``food_delayed`` is in the kitchen's feed, else the refusal (``code: message``)."""
    ref = f"{order_id}/{n}"
    await kitchen.send(orjson.dumps({"type": "delay", "order_id": order_id, "minutes": 1, "id": ref}).decode())
    try:
        async with asyncio.timeout(ANSWER_S):
            while True:
                frame = orjson.loads(await kitchen.recv())
                if frame.get("type") == "error" and frame.get("ref") == ref:
                    return f"{frame.get('code')}: {frame.get('message')}"
                if frame.get("type") == "event" and frame.get("kind") == "food_delayed" and frame.get("order_id") == order_id:
                    return None
    except TimeoutError:
        return f"no answer within {ANSWER_S:g} s"


async def one_order(server: ServerProcess, http: httpx.AsyncClient, kitchen: Any, order_id: str, n: int,
                    events: int, tally: Tally) -> None:
    """Create ``order_id``, connect ``n`` subscribers to it, post ``events`` delays, and tally them."""
    created = await http.post("/v1/orders", json={"id": order_id, "merchant_id": MERCHANT, "pickup": {"lat": 1, "lng": 1},
                                                  "dropoff": {"lat": 1.01, "lng": 1.01}})
    if created.status_code != 201:
        tally.refused.append(f"{order_id}: create answered {created.status_code} {created.text[:200]}")
        return
    got: list[float] = []
    ready = asyncio.Event()
    counter = [0, n]
    url, token = server.ws_url + "/v1/ws/customer", server.token("operator", "bench")
    subs = []
    for i in range(n):
        subs.append(asyncio.ensure_future(subscriber(url, token, order_id, got, ready, counter)))
        if i % 100 == 99:
            await asyncio.sleep(0.05)
    try:
        try:
            await asyncio.wait_for(ready.wait(), 120)
        except TimeoutError:
            tally.refused.append(f"{order_id}: only {counter[0]} of {n} subscribers connected within 120 s")
            return
        accepted = 0
        for i in range(events):
            refusal = await post_delay(kitchen, order_id, i)
            if refusal is not None:
                tally.refused.append(f"{order_id}: {refusal}")
            else:
                accepted += 1
            await asyncio.sleep(0.2)
        deadline = time.monotonic() + DELIVERY_S
        while len(got) < n * accepted and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        tally.expected += n * accepted
        tally.latencies.extend(got[:n * accepted])
    finally:
        for task in subs:
            task.cancel()
        await asyncio.gather(*subs, return_exceptions=True)


async def run(server: ServerProcess, n: int, events: int) -> Tally:
    """Post ``events`` delays, at most :data:`MAX_DELAYS` per order, each order watched by ``n`` subscribers."""
    tally = Tally()
    op = server.token("operator", "bench")
    async with httpx.AsyncClient(base_url=server.base_url, headers={"Authorization": f"Bearer {op}"}) as http, \
            websockets.connect(server.ws_url + "/v1/ws/merchant",
                               additional_headers={"Authorization": "Bearer " + server.token("merchant", MERCHANT)},
                               max_queue=None) as kitchen:
        for k in range(math.ceil(events / MAX_DELAYS)):
            count = min(MAX_DELAYS, events - k * MAX_DELAYS)
            await one_order(server, http, kitchen, f"fan-{k}", n, count, tally)
    return tally


def main() -> None:
    """Run the benchmark with the command-line flags against a fresh server and print the latencies."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subscribers", type=positive_int, default=1000)  # (0 would wait for ever for them)
    ap.add_argument("--events", type=positive_int, default=50)
    args = ap.parse_args()
    with ctrl_c_exits("bench_fanout.py"):
        server = ServerProcess(env={"TRACKER_LOG_LEVEL": "warning"})
        try:
            try:
                server.start()
            except RuntimeError as exc:
                could_not_start("bench_fanout.py", exc)
            tally = asyncio.run(run(server, args.subscribers, args.events))
        finally:
            server.cleanup()
    lat = sorted(tally.latencies)
    orders = math.ceil(args.events / MAX_DELAYS)
    print(f"{args.subscribers} subscribers x {args.events} events ({orders} order{'s' * (orders > 1)}, at most "
          f"{MAX_DELAYS} delays each) = {len(lat)} deliveries, {tally.missed} missed")
    for line in tally.refused[:5]:
        print(f"refused: {line}")
    if lat:
        print(f"event -> subscriber latency: p50 {statistics.median(lat):.1f} ms, "
              f"p99 {lat[int(0.99 * (len(lat) - 1))]:.1f} ms, max {lat[-1]:.1f} ms")
    if tally.refused or tally.missed or not lat:
        sys.exit(f"bench_fanout.py: {len(tally.refused)} event(s) refused, {tally.missed} deliveries missed"
                 + ("" if lat else ": nothing to measure"))


if __name__ == "__main__":
    main()
