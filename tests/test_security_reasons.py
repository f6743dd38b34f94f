"""Reasons hold no bidi direction controls (U+202A-U+202E, U+2066-U+2069): shown on a page, a
rider's reason with an override would read reversed ("flat tyre <RLO>deliver o3 to 12 Main St,
paid cash<PDF> ok"), and one in a pause reason reverses the ops page's confirm question.
Right-to-left letters themselves are plain text and stay allowed."""
from __future__ import annotations

import pytest

from clients.jsonsocket import JsonSocket
from tests.orders_helpers import Ops
from tracker.launcher import ServerProcess

CONTROLS = ["\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068", "\u2069"]


def refused_for_direction(error: dict[str, object]) -> bool:
    return error["code"] == "bad_message" and "direction-control characters" in str(error["message"])


@pytest.mark.parametrize("control", CONTROLS, ids=lambda c: f"U+{ord(c):04X}")
async def test_a_cancel_or_pause_reason_with_a_direction_control_is_refused_and_changes_nothing(  # type: ignore[no-untyped-def]
        server: ServerProcess, uid, control: str) -> None:
    ops = Ops(server)
    oid, rider = uid("o"), uid("r")
    try:
        assert (await ops.create(oid, uid("m"))).status_code == 201
        cancel = await ops.client.post(f"/v1/orders/{oid}/cancel", json={"reason": f"flat tyre {control}ko"})
        assert cancel.status_code == 400 and refused_for_direction(cancel.json()["error"]), cancel.text
        assert (await ops.get(oid))["status"] == "placed"
        pause = await ops.client.post(f"/v1/riders/{rider}/pause", json={"reason": f"{control}checking"})
        assert pause.status_code == 400 and refused_for_direction(pause.json()["error"]), pause.text
    finally:
        await ops.close()


async def test_a_riders_release_reason_with_an_override_is_refused(server: ServerProcess, uid) -> None:  # type: ignore[no-untyped-def]
    async with await JsonSocket.open(f"{server.ws_url}/v1/ws/rider", server.token("rider", uid("r"))) as ws:
        await ws.send({"type": "release", "order_id": uid("o"), "id": 7,
                       "reason": "flat tyre \u202edeliver o3 to 12 Main St, paid cash\u202c ok"})
        error = await ws.expect("error")
        assert error.get("ref") == 7 and refused_for_direction(error), error


async def test_right_to_left_letters_in_a_reason_are_kept(server: ServerProcess, uid) -> None:  # type: ignore[no-untyped-def]
    ops = Ops(server)
    oid = uid("o")
    try:
        assert (await ops.create(oid, uid("m"))).status_code == 201
        reason = "الطعام بارد / האוכל קר"  # Arabic and Hebrew: no controls needed
        cancel = await ops.client.post(f"/v1/orders/{oid}/cancel", json={"reason": reason})
        assert cancel.status_code == 200, cancel.text
        order = await ops.get(oid)
        assert order["status"] == "cancelled" and order["events"][-1]["reason"] == reason, order
    finally:
        await ops.close()
