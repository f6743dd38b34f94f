"""The dispatch feature: starts the loop, the offer-expiry sweep and the region rescan, registers rider replies."""
from __future__ import annotations

from tracker.dispatch import rider_replies  # noqa: F401 - registers accept/decline handlers
from tracker.dispatch.service import Dispatcher
from tracker.runtime import Runtime

routes: list = []


async def start(rt: Runtime) -> None:
    """Create this process's dispatcher and supervise its loops: rounds, offer expiry, region rescan."""
    dispatcher = Dispatcher(rt)
    rt.services["dispatcher"] = dispatcher
    rt.services.setdefault("order_step_listeners", []).append(dispatcher.on_order_step)
    rt.supervisor.spawn("dispatch-loop", dispatcher.run_forever)
    rt.supervisor.spawn("offer-expiry", dispatcher.sweep_forever)
    rt.supervisor.spawn("dispatch-region-rescan", dispatcher.rescan_forever)


async def stop(rt: Runtime) -> None:
    """Give up this process's dispatch leases: on a clean stop others take over at once."""
    dispatcher = rt.services.get("dispatcher")
    if dispatcher is not None:
        await dispatcher.release_leases()
