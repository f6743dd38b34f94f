"""The orders feature: HTTP, customer and merchant sockets, rider progress, live positions."""
from __future__ import annotations

import logging

from tracker.logs import log_failure
from tracker.orders import http, rider_progress, sockets  # noqa: F401 - rider_progress registers a handler
from tracker.orders.counts import migrate_legacy
from tracker.orders.live import RiderOrdersFeed
from tracker.orders.metrics import OrderMetrics
from tracker.orders.repair import FollowupRepair
from tracker.runtime import Runtime

log = logging.getLogger("tracker.orders")

routes = http.routes + sockets.routes


async def start(rt: Runtime) -> None:
    """Metrics, the fix listener that feeds order channels and prompts, and the follow-up repair."""
    metrics = OrderMetrics(rt.registry, rt.settings.on_time_target_min)
    rt.services["order_metrics"] = metrics
    rt.services.setdefault("fix_listeners", []).append(RiderOrdersFeed(rt))
    try:
        await migrate_legacy(rt.redis)
    except Exception as exc:  # noqa: BLE001 - old counts are a nicety; the server must start
        log_failure(log, "counts kept by an earlier version were not carried over", exc)
    rt.supervisor.spawn("order-metrics", lambda: metrics.refresh_forever(rt.redis))
    rt.supervisor.spawn("order-followup-repair", FollowupRepair(rt).run_forever)
