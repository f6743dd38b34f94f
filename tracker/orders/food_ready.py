"""When the kitchen expects an order's food, from what it said (its ``ready``, a ready time, or
confirmation plus the preparation time): the rule dispatch, the live ETA, the kitchen's
``delay`` and its prompts all read. Without a preparation time, dispatch and the live ETA take
the food as ready (``default_prep_min`` unset); a ``delay`` and the prompts count
``TRACKER_DEFAULT_PREP_MIN`` instead."""
from __future__ import annotations

from typing import Any, Mapping

# The furthest ahead food may be expected: an order's ``ready_at`` when created, and where a
# kitchen's ``delay`` may push it (or the preparation, before the confirm).
MAX_READY_AHEAD_MS = 7 * 24 * 3600 * 1000


def _ms(value: Any) -> int | None:
    """A stored time (a hash's string or a wire form's int) as ms, ``None`` when unset."""
    if value in (None, ""):
        return None
    return int(float(value))


def expected_ready_ms(order: Mapping[str, Any], default_prep_min: float | None = None) -> int | None:
    """When the food is expected ready (server ms): the kitchen's ``ready`` (``food_ready_at``),
    else the ready time given at creation or set by a ``delay`` (``ready_at``), else confirmation
    plus ``prep_minutes`` (or ``default_prep_min`` when given and the order has none); ``None``
    when nothing says (an order not confirmed yet, or confirmed without a preparation time)."""
    for name in ("food_ready_at", "ready_at"):
        known = _ms(order.get(name))
        if known is not None:
            return known
    confirmed = _ms(order.get("confirmed_at"))
    prep = order.get("prep_minutes")
    minutes = float(prep) if prep not in (None, "") else default_prep_min
    if confirmed is None or minutes is None:
        return None
    return confirmed + int(minutes * 60_000)


def held_by_kitchen(order: Mapping[str, Any]) -> bool:
    """Whether the kitchen put the food back (a ``delay``) and has not called it ready since:
    the kitchen, not the riders, holds the order up. (A ``delay`` after ``ready`` is refused.)"""
    return _ms(order.get("food_delayed_at")) is not None and _ms(order.get("food_ready_at")) is None
