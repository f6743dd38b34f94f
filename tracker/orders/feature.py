"""The orders feature: HTTP, customer and merchant sockets, rider progress, live positions."""
from __future__ import annotations

from tracker.orders import http, rider_progress, sockets  # noqa: F401 - rider_progress registers a handler
from tracker.orders.live import RiderOrdersFeed
from tracker.orders.metrics import OrderMetrics
from tracker.orders.repair import FollowupRepair, journal_unjournaled
from tracker.runtime import Runtime

routes = http.routes + sockets.routes


async def start(rt: Runtime) -> None:
    """Metrics, the fix listener that feeds order channels and prompts, and the follow-up repair
    (with, once per Redis, the rescan for steps an earlier version left unjournaled)."""
    metrics = OrderMetrics(rt.registry, rt.settings.on_time_target_min)
    rt.services["order_metrics"] = metrics
    rt.services.setdefault("fix_listeners", []).append(RiderOrdersFeed(rt))
    rt.supervisor.spawn("order-metrics", lambda: metrics.refresh_forever(rt.redis))
    rt.supervisor.spawn("order-followup-repair", FollowupRepair(rt).run_forever)

    async def rescan() -> None:  # (once per Redis: a no-op after the first)
        await journal_unjournaled(rt)

    rt.supervisor.spawn("order-followup-rescan", rescan)
