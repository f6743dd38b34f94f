"""Load an MDRP instance folder (tab-separated files with a header line each)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from tracker.errors import ApiError


@dataclass(frozen=True)
class Params:
    meters_per_minute: float
    pickup_service: float
    dropoff_service: float
    target_ctd: float
    max_ctd: float
    pay_per_order: float
    pay_per_hour: float


@dataclass(frozen=True)
class Order:
    id: str
    x: float
    y: float
    placement: float
    restaurant: str
    ready: float


@dataclass(frozen=True)
class Courier:
    id: str
    x: float
    y: float
    on: float
    off: float


@dataclass(frozen=True)
class Instance:
    name: str
    params: Params
    restaurants: dict[str, tuple[float, float]]
    orders: dict[str, Order]
    couriers: dict[str, Courier]

    def travel(self, a: tuple[float, float], b: tuple[float, float]) -> float:
        """Minutes from a to b: ceil(euclidean metres / metres per minute)."""
        return float(math.ceil(math.dist(a, b) / self.params.meters_per_minute - 1e-9))

    def place_of(self, label: str, courier: Courier) -> tuple[float, float]:
        """Where a move label points: ``0`` (courier's on-location), a restaurant or an order."""
        if label == "0":
            return courier.x, courier.y
        if label in self.restaurants:
            return self.restaurants[label]
        if label in self.orders:
            return self.orders[label].x, self.orders[label].y
        raise KeyError(label)


def _rows(path: Path) -> list[list[str]]:
    if not path.is_file():
        raise ApiError("bad_request", f"missing instance file {path}")
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    return [ln.split("\t") if "\t" in ln else ln.split() for ln in lines[1:]]


def load_instance(folder: str | Path) -> Instance:
    """Read ``restaurants.txt``, ``orders.txt``, ``couriers.txt``, ``instance_parameters.txt``."""
    folder = Path(folder)
    try:
        p = [float(v) for v in _rows(folder / "instance_parameters.txt")[0]]
        params = Params(*p[:7])
        restaurants = {r[0]: (float(r[1]), float(r[2])) for r in _rows(folder / "restaurants.txt")}
        orders = {
            r[0]: Order(r[0], float(r[1]), float(r[2]), float(r[3]), r[4], float(r[5]))
            for r in _rows(folder / "orders.txt")
        }
        couriers = {
            r[0]: Courier(r[0], float(r[1]), float(r[2]), float(r[3]), float(r[4])) for r in _rows(folder / "couriers.txt")
        }
    except (ValueError, IndexError) as exc:
        raise ApiError("bad_request", f"malformed instance in {folder}: {exc}") from None
    return Instance(folder.name, params, restaurants, orders, couriers)
