"""The browser pages: ``/track/{order_id}``, ``/merchant``, ``/ops`` and their static files.

Plain HTML/CSS/JS shipped in the package (``tracker/static``); no build step, no network.
Each page takes its token from the ``token`` query parameter and talks to the same HTTP and
WebSocket endpoints as every other client. ``TRACKER_TILE_URL`` adds a raster tile layer
under the vector map when set; ``TRACKER_STALE_AFTER_S`` is when the tracking page calls the
rider's position old.
"""
from __future__ import annotations

import html
import re
from importlib import resources

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from tracker.runtime import runtime_of
from tracker.settings import tile_authority
from tracker.validate import ID_RULE, is_valid_id

STATIC = resources.files("tracker") / "static"

# A page's first load carries its token in the address (the page then takes it out, see
# common.js), and so would the Referer of what that load fetches: none sent. No framing
# (clickjacking the kitchen's buttons). (nosniff: every answer, tracker.http.nosniff.)
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}

# A host[:port] as a CSP source may name it (CSP 3's host-source: dot-separated labels of letters,
# digits and hyphens): an IPv6 address ("[::1]") is no such source, and Chromium drops the whole
# source as invalid, so no tile loaded. Anything else is allowed by its scheme alone.
_HOST_PORT = re.compile(r"[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*(?::[0-9]{1,5})?")


def _tile_source(tile_url: str | None) -> str:
    """Where the tile images come from as a CSP source: nothing more for a ``/`` path (``'self'``),
    the tile server's origin for an http(s) template, or just its scheme when no CSP source can
    name its host: one itself templated (``https://{z}.tiles.example``) or an IPv6 address
    (``http://[::1]:8080``). A scheme-relative ``//host/...`` is its host alone, which CSP
    matches with the page's own scheme. (Settings refuse a template with ``user:password@``.)"""
    host = tile_authority(tile_url) if tile_url else None
    if not tile_url or host is None:
        return ""
    scheme = tile_url.partition("//")[0]  # "https:" (or "" for "//host/...")
    if _HOST_PORT.fullmatch(host):
        return f" {scheme}//{host}" if scheme else f" {host}"
    return f" {scheme}" if scheme else " https: http:"


def content_security_policy(tile_url: str | None) -> str:
    """The pages' CSP: only what the server ships runs, and the pages reach nothing but their own
    server (fetches and WebSockets: ``'self'``, which CSP 3 matches for ws:/wss: of the same
    host), so a script that got in could not send a token or an order anywhere. Images: the
    tiles' server and the ``data:`` favicon. Styles allow inline ``style`` attributes, which
    the pages' legends use."""
    return ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
            f"img-src 'self' data:{_tile_source(tile_url)}; connect-src 'self'; object-src 'none'; "
            "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


def _page(name: str):  # type: ignore[no-untyped-def]
    async def serve(request: Request) -> Response:
        text = (STATIC / name).read_text()
        settings = runtime_of(request).settings
        tile = html.escape(settings.tile_url or "", quote=True)
        text = text.replace("{{TILE_URL}}", tile).replace("{{STALE_AFTER_MS}}", str(int(settings.stale_after_s * 1000)))
        headers = {**SECURITY_HEADERS, "Content-Security-Policy": content_security_policy(settings.tile_url)}
        return HTMLResponse(text, headers=headers)

    return serve


_track_page = _page("track.html")


async def _track(request: Request) -> Response:
    """The tracking page, only for an address that can name an order: one that cannot (bytes
    that are not UTF-8, "%2E%2E", 65 characters) gets the app's plain 404, as /track/a/b does,
    not a page whose script could never load it (it stayed on "Loading...")."""
    if not is_valid_id(request.path_params["order_id"]):
        raise HTTPException(404, f"no such page: order ids are {ID_RULE}")  # (the id not echoed: any bytes)
    return await _track_page(request)


routes = [
    Route("/track/{order_id}", _track, methods=["GET"]),
    Route("/merchant", _page("merchant.html"), methods=["GET"]),
    Route("/ops", _page("ops.html"), methods=["GET"]),
    Mount("/static", app=StaticFiles(directory=str(STATIC)), name="static"),
]
