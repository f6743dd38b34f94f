"""Cost of one order step over HTTP: create N orders, then time N cancels, one after another.

Run on demand (not in CI):  python loadtests/bench_order_steps.py [--orders 400] [--code DIR]

``--code`` runs the server from another checkout (with its compiled kernel in place), so two
versions can be measured side by side in one session, alternating, as docs/BENCHMARKS.md
("Order steps") does. Starts its own embedded Redis and ``tracker serve``; prints ms per cancel.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    """Time ``--orders`` cancels against the server of the ``--code`` checkout and print ms per cancel."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--orders", type=int, default=400)
    p.add_argument("--code", type=Path, default=Path(__file__).resolve().parents[1],
                   help="the checkout whose server to measure (default: this one)")
    args = p.parse_args()
    code = str(args.code.resolve())
    sys.path.insert(0, code)
    os.environ["PYTHONPATH"] = code  # the server process imports the same code
    import httpx

    from tracker.embedded_redis import EmbeddedRedis
    from tracker.launcher import ServerProcess

    with tempfile.TemporaryDirectory() as tmp:
        redis = EmbeddedRedis(Path(tmp) / "redis")
        redis.start()
        server = ServerProcess(redis_url=redis.url, data_dir=Path(tmp) / "server")
        try:
            server.start()
            headers = {"Authorization": "Bearer " + server.token("operator", "bench")}
            with httpx.Client(base_url=server.base_url, headers=headers) as http:
                ids = [f"o{i}" for i in range(args.orders)]
                for oid in ids:
                    http.post("/v1/orders", json={"id": oid, "merchant_id": "m1", "pickup": {"lat": 52.52, "lng": 13.405},
                                                  "dropoff": {"lat": 52.53, "lng": 13.42}}).raise_for_status()
                started = time.perf_counter()
                for oid in ids:
                    http.post(f"/v1/orders/{oid}/cancel", json={}).raise_for_status()
                elapsed = time.perf_counter() - started
        finally:
            server.cleanup()
            redis.stop()
    print(f"{code}: {1000 * elapsed / args.orders:.3f} ms per cancel over {args.orders} orders")


if __name__ == "__main__":
    main()
