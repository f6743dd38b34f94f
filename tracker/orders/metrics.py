"""Service-level metrics on ``/metrics``: orders by status, click-to-door, ready-to-pickup, on time.

Durations are observed by the process that applies the step; the fleet-wide counts are kept in
Redis (:mod:`tracker.orders.counts`, each change counted exactly once even when a step's
follow-ups fail) so every process reports the fleet-wide figure, refreshed by a background task.
"""
from __future__ import annotations

import asyncio

from prometheus_client import Counter, Gauge, Histogram

from tracker.orders import counts
from tracker.orders.machine import STATUSES
from tracker.redis_client import AnyRedis
from tracker.settings import target_seconds

MINUTE_BUCKETS = (5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 60, 75, 90, 120, 180)


class OrderMetrics:
    """The orders feature's Prometheus figures."""

    def __init__(self, registry: object, target_minutes: float) -> None:
        self.target_minutes = target_minutes
        self.target_s = target_seconds(target_minutes)  # (whole seconds: the setting takes no other)
        # Counters and histograms: what this process did (sum them over processes); gauges:
        # the fleet-wide figures every process reads from Redis.
        self.events = Counter("tracker_order_events", "Order events applied (this process)", ["kind"], registry=registry)
        self.by_status = Gauge("tracker_orders_by_status", "Orders by current status (all processes)", ["status"], registry=registry)
        self.click_to_door = Histogram(
            "tracker_click_to_door_minutes", "Placement to delivery (deliveries counted by this process)",
            buckets=MINUTE_BUCKETS, registry=registry,
        )
        self.ready_to_pickup = Histogram(
            "tracker_ready_to_pickup_minutes", "Food ready to picked up (pickups this process applied)",
            buckets=(0, 1, 2, 3, 5, 7.5, 10, 15, 20, 30), registry=registry,
        )
        self.delivered = Counter("tracker_orders_delivered", "Orders delivered (counted by this process)", registry=registry)
        self.on_time = Counter("tracker_orders_delivered_on_time",
                               "Orders delivered within the target (counted by this process)", registry=registry)
        self.fleet_delivered = Gauge("tracker_fleet_orders_delivered", "Orders delivered (all processes)", registry=registry)
        self.on_time_share = Gauge("tracker_on_time_share",
                                   "Share of delivered orders within the target (all processes; 1 before any)",
                                   registry=registry)
        self.click_to_door_mean = Gauge("tracker_click_to_door_mean_minutes",
                                        "Mean click-to-door of delivered orders (all processes; 0 before any)",
                                        registry=registry)

    async def record(self, redis: AnyRedis, order: dict[str, str], kind: str, old_status: str) -> None:
        """Account for one applied event on ``order`` (its state after the event)."""
        self.events.labels(kind).inc()
        await self.count(redis, order, old_status)
        if kind == "picked_up" and order.get("picked_up_at"):
            ready = order.get("food_ready_at") or order.get("ready_at")
            if ready:
                self.ready_to_pickup.observe(max(0.0, (int(order["picked_up_at"]) - int(ready)) / 60000))

    async def count(self, redis: AnyRedis, order: dict[str, str], counted_as: str | None = None) -> None:
        """Bring the fleet-wide counts in line with ``order``'s record (idempotent; see
        :mod:`tracker.orders.counts`); a delivery counted here is observed here too.
        ``counted_as``: the status it was counted under if its record does not say (default:
        its status now)."""
        for change in await counts.count(redis, order, order.get("status", "") if counted_as is None else counted_as):
            minutes, seconds = change.minutes, change.seconds
            if minutes is not None and seconds is not None:
                self.click_to_door.observe(minutes)
                self.delivered.inc()
                if seconds <= self.target_s:  # (to the second, as the fleet's share)
                    self.on_time.inc()

    async def refresh_forever(self, redis: AnyRedis, every_s: float = 5.0) -> None:
        """Keep the fleet-wide gauges in line with Redis (a supervised task)."""
        while True:
            level = await service_level(redis, self.target_minutes)
            for status in STATUSES:
                self.by_status.labels(status).set(level["by_status"][status])
            self.fleet_delivered.set(level["delivered"] or 0)
            self.on_time_share.set(1.0 if level["on_time_share"] is None else level["on_time_share"])
            self.click_to_door_mean.set(level["click_to_door_mean_min"] or 0.0)
            await asyncio.sleep(every_s)


async def service_level(redis: AnyRedis, target_minutes: float) -> dict[str, float | int | None]:
    """Fleet-wide service level: orders by status, delivered, on-time share (within
    ``target_minutes``, the reader's target, however the deliveries' processes were set), mean
    click-to-door."""
    by_status, service = await counts.read(redis, target_seconds(target_minutes))
    delivered = int(service.get("delivered", 0))
    return {
        "by_status": {s: by_status.get(s, 0) for s in STATUSES},
        "delivered": delivered,
        "on_time_share": service.get("on_time", 0) / delivered if delivered else None,
        "click_to_door_mean_min": service.get("ctd_minutes_sum", 0) / delivered if delivered else None,
        "target_min": target_minutes,
    }
