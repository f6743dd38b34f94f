"""Location throughput: fixes/s one server process writes to Redis, and fix-to-visibility.

Run on demand (not in CI):

    python loadtests/bench_locations.py --riders 2000 --rate 10 --seconds 20 --generators 2

Starts ``tracker serve`` (embedded Redis, or with ``--redis-cluster`` a three-node embedded
Redis Cluster; per-connection limit raised to fit ``--rate``),
opens ``--riders`` rider sockets spread over ``--generators`` load processes, each sending
``--rate`` fixes a second on a random walk, and reports:

- fixes/s accepted by the server (``tracker_fixes_accepted_total``) and written to Redis
  (``tracker_fixes_written_total``: fewer when a rider's newer fix replaces one still waiting
  for its batch) over the window, fixes/s sent, and the Redis round trips per second (mean
  batch size);
- fix-to-visibility: a probe rider sends a fix, then ``tracker.locations.nearby`` (the function
  the dispatcher calls) is polled against the same Redis until the fix is found; p50 / p99.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import orjson
import websockets

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: ``loadtests`` is not a package

from loadtests.arguments import ctrl_c_exits, positive_float, positive_int  # noqa: E402
from tracker.auth import issue_token  # noqa: E402
from tracker.embedded_cluster import EmbeddedCluster  # noqa: E402
from tracker.launcher import ServerProcess  # noqa: E402
from tracker.locations.nearby import nearby  # noqa: E402
from tracker.redis_client import AnyRedis, connect  # noqa: E402

CENTRE = (48.8566, 2.3522)
METRICS = ("tracker_fixes_accepted_total", "tracker_fixes_written_total", "tracker_fix_batch_size_count")


def metric(base_url: str, name: str) -> float:
    """The value of the unlabelled metric ``name`` on the server's ``/metrics`` page (0.0 when absent)."""
    for line in httpx.get(base_url + "/metrics", timeout=10).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


async def _generator(ws_url: str, secret: str, ids: list[str], rate: float, seconds: float, sent: "mp.Value") -> None:  # type: ignore[type-arg]
    async def one(rid: str) -> int:
        token = issue_token(secret, "rider", rid, 3600)
        async with websockets.connect(ws_url + "/v1/ws/rider", additional_headers={"Authorization": f"Bearer {token}"},
                                      max_queue=None) as ws:
            lat, lng = CENTRE[0] + random.uniform(-0.05, 0.05), CENTRE[1] + random.uniform(-0.05, 0.05)
            n, start = 0, time.monotonic()
            await asyncio.sleep(random.random() / rate)
            while time.monotonic() - start < seconds:
                lat += random.uniform(-1, 1) * 2e-5
                lng += random.uniform(-1, 1) * 2e-5
                await ws.send(orjson.dumps({"type": "location", "lat": lat, "lng": lng}).decode())
                n += 1
                await asyncio.sleep(max(0.0, start + n / rate - time.monotonic()))
            return n

    counts = await asyncio.gather(*(one(rid) for rid in ids), return_exceptions=True)
    with sent.get_lock():
        sent.value += sum(c for c in counts if isinstance(c, int))


def generator(ws_url: str, secret: str, ids: list[str], rate: float, seconds: float, sent: "mp.Value") -> None:  # type: ignore[type-arg]
    """Process entry point: stream the fixes of riders ``ids`` and add the number sent to ``sent``."""
    try:
        asyncio.run(_generator(ws_url, secret, ids, rate, seconds, sent))
    except KeyboardInterrupt:  # (Ctrl-C reaches every process of the terminal's job: the main one says it, once)
        pass


async def probe(server: ServerProcess, seconds: float) -> list[float]:
    """Send a probe rider's fixes for ``seconds`` and time each until ``nearby`` finds it; returns the
    times (ms)."""
    redis = connect(server.effective_redis_url, decode_responses=True)
    token = issue_token(server.secret, "rider", "bench-probe", 3600)
    latencies: list[float] = []
    try:
        await _probe_fixes(server, token, redis, seconds, latencies)
    finally:
        await redis.aclose()
    return latencies


