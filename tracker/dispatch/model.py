"""The planner's world, in server time (ms) and WGS84: orders, riders, a snapshot, a plan."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MS_PER_MIN = 60_000.0  # the planner reasons in minutes, the server in ms


@dataclass(frozen=True)
class OrderView:
    """An order as the planner sees it; ``ready_at_ms`` is the kitchen's estimate."""

    id: str
    merchant_id: str
    pickup_lat: float
    pickup_lng: float
    drop_lat: float
    drop_lng: float
    placed_at_ms: int
    ready_at_ms: int
    rider_id: str | None = None
    picked_up: bool = False
    blocked_riders: frozenset[str] = frozenset()  # riders who declined it or let its offer expire


@dataclass(frozen=True)
class RiderView:
    """A rider: where and when it is next free (after its current route), until when it works.

    ``pickup_at_ms`` is set while none of the route's orders is collected yet (one restaurant,
    rider on the way or waiting there): the planned pickup, so the bundle may still grow.
    ``shift_start_ms`` in the future means the rider has announced a shift not yet begun: it
    is planned for from then, and offered nothing before.
    """

    id: str
    lat: float  # where the rider will be free (its position now when idle)
    lng: float
    available: bool
    shift_end_ms: int | None
    route: tuple[str, ...] = ()
    busy_until_ms: int = 0
    pickup_at_ms: int | None = None
    shift_start_ms: int | None = None


@dataclass(frozen=True)
class DemandSite:
    """A restaurant and how many orders it has had: where riders are worth keeping near."""

    lat: float
    lng: float
    weight: float


@dataclass(frozen=True)
class Snapshot:
    """Everything one planning round knows; ``origin`` anchors the planar projection."""

    now_ms: int
    origin_lat: float
    origin_lng: float
    orders: tuple[OrderView, ...]  # open ones, and those on riders' routes
    riders: tuple[RiderView, ...]
    demand: tuple[DemandSite, ...] = ()


@dataclass(frozen=True)
class Offer:
    """Offer these orders (one restaurant, in delivery sequence) to this rider.

    An add-on offer has ``joins``: orders already on the rider's uncollected route that the
    offered ones join; ``order_ids`` is then the whole new delivery sequence, held orders
    included, with the same pickup.
    """

    rider_id: str
    order_ids: tuple[str, ...]
    pickup_eta_ms: int
    drop_eta_ms: tuple[int, ...]
    joins: tuple[str, ...] = ()

    @property
    def new_order_ids(self) -> tuple[str, ...]:
        """The orders this offer gives the rider (all of them unless it is an add-on)."""
        return tuple(o for o in self.order_ids if o not in self.joins)


@dataclass(frozen=True)
class Plan:
    """A round's decisions and figures.

    ``estimates``: for every open order the round matched with a rider, offered now or only
    planned (its food far from ready, or its rider still delivering), the planned drop-off
    (server ms): what the customer is told while the order waits for a rider.
    """

    offers: tuple[Offer, ...] = ()
    stats: dict[str, Any] = field(default_factory=dict)
    estimates: dict[str, int] = field(default_factory=dict)
