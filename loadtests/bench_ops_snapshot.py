"""Cost of the ops page's snapshot: N riders (a fifth carrying orders), time GET /v1/ops/snapshot.

Run on demand (not in CI):  python loadtests/bench_ops_snapshot.py [--riders 5000] [--late 0] [--code DIR]

``--late N`` also creates N orders over HTTP on a server whose on-time target is a fraction of
a second, so every one of them is overdue: the list of deliveries running late at its largest.

``--code`` runs the server from another checkout (with its compiled kernel in place), so two
versions can be measured side by side in one session, alternating, as docs/BENCHMARKS.md
("The ops snapshot") does. Starts its own embedded Redis and ``tracker serve``, writes the
riders' fixes straight into Redis with the server's own fix writer, then prints the median and
the spread of ``--repeat`` snapshots (each a fresh fleet read: they are taken one at a time).
"""
from __future__ import annotations

import argparse
import asyncio
import inspect
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: ``loadtests`` is not a package

from loadtests.arguments import count, ctrl_c_exits, positive_int  # noqa: E402
from loadtests.checkout import add_code_option, server_with_own_redis, use_checkout  # noqa: E402


async def _fill(redis_url: str, riders: int, now_ms: int) -> None:
    """``riders`` riders around Berlin with a fresh fix; every fifth carries two orders."""
    from prometheus_client import CollectorRegistry

    from tracker.locations import CARRYING_RIDERS, rider_orders_key
    from tracker.locations.fix import Fix
    from tracker.locations.writer import FixWriter
    from tracker.redis_client import connect

    redis = connect(redis_url, cluster=False, decode_responses=True)
    # every bench rider counts as connected here, so its region is kept; a --code checkout from
    # before FixWriter took ``is_here`` has no such argument
    here = {"is_here": lambda rider: True} if "is_here" in inspect.signature(FixWriter).parameters else {}
    writer = FixWriter(redis, CollectorRegistry(), **here)
    task = asyncio.ensure_future(writer.run())
    for i in range(riders):
        writer.submit(f"bench-r{i}", Fix(52.45 + (i % 100) * 0.002, 13.30 + (i // 100) * 0.004, now_ms))
    while await _written(redis) < riders:
        await asyncio.sleep(0.1)
    task.cancel()
    pipe = redis.pipeline(transaction=False)
    for i in range(0, riders, 5):
        pipe.sadd(rider_orders_key(f"bench-r{i}"), f"bench-o{i}a", f"bench-o{i}b")
        pipe.sadd(CARRYING_RIDERS, f"bench-r{i}")
    await pipe.execute()
    await redis.aclose()


async def _create_orders(base_url: str, token: str, count: int) -> None:
    """``count`` orders over HTTP, a few at a time, all at one restaurant's block of Berlin."""
    import httpx

    async with httpx.AsyncClient(base_url=base_url, headers={"Authorization": "Bearer " + token}, timeout=60) as http:
        async def create(i: int) -> None:
            resp = await http.post("/v1/orders", json={
                "id": f"bench-late-{i}", "merchant_id": f"bench-m{i % 50}",
                "pickup": {"lat": 52.50 + (i % 50) * 0.001, "lng": 13.40}, "dropoff": {"lat": 52.52, "lng": 13.42}})
            resp.raise_for_status()

        for start in range(0, count, 20):
            await asyncio.gather(*(create(i) for i in range(start, min(count, start + 20))))


async def _written(redis) -> int:  # type: ignore[no-untyped-def]
    """How many riders the region sets hold."""
    from tracker.locations.store import ACTIVE_REGIONS, seen_key

    regions = await redis.smembers(ACTIVE_REGIONS)
    return sum([await redis.zcard(seen_key(region)) for region in regions])


def main() -> None:
    """Print the median ms of ``--repeat`` snapshots of ``--riders`` riders against ``--code``'s server."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--riders", type=count, default=5000)
    p.add_argument("--repeat", type=positive_int, default=20)
    p.add_argument("--late", type=count, default=0, help="orders overdue (created over HTTP) besides the riders")
    add_code_option(p)
    args = p.parse_args()
    code = use_checkout(args.code)
    import httpx

    # (the fixes stay fresh for the run)
    env = {"TRACKER_STALE_AFTER_S": "3600", "TRACKER_ON_TIME_TARGET_MIN": str(1 / 60)}  # (every order overdue a second after its creation)
    with ctrl_c_exits("bench_ops_snapshot.py"), server_with_own_redis(env) as (redis_url, server):
        asyncio.run(_fill(redis_url, args.riders, int(time.time() * 1000)))
        asyncio.run(_create_orders(server.base_url, server.token("operator", "bench"), args.late))
        headers = {"Authorization": "Bearer " + server.token("operator", "bench")}
        took = []
        with httpx.Client(base_url=server.base_url, headers=headers, timeout=60) as http:
            listed = len(http.get("/v1/ops/snapshot").json()["riders"])  # (a first read warms up)
            for _ in range(args.repeat):
                started = time.perf_counter()
                http.get("/v1/ops/snapshot").raise_for_status()
                took.append(1000 * (time.perf_counter() - started))
    took.sort()
    print(f"{code}: {statistics.median(took):.0f} ms per snapshot of {listed} riders and {args.late} orders overdue "
          f"(min {took[0]:.0f}, max {took[-1]:.0f}, {args.repeat} snapshots)")


if __name__ == "__main__":
    main()
