"""Make the README's three page screenshots from a small scene in Berlin.

    .venv/bin/python scripts/screenshots.py [--out docs/screenshots] [--port PORT]

Starts a server of its own (``tracker.launcher.ServerProcess``: a free port, an embedded
Redis in a temporary folder), sets up a busy moment of an evening around Mitte, Kreuzberg and
Friedrichshain through the real clients (riders and kitchens on their WebSockets, the operator
over HTTP), then opens the customer's tracking page (phone-sized), the kitchen board and the
operations page (desktop-sized) in headless Chromium, with Berlin's clock, and saves
``track.png``, ``merchant.png`` and ``ops.png``. It takes about 20 seconds. Needs the test
extras (Playwright) and Debian's ``chromium``.

The scene: three restaurants, six riders (three carrying orders, two free, one off shift),
nine orders. Rosenthaler Pizza has one delivered, one on its way to the customer, one whose
rider streams positions on the way to collect it (the tracked order), one cooking slowly and
waiting for a rider, one not yet confirmed and one it cancelled (sold out); Oranien Ramen has
a rider at the counter for food the kitchen delayed (the ops page's Riders row says so) and an
order to confirm; Boxhagener Falafel an order waiting for a
rider. Every order is placed within the scene's seconds (the server stamps ``placed_at``), so
no order can be 40 minutes old: the on-time target is set to 15 minutes
(``TRACKER_ON_TIME_TARGET_MIN``), and the slow pizza, planned past that, is predicted late.
(For the same reason the delivered order's click-to-door is a few seconds.)
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's packages, also when run as a script

import httpx
from playwright.async_api import Browser, Page, async_playwright, expect

from clients.merchant import MerchantClient
from clients.rider import RiderClient
from tracker.launcher import ServerProcess

Point = tuple[float, float]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ON_TIME_TARGET_MIN = 15

PIZZA, RAMEN, FALAFEL = "rosenthaler-pizza", "oranien-ramen", "boxhagener-falafel"
KITCHENS: dict[str, Point] = {
    PIZZA: (52.5297, 13.4015),    # Rosenthaler Platz
    RAMEN: (52.5019, 13.4177),    # Oranienstrasse
    FALAFEL: (52.5107, 13.4588),  # Boxhagener Platz
}
# order id -> (kitchen, the customer's address, preparation minutes)
ORDERS: dict[str, tuple[str, Point, float]] = {
    "o-1041": (PIZZA, (52.5345, 13.4040), 10),    # delivered
    "o-1042": (PIZZA, (52.5228, 13.4022), 10),    # picked up, on its way
    "o-2001": (RAMEN, (52.4992, 13.4302), 5),     # its rider at the counter, the food delayed
    "o-1046": (PIZZA, (52.5330, 13.3975), 10),    # cancelled by the kitchen
    "o-1043": (PIZZA, (52.5372, 13.3932), 5),     # assigned, its rider on the way: the tracked order
    "o-1044": (PIZZA, (52.5402, 13.4122), 20),    # a slow dish, waiting for a rider: running late
    "o-3001": (FALAFEL, (52.5139, 13.4512), 6),   # waiting for a rider
    "o-2002": (RAMEN, (52.5043, 13.4095), 10),    # not confirmed yet
    "o-1045": (PIZZA, (52.5258, 13.4110), 12),    # not confirmed yet
}
TRACKED = "o-1043"
# rider id -> (where it starts, where it heads), at a cycling pace
RIDERS: dict[str, tuple[Point, Point]] = {
    "r-anna": ((52.5237, 13.3905), KITCHENS[PIZZA]),     # to collect o-1043
    "r-mira": ((52.5280, 13.4018), ORDERS["o-1042"][1]),  # o-1042 on board
    "r-jonas": (ORDERS["o-1041"][1], ORDERS["o-1041"][1]),  # just delivered o-1041: free
    "r-lea": (KITCHENS[RAMEN], KITCHENS[RAMEN]),          # at the ramen counter
    "r-tomasz": ((52.5125, 13.4560), (52.5125, 13.4560)),  # free, near Boxhagener Platz
    "r-yusuf": ((52.5170, 13.4110), (52.5170, 13.4110)),   # shift over: unavailable
}
SPEED_MPS = 4.0


def toward(a: Point, b: Point, metres: float) -> Point:
    """The point ``metres`` from ``a`` on the straight line to ``b`` (``b`` if closer)."""
    k = math.cos(math.radians(a[0]))
    dy, dx = (b[0] - a[0]) * 111_195, (b[1] - a[1]) * 111_195 * k
    dist = math.hypot(dx, dy)
    if dist <= metres:
        return b
    f = metres / dist
    return a[0] + (b[0] - a[0]) * f, a[1] + (b[1] - a[1]) * f


async def ride(rider: RiderClient, start: Point, goal: Point) -> None:
    """A fix a second from ``start`` toward ``goal``, then from ``goal`` (so nobody goes silent)."""
    at = start
    while True:
        await rider.location(*at)
        await asyncio.sleep(1.0)
        at = toward(at, goal, SPEED_MPS)


async def drain(rider: RiderClient) -> None:
    """Read (and drop) what the server tells the rider: offers, routes, assignments."""
    with contextlib.suppress(Exception):
        async for _ in rider.ws:
            pass


class Scene:
    """The server, its riders and kitchens, and the operator's HTTP client."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.ops = httpx.AsyncClient(base_url=server.base_url, timeout=10,
                                     headers={"Authorization": "Bearer " + server.token("operator", "ops")})
        self.riders: dict[str, RiderClient] = {}
        self.kitchens: dict[str, MerchantClient] = {}
        self.tasks: list[asyncio.Task[None]] = []

    async def post(self, path: str, body: dict[str, object], token: str | None = None) -> None:
        headers = {"Authorization": "Bearer " + token} if token else None
        resp = await self.ops.post(path, json=body, headers=headers)
        resp.raise_for_status()

    async def build(self) -> None:
        srv = self.server
        for rid, (start, goal) in RIDERS.items():
            rider = self.riders[rid] = await RiderClient.connect(srv.ws_url, srv.token("rider", rid))
            self.tasks += [asyncio.create_task(ride(rider, start, goal)), asyncio.create_task(drain(rider))]
        await self.riders["r-yusuf"].availability(False)
        for mid in KITCHENS:
            self.kitchens[mid] = await MerchantClient.connect(srv.ws_url, srv.token("merchant", mid))
        for oid, (mid, home, prep) in ORDERS.items():
            lat, lng = KITCHENS[mid]
            await self.post("/v1/orders", {"id": oid, "merchant_id": mid, "pickup": {"lat": lat, "lng": lng},
                                           "dropoff": {"lat": home[0], "lng": home[1]}, "prep_minutes": prep})
            await asyncio.sleep(0.5)  # orders come in one after another
        # The kitchens confirm what they can make; the operator hands four orders to riders
        # (dispatch offers the rest when the food is nearly ready).
        for oid in ("o-1041", "o-1042", "o-2001", "o-1046", "o-1043", "o-1044", "o-3001"):
            await self.step_kitchen(oid, "confirm", "confirmed")
        for oid, rid in (("o-1041", "r-jonas"), ("o-1042", "r-mira"), ("o-2001", "r-lea"), ("o-1043", "r-anna")):
            await self.post(f"/v1/orders/{oid}/assign", {"rider_id": rid})
        for oid in ("o-1041", "o-1042"):
            await self.step_kitchen(oid, "ready", "food_ready")
        await self.steps("r-lea", "o-2001", "at_pickup")
        await self.kitchens[RAMEN].delay("o-2001", 5)  # the broth is not ready: the rider waits
        await self.kitchens[RAMEN].event("o-2001", "food_delayed")
        await self.steps("r-mira", "o-1042", "at_pickup", "picked_up")
        await self.steps("r-jonas", "o-1041", "at_pickup", "picked_up", "at_dropoff", "delivered")
        await self.post("/v1/orders/o-1046/cancel", {"reason": "sold out"}, srv.token("merchant", PIZZA))

    async def step_kitchen(self, oid: str, action: str, kind: str) -> None:
        mid = ORDERS[oid][0]
        await getattr(self.kitchens[mid], action)(oid)
        await self.kitchens[mid].event(oid, kind)

    async def steps(self, rid: str, oid: str, *steps: str) -> None:
        kitchen = self.kitchens[ORDERS[oid][0]]
        for step in steps:
            await self.riders[rid].progress(oid, step)
            await kitchen.event(oid, step)

    async def settled(self, timeout: float = 60.0) -> None:
        """Until a dispatch round has planned the waiting orders and the tracked one has an ETA."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            snap = (await self.ops.get("/v1/ops/snapshot")).json()
            tracked = (await self.ops.get(f"/v1/orders/{TRACKED}")).json()
            if snap["running_late"] and all(o["planned_eta"] for o in snap["open_orders"]) and tracked["eta"]:
                return
            await asyncio.sleep(0.5)
        raise TimeoutError("the scene did not settle: no dispatch round or no ETA")

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        for sock in [*self.riders.values(), *self.kitchens.values()]:
            await sock.close()
        await self.ops.aclose()


async def page(browser: Browser, width: int, height: int, url: str) -> Page:
    context = await browser.new_context(viewport={"width": width, "height": height},
                                        locale="en-GB", timezone_id="Europe/Berlin")
    tab = await context.new_page()
    await tab.goto(url)
    return tab


async def shoot(browser: Browser, server: ServerProcess, out: Path) -> None:
    """Open the three pages, wait until each shows the scene, and save them."""
    base = server.base_url
    board = await page(browser, 1280, 720, f"{base}/merchant?token={server.token('merchant', PIZZA)}")
    await expect(board.locator("#orders tr")).to_have_count(sum(m == PIZZA for m, _, _ in ORDERS.values()))
    await expect(board.locator('.prompt[data-kind="start_preparing"]')).to_be_visible(timeout=20_000)
    for oid in ("o-1043", "o-1044"):  # "preparing, ready 20:15": the ready time is read a moment after the events
        await expect(board.locator(f'#orders tr[data-order="{oid}"] td').nth(2)).to_contain_text("ready")
    await board.screenshot(path=str(out / "merchant.png"), full_page=True)

    track = await page(browser, 390, 844, f"{base}/track/{TRACKED}?token={server.token('customer', TRACKED)}")
    await expect(track.locator('[data-marker="rider"]')).to_have_count(1)
    await expect(track.locator("#eta")).to_contain_text("min")
    await track.wait_for_timeout(1500)  # the rider's marker glides to its newest position
    await track.screenshot(path=str(out / "track.png"), full_page=True)

    ops = await page(browser, 1440, 900, f"{base}/ops?token={server.token('operator', 'ops')}&order={TRACKED}")
    await expect(ops.locator("#late tr[data-order]")).not_to_have_count(0)
    await expect(ops.locator("#order-card")).to_be_visible()
    await expect(ops.locator("[data-marker]")).to_have_count(len(RIDERS))
    await expect(ops.locator('#riders tr[data-rider="r-lea"][data-delayed]')).to_have_count(1)
    await ops.wait_for_timeout(1500)
    await ops.screenshot(path=str(out / "ops.png"), full_page=True)


async def main(out: Path, port: int | None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    server = ServerProcess(env={"TRACKER_ON_TIME_TARGET_MIN": str(ON_TIME_TARGET_MIN)}, port=port, port_flag="--port")
    with server:
        scene = Scene(server)
        try:
            await scene.build()
            await scene.settled()
            async with async_playwright() as pw:
                browser = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
                try:
                    await shoot(browser, server, out)
                finally:
                    await browser.close()
        finally:
            await scene.close()
    for name in ("track", "merchant", "ops"):
        path = out / f"{name}.png"
        print(f"{path}: {path.stat().st_size // 1024} KiB")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots", help="folder for the PNGs")
    parser.add_argument("--port", type=int, default=None, help="the server's port (default: a free one)")
    args = parser.parse_args()
    asyncio.run(main(args.out, args.port))
