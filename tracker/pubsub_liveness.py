"""Whether the pub/sub listener's connection still carries anything: a silent one is a lost one.

A pub/sub connection only ever reads, so one that goes silent without being closed (a half-open
TCP connection, a NAT or firewall that dropped its state, a proxy that stopped forwarding) looks
exactly like a quiet one: the listener heard nothing and lost every message until the kernel
gave up on the connection, about 15 minutes later. So the listener asks: after
:data:`IDLE_PING_S` without hearing anything it sends a PING on the connection, and a connection
that answers nothing within :data:`REPLY_DEADLINE_S` of being asked is lost (raising
:class:`PubSubSilent`), as when Redis closes it. Anything heard counts as an answer (a message,
a subscription's confirmation, the PING's reply); a new connection's SUBSCRIBE is its first
question, so a connection is alive only once Redis confirmed something on it. Cost: one PING per
:data:`IDLE_PING_S` on an idle listener, none on a busy one. A silence is noticed
:data:`REPLY_DEADLINE_S` to :data:`IDLE_PING_S` + :data:`REPLY_DEADLINE_S` after it starts.
"""
from __future__ import annotations

from redis.exceptions import ConnectionError as RedisConnectionError

from tracker.redis_client import REDIS_COMMAND_TIMEOUT_S

IDLE_PING_S = 3.0  # the listener asks after this long without hearing anything
REPLY_DEADLINE_S = REDIS_COMMAND_TIMEOUT_S  # as long as any command waits for Redis before giving up


class PubSubSilent(RedisConnectionError):
    """The listener's connection answered nothing within :data:`REPLY_DEADLINE_S`: it is lost."""


class Liveness:
    """The listener's view of one connection: when it last heard from it, when it asked."""

    def __init__(self, now: float, *, idle_s: float = IDLE_PING_S, deadline_s: float = REPLY_DEADLINE_S) -> None:
        self.idle_s, self.deadline_s = idle_s, deadline_s
        self.heard_at: float | None = None  # never, on this connection
        self.asked_at: float | None = now  # its SUBSCRIBE is the first question

    @property
    def alive(self) -> bool:
        """Redis has answered on this connection (one whose answer is overdue is dropped: the
        listener raises :meth:`lost`)."""
        return self.heard_at is not None

    def heard(self, now: float) -> None:
        """Something came on the connection: it is alive, and nothing asked waits for an answer."""
        self.heard_at, self.asked_at = now, None

    def should_ask(self, now: float) -> bool:
        """Quiet for :attr:`idle_s` with no question out: time to send a PING."""
        return self.asked_at is None and self.heard_at is not None and now - self.heard_at >= self.idle_s

    def asked(self, now: float) -> None:
        self.asked_at = now

    def overdue(self, now: float) -> bool:
        """A question went unanswered for :attr:`deadline_s`: the connection is lost."""
        return self.asked_at is not None and now - self.asked_at >= self.deadline_s

    def wait_s(self, now: float) -> float:
        """How long the listener may wait for a message before it must look again."""
        if self.asked_at is not None:
            return max(0.0, self.asked_at + self.deadline_s - now)
        assert self.heard_at is not None
        return max(0.0, self.heard_at + self.idle_s - now)

    def lost(self, now: float) -> PubSubSilent:
        """The error that ends the listener's attempt on this connection."""
        if self.heard_at is None:
            return PubSubSilent(f"Redis confirmed nothing on a new pub/sub connection within {self.deadline_s:g} s "
                                "of its SUBSCRIBE")
        return PubSubSilent(f"no answer within {self.deadline_s:g} s to a PING on the pub/sub connection, "
                            f"nothing heard on it for {now - self.heard_at:.1f} s")
