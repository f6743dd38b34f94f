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
