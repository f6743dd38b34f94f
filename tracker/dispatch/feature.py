"""The dispatch feature: starts the loop, the offer-expiry sweep, the region rescan and the
silent-rider take-back, registers rider replies."""
from __future__ import annotations

from tracker.dispatch import rider_replies  # noqa: F401 - registers accept/decline handlers
from tracker.dispatch import silent_riders
from tracker.dispatch.service import Dispatcher
from tracker.runtime import Runtime

routes: list = []


async def start(rt: Runtime) -> None:
    """Create this process's dispatcher and supervise its loops: rounds, offer expiry, region
    rescan, taking back what silent riders have not collected."""
    dispatcher = Dispatcher(rt)
    rt.services["dispatcher"] = dispatcher
    rt.services.setdefault("order_step_listeners", []).append(dispatcher.on_order_step)
    rt.supervisor.spawn("dispatch-loop", dispatcher.run_forever)
    rt.supervisor.spawn("offer-expiry", dispatcher.sweep_forever)
    rt.supervisor.spawn("dispatch-region-rescan", dispatcher.rescan_forever)
    rt.supervisor.spawn("silent-rider-take-back", lambda: silent_riders.sweep_forever(rt))


async def stop(rt: Runtime) -> None:
    """Give up this process's dispatch leases: on a clean stop others take over at once."""
    dispatcher = rt.services.get("dispatcher")
    if dispatcher is not None:
        await dispatcher.release_leases()