async def _probe_fixes(server: ServerProcess, token: str, redis: AnyRedis, seconds: float,
                       latencies: list[float]) -> None:
    async with websockets.connect(server.ws_url + "/v1/ws/rider", additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        lat, lng = CENTRE[0] + 0.2, CENTRE[1] + 0.2
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            lat += 0.00002
            t = time.perf_counter()
            await ws.send(orjson.dumps({"type": "location", "lat": lat, "lng": lng}).decode())
            while True:
                found = await nearby(redis, lat, lng, 1.0, 5, now_ms=int(time.time() * 1000))
                if any(r.id == "bench-probe" for r in found):
                    break
                if time.perf_counter() - t > 5.0:
                    raise SystemExit("the probe's fix did not become visible within 5 s")
                await asyncio.sleep(0.0005)
            latencies.append((time.perf_counter() - t) * 1000)
            await asyncio.sleep(0.25)


def main() -> None:
    """Run the benchmark with the command-line flags, on an embedded Redis Cluster with ``--redis-cluster``."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--riders", type=positive_int, default=2000)
    ap.add_argument("--rate", type=positive_float, default=10.0, help="fixes per second per rider")
    ap.add_argument("--seconds", type=positive_float, default=20.0)
    ap.add_argument("--generators", type=positive_int, default=2)
    ap.add_argument("--redis-cluster", action="store_true", help="on a three-node embedded Redis Cluster")
    args = ap.parse_args()
    if args.generators > args.riders:  # (a generator with no rider would send nothing)
        ap.error(f"--generators {args.generators} is more than --riders {args.riders}")
    with ctrl_c_exits("bench_locations.py"), contextlib.ExitStack() as stack:
        redis_url = None
        if args.redis_cluster:
            cluster = stack.enter_context(EmbeddedCluster(stack.enter_context(tempfile.TemporaryDirectory())))
            redis_url = cluster.url
        run(args, redis_url)


def run(args: argparse.Namespace, redis_url: str | None) -> None:
    """Start the server, drive the riders from the generator processes with the probe alongside, and
    print the rates and fix-to-visibility."""
    # room for the generators' rate and for the probe's 4 fixes a second
    env = {"TRACKER_RIDER_MAX_FIX_RATE": str(max(args.rate * 2, 8.0)), "TRACKER_LOG_LEVEL": "warning",
           "TRACKER_MAX_RIDER_SPEED_MPS": "1000"}
    with ServerProcess(env=env, redis_url=redis_url) as server:
        ids = [f"bench-r{i}" for i in range(args.riders)]
        sent = mp.Value("q", 0)
        procs = [mp.Process(target=generator, args=(server.ws_url, server.secret, ids[g::args.generators], args.rate,
                                                   args.seconds, sent)) for g in range(args.generators)]
        for p in procs:
            p.start()
        time.sleep(min(5.0, args.seconds / 4))  # connections up
        a0, w0, b0, t0 = (*(metric(server.base_url, m) for m in METRICS), time.monotonic())
        lat = asyncio.run(probe(server, args.seconds / 2))
        a1, w1, b1, t1 = (*(metric(server.base_url, m) for m in METRICS), time.monotonic())
        for p in procs:
            p.join()
        accepted = (a1 - a0) / (t1 - t0)
        written = (w1 - w0) / (t1 - t0)
        batches = (b1 - b0) / (t1 - t0)
        lat.sort()
        print(f"riders {args.riders} x {args.rate:g} fixes/s offered ({args.riders * args.rate:,.0f}/s), {args.generators} generator processes, "
              f"{'a three-node Redis Cluster' if redis_url else 'one redis-server'}")
        print(f"fixes accepted by the server: {accepted:,.0f}/s")
        print(f"fixes written to Redis: {written:,.0f}/s in {batches:,.0f} round trips/s (mean batch {written / max(batches, 1):.1f})")
        print(f"fixes sent by the generators: {sent.value / args.seconds:,.0f}/s (over the whole run)")
        if lat:
            print(f"fix-to-visibility in nearby(): p50 {statistics.median(lat):.1f} ms, "
                  f"p99 {lat[int(0.99 * (len(lat) - 1))]:.1f} ms ({len(lat)} probes)")
        else:
            print("fix-to-visibility in nearby(): no probe completed (the run was too short)")


if __name__ == "__main__":
    main()
