"""The sans-I/O core (order lifecycle, channel resume, ETAs, planner, GPS rules) imports no
Redis, web or socket code: it can be embedded, reasoned about and tested on its own."""
from __future__ import annotations

import subprocess
import sys

import pytest

CORE = ("tracker.orders.machine", "tracker.orders.resume", "tracker.orders.eta", "tracker.orders.route",
        "tracker.dispatch.planner", "tracker.dispatch.addons", "tracker.dispatch.coverage",
        "tracker.locations.fix", "tracker.locations.sanity", "tracker.locations.ratelimit")
ADAPTERS = ("redis", "starlette", "websockets", "uvicorn", "httpx")


@pytest.mark.parametrize("module", CORE)
def test_a_core_module_loads_no_adapter(module: str) -> None:
    probe = f"import sys, {module}; print(' '.join(m for m in {ADAPTERS!r} if m in sys.modules))"
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == [], f"{module} loads {run.stdout.strip()}"
