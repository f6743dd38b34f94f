"""The pages carry their token in the address: they never send it on (Referer), cannot be framed,
and run only the scripts the server ships."""
from __future__ import annotations

import httpx
import pytest

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


@pytest.mark.parametrize("raw", ["%E0%A4", "%2E%2E", "%2E", "o%201", "o" * 65])
def test_a_tracking_address_that_cannot_name_an_order_is_a_plain_404(server: ServerProcess, raw: str) -> None:
    """Not the page: its script could never read such an id (%E0%A4 is no UTF-8: it stayed on
    "Loading..." for good; ".." the browser would resolve away)."""
    r = httpx.get(f"{server.base_url}/track/{raw}?token=whatever")
    assert r.status_code == 404, r.text
    assert r.headers["content-type"].startswith("application/json"), r.headers
    error = r.json()["error"]
    assert error["code"] == "not_found" and "order ids are 1-64 characters" in error["message"], error
