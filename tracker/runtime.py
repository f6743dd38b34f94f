"""The per-process runtime every handler and service shares (settings, Redis, clock...)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry
from starlette.requests import HTTPConnection

from tracker.auth import Principal, RevocationList, authenticate
from tracker.clock import Clock, ClockCheck
from tracker.pubsub import PubSubHub
from tracker.redis_client import AnyRedis
from tracker.settings import Settings
from tracker.supervisor import Supervisor
from tracker.wsconn import WsHub


@dataclass
class Runtime:
    """What one server process holds: built in the app's lifespan, read by every handler."""

    settings: Settings
    secret: str
    redis: AnyRedis
    clock: Clock
    registry: CollectorRegistry
    supervisor: Supervisor
    hub: WsHub
    pubsub: PubSubHub
    services: dict[str, Any] = field(default_factory=dict)
    revocations: RevocationList = field(default_factory=RevocationList)
    # Whether this host's clock agrees with Redis's: while not, no fleet-wide sweep or dispatch (agreement.py).
    clock_check: ClockCheck = field(default_factory=ClockCheck)

    def authenticate(self, conn: HTTPConnection) -> Principal:
        """The caller of an HTTP request (header token only), or ``unauthorized`` (revoked tokens too)."""
        return authenticate(conn, self.secret, self.revocations, allow_query=False)


def runtime_of(conn: HTTPConnection) -> Runtime:
    """The runtime of the app serving ``conn``."""
    return conn.app.state.runtime
