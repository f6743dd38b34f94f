"""Redis's side of storing location fixes: ms per batch of the writer's Lua script.

Run on demand (not in CI):  python loadtests/bench_fix_write.py [--riders 500] [--batches 40] [--code DIR]

Calls the batched writer's script (``tracker.locations.store.WRITE_FIXES_SCRIPT`` of the
``--code`` checkout, so two versions can be measured side by side in one session, alternating,
as docs/BENCHMARKS.md does) on an embedded Redis of its own: ``--batches`` batches, each moving
``--riders`` riders a few metres, and prints the median and p90 time of one batch and the
microseconds per fix. No server: this is the Redis share of ``bench_locations.py``'s figures.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: ``loadtests`` is not a package

from loadtests.arguments import ctrl_c_exits, positive_int  # noqa: E402
from loadtests.checkout import add_code_option, use_checkout  # noqa: E402


def main() -> None:
    """Time ``--batches`` script calls of ``--riders`` fixes each and print the figures."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--riders", type=positive_int, default=500, help="fixes per batch (one per rider)")
    p.add_argument("--batches", type=positive_int, default=40)
    add_code_option(p)
    args = p.parse_args()
    code = use_checkout(args.code)
    import orjson
    import redis

    from tracker.embedded_redis import EmbeddedRedis
    from tracker.locations import store
    from tracker.locations.fix import Fix

    with ctrl_c_exits("bench_fix_write.py"), tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedRedis(Path(tmp))
        server.start()
        try:
            client = redis.Redis.from_url(server.url)
            script = client.register_script(store.WRITE_FIXES_SCRIPT)
            now = int(time.time() * 1000)
            took = []
            for n in range(args.batches + 5):  # (the first 5 warm up: records and sets created)
                now += 1000
                batch = {f"r{i}": (Fix(lat=48.85 + (i % 50) * 0.002 + n * 1e-5, lng=2.35 + (i // 50) * 0.002,
                                       ts=now, client_ts=now - 200, accuracy=5.0), None)
                         for i in range(args.riders)}
                payload, _ = store.fixes_payload(batch)
                arg = orjson.dumps(payload)
                start = time.perf_counter()
                script(args=[arg, store.RECORD_TTL_S])
                took.append(time.perf_counter() - start)
        finally:
            server.stop()
    ms = sorted(t * 1000 for t in took[5:])
    median, p90 = statistics.median(ms), ms[int(0.9 * (len(ms) - 1))]
    print(f"code {code}: {args.riders} fixes per batch, median {median:.2f} ms (p90 {p90:.2f}), "
          f"{median * 1000 / args.riders:.1f} us per fix")


if __name__ == "__main__":
    main()
