"""The locations feature: rider fix handlers, the batched writer, nearby HTTP, stale cleanup."""
from __future__ import annotations

from tracker.locations import rider_fixes  # noqa: F401 - registers the rider socket handlers
from tracker.locations.http import routes
from tracker.locations.riders_here import RidersHere
from tracker.locations.store import sweep_stale
from tracker.locations.writer import FixWriter
from tracker.runtime import Runtime

__all__ = ["routes", "start"]


async def start(rt: Runtime) -> None:
    """Start the batched writer and the stale-rider sweep; keep riders' shared state (riders_here.py)."""
    stale_ms = int(rt.settings.stale_after_s * 1000)
    riders = RidersHere(max_speed_mps=rt.settings.max_rider_speed_mps, stale_after_ms=stale_ms,
                        fix_rate=rt.settings.rider_max_fix_rate)
    writer = FixWriter(rt.redis, rt.registry, is_here=riders.is_here, max_speed_mps=rt.settings.max_rider_speed_mps,
                       stale_after_ms=stale_ms, on_overruled=riders.overruled)
    rt.services["riders_here"] = riders
    rt.services["fix_writer"] = writer
    rt.services.setdefault("fix_listeners", [])
    rt.supervisor.spawn("fix-writer", writer.run)

    async def sweep_forever() -> None:
        stale_ms = int(rt.settings.stale_after_s * 1000)
        while True:
            if rt.clock_check.agrees:  # (a clock off Redis's would drop riders fresh by every other clock)
                await sweep_stale(rt.redis, rt.clock.now_ms(), stale_ms)
            await rt.clock.sleep(max(1.0, rt.settings.stale_after_s / 2))

    rt.supervisor.spawn("stale-rider-sweep", sweep_forever)
