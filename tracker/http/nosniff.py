"""``X-Content-Type-Options: nosniff`` on every HTTP answer: the API's JSON, the pages, their
static files and the errors alike.

An answer is read as the type it names, never guessed from its bytes: a JSON body that echoes
client text (an order id, a reason) could otherwise be taken for HTML or a script by a browser
sniffing it. Set once here (and in the raw answers sent before a request reaches the app,
:mod:`tracker.http.head_timeout`), not per endpoint.
"""
from __future__ import annotations

from tracker.http.added_header import AddedHeader

HEADER = (b"x-content-type-options", b"nosniff")


class NoSniff(AddedHeader):
    """ASGI middleware adding :data:`HEADER` to each HTTP response that does not carry it yet."""

    header = HEADER
