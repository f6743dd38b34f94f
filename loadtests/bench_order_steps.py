"""Cost of one order step over HTTP: create N orders, then time N cancels, one after another.

Run on demand (not in CI):  python loadtests/bench_order_steps.py [--orders 400] [--code DIR]

``--code`` runs the server from another checkout (with its compiled kernel in place), so two
versions can be measured side by side in one session, alternating, as docs/BENCHMARKS.md
("Order steps") does. Starts its own embedded Redis and ``tracker serve``; prints ms per cancel.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: ``loadtests`` is not a package

from loadtests.arguments import ctrl_c_exits, positive_int  # noqa: E402
from loadtests.checkout import add_code_option, server_with_own_redis, use_checkout  # noqa: E402


def main() -> None:
    """Time ``--orders`` cancels against the server of the ``--code`` checkout and print ms per cancel."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--orders", type=positive_int, default=400)
    add_code_option(p)
    args = p.parse_args()
    code = use_checkout(args.code)
    import httpx

    with ctrl_c_exits("bench_order_steps.py"), server_with_own_redis() as (_, server):
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
    print(f"{code}: {1000 * elapsed / args.orders:.3f} ms per cancel over {args.orders} orders")


if __name__ == "__main__":
    main()
