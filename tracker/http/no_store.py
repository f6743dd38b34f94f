"""``Cache-Control: no-store`` on every answer but the static files: the API's JSON, its errors,
the health checks and the metrics.

Those answers are one caller's view (an order and its events, a kitchen's feed, the fleet) read
with a token, and the token may come in ``X-Tracker-Token`` rather than ``Authorization``, whose
answers shared caches do not store by rule. So neither a proxy nor the browser keeps them (a
page going Back once reused a cached 403 given to another token at the same address). The
pages set it themselves (:mod:`tracker.pages`); ``/static/`` files stay cacheable.
"""
from __future__ import annotations

from tracker.http.added_header import AddedHeader

HEADER = (b"cache-control", b"no-store")


class NoStore(AddedHeader):
    """ASGI middleware adding :data:`HEADER` to each HTTP answer outside ``/static/`` that sets
    no ``Cache-Control`` of its own."""

    header = HEADER
    skip_prefix = "/static/"
