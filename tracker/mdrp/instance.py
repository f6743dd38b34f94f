"""Load an MDRP instance folder (tab-separated files with a header line each)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from tracker.mdrp.tables import InputError, Row, read_table, require_folder


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
    notes: tuple[str, ...] = ()  # warnings about data that loads but looks suspicious

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


RESTAURANT_COLUMNS = ("restaurant", "x", "y")
ORDER_COLUMNS = ("order", "x", "y", "placement_time", "restaurant", "ready_time")
COURIER_COLUMNS = ("courier", "x", "y", "on_time", "off_time")
PARAM_COLUMNS = ("meters_per_minute", "pickup service minutes", "dropoff service minutes", "target click-to-door",
                 "maximum click-to-door", "pay per order", "guaranteed pay per hour")
MAX_MINUTE = 3 * 24 * 60  # times must lie within 3 days of minute 0: the replay plays every minute in between
MAX_METRES = 1e7  # |x|, |y| at most 10,000 km (UTM northings stay below it)
_TIME = (-MAX_MINUTE, MAX_MINUTE, f"times are minutes from the start of the day and must lie within "
         f"{MAX_MINUTE // 1440} days ({MAX_MINUTE} minutes) of minute 0; the instance is refused, not shortened")
_PLACE = (-MAX_METRES, MAX_METRES, f"x and y are metres and must lie within {MAX_METRES:.0e} of 0")


def _table(folder: Path, name: str, columns: tuple[str, ...], notes: list[str]) -> list[Row]:
    path = folder / name
    if not path.is_file():
        raise InputError(f"missing instance file {path}")
    rows, more = read_table(path, columns, f"malformed instance {folder}")
    notes.extend(more)
    return rows


def _params(folder: Path, notes: list[str]) -> Params:
    rows = _table(folder, "instance_parameters.txt", PARAM_COLUMNS, notes)
    if not rows:
        raise InputError(f"malformed instance {folder}: instance_parameters.txt: line 2: no values under the header")
    if len(rows) > 1:
        rows[1].fail("expected one line of values under the header, found more")
    row = rows[0]
    minutes = (0, 24 * 60, "must be 0 to 1440 minutes")
    params = Params(
        row.number("meters_per_minute", 1.0, 1e6, "must be a speed of 1 to 1e6 metres per minute"),
        row.number("pickup service minutes", *minutes), row.number("dropoff service minutes", *minutes),
        row.number("target click-to-door", 0, MAX_MINUTE, f"must be 0 to {MAX_MINUTE} minutes"),
        row.number("maximum click-to-door", 0, MAX_MINUTE, f"must be 0 to {MAX_MINUTE} minutes"),
        row.number("pay per order", 0, 1e6, "must be 0 to 1e6"),
        row.number("guaranteed pay per hour", 0, 1e6, "must be 0 to 1e6"),
    )
    if min(params.pickup_service, params.dropoff_service) < 2:
        notes.append(f"instance_parameters.txt: line {row.line}: a service time under 2 minutes puts a pickup or "
                     "drop-off less than a minute after the courier's arrival (half the service time, 0 with no "
                     "service): the published evaluator finds a courier at a place only strictly after its arrival, "
                     "and reads pickup and departure times cut to whole minutes, so it may judge such pickups or "
                     "drop-offs out of place though every rule holds")
    return params


def _place_id(row: Row, column: str) -> str:
    """A restaurant or order id: also not ``0``, which the solution files use for a courier's on-location."""
    value = row.ident(column)
    if value == "0":
        row.fail(f"{column} id 0 is reserved: the solution files use 0 for a courier's on-location")
    return value


def _unique(row: Row, kind: str, ident: str, seen: dict[str, int]) -> None:
    if ident in seen:
        row.fail(f"{kind} {ident} is listed twice (also on line {seen[ident]})")
    seen[ident] = row.line


