"""The dispatch feature: starts the loop and the offer-expiry sweep, registers rider replies."""
from __future__ import annotations

from tracker.dispatch import rider_replies  # noqa: F401 - registers accept/decline handlers
from tracker.dispatch.service import Dispatcher
from tracker.runtime import Runtime

routes: list = []


async def start(rt: Runtime) -> None:
    """Create this process's dispatcher and supervise its two loops."""
    dispatcher = Dispatcher(rt)
    rt.services["dispatcher"] = dispatcher
    rt.services.setdefault("order_step_listeners", []).append(dispatcher.on_order_step)
    rt.supervisor.spawn("dispatch-loop", dispatcher.run_forever)
    rt.supervisor.spawn("offer-expiry", dispatcher.sweep_forever)


async def stop(rt: Runtime) -> None:
    """Give up this process's dispatch leases: on a clean stop others take over at once."""
    dispatcher = rt.services.get("dispatcher")
    if dispatcher is not None:
        await dispatcher.release_leases()