def load_instance(folder: str | Path) -> Instance:
    """Read and validate ``restaurants.txt``, ``orders.txt``, ``couriers.txt``, ``instance_parameters.txt``.

    A malformed file raises :class:`InputError` naming the file and line; warnings about
    data that loads but looks suspicious go to :attr:`Instance.notes`.
    """
    folder = Path(folder)
    require_folder(folder, "an instance")
    notes: list[str] = []
    params = _params(folder, notes)
    restaurants: dict[str, tuple[float, float]] = {}
    lines: dict[str, int] = {}
    for row in _table(folder, "restaurants.txt", RESTAURANT_COLUMNS, notes):
        rid = _place_id(row, "restaurant")
        _unique(row, "restaurant", rid, lines)
        restaurants[rid] = (row.number("x", *_PLACE), row.number("y", *_PLACE))
    orders: dict[str, Order] = {}
    early: list[tuple[int, Order]] = []  # orders ready before they are placed
    numbered: list[tuple[int, Order]] = []  # every order, with its line
    lines = {}
    for row in _table(folder, "orders.txt", ORDER_COLUMNS, notes):
        oid, rest = _place_id(row, "order"), row.ident("restaurant")
        _unique(row, "order", oid, lines)
        if oid in restaurants:
            row.fail(f"order id {oid} is also a restaurant id, so a move to {oid} would be ambiguous")
        if rest not in restaurants:
            row.fail(f"order {oid} names restaurant {rest}, which restaurants.txt does not list")
        order = Order(oid, row.number("x", *_PLACE), row.number("y", *_PLACE),
                      row.number("placement_time", *_TIME), rest, row.number("ready_time", *_TIME))
        if order.ready < order.placement:
            early.append((row.line, order))
        numbered.append((row.line, order))
        orders[oid] = order
    _note_fractions(notes, "orders.txt", "order", [
        (line, o.id, f"is placed at {o.placement:g}" if o.placement % 1 else f"is ready at {o.ready:g}")
        for line, o in numbered if o.placement % 1 or o.ready % 1],
        "cuts assignment and pickup times to whole minutes, so it reads an assignment made at such a placement "
        "(13.5 as 13), or a pickup at such a ready time, as too early")
    if early:
        line, first = early[0]
        notes.append(f"orders.txt: line {line}: order {first.id} is ready ({first.ready:g}) before it is placed "
                     f"({first.placement:g}), and {len(early) - 1} other order(s) like it: such food waits from "
                     f"its placement, and its ready-to-pickup counts from the ready time given")
    couriers: dict[str, Courier] = {}
    shifts: list[tuple[int, Courier]] = []  # every courier, with its line
    lines = {}
    for row in _table(folder, "couriers.txt", COURIER_COLUMNS, notes):
        cid = row.ident("courier")
        _unique(row, "courier", cid, lines)
        for kind, ids in (("a restaurant", restaurants), ("an order", orders)):
            if cid in ids:  # the published evaluator looks a courier's on-location up by its id
                row.fail(f"courier id {cid} is also {kind} id, so the courier's on-location would be ambiguous")
        c = Courier(cid, row.number("x", *_PLACE), row.number("y", *_PLACE),
                    row.number("on_time", *_TIME), row.number("off_time", *_TIME))
        if c.on > c.off:
            row.fail(f"courier {cid} goes off shift ({c.off:g}) before it comes on ({c.on:g})")
        if c.on == c.off:
            notes.append(f"couriers.txt: line {row.line}: courier {cid} has an empty shift "
                         f"(on_time = off_time = {c.on:g}): it delivers nothing")
        couriers[cid] = c
        shifts.append((row.line, c))
    _note_fractions(notes, "couriers.txt", "courier", [(line, c.id, f"comes on at {c.on:g}") for line, c in shifts
                                                      if c.on % 1],
                    "cuts departure times to whole minutes, so it reads a courier setting off at such an on time as "
                    "leaving before it comes on")
    return Instance(folder.name, params, restaurants, orders, couriers, tuple(notes))


def _note_fractions(notes: list[str], name: str, kind: str, found: list[tuple[int, str, str]], effect: str) -> None:
    """Warn of instance times that are not whole minutes (the README says they are)."""
    if found:
        line, ident, what = found[0]
        notes.append(f"{name}: line {line}: {kind} {ident} {what}, not on a whole minute, and {len(found) - 1} "
                     f"other {kind}(s) like it: the published evaluator {effect}, though every rule holds")
