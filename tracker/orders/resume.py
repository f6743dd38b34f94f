"""Channel resume, sans-I/O: replay history, then switch to live with no gap and no duplicate.

The channel adapter subscribes to the live channel FIRST, then reads the durable history
after the client's ``last_event_id`` and passes it to :meth:`Resume.history`; live events that
arrive meanwhile wait in the subscription's queue and go to :meth:`Resume.live` after it. Every
live event carries ``prev``, the id of the event before it in the same stream, so:

- a live event at or before the last delivered id is a duplicate of history: dropped;
- a live event whose ``prev`` is the last delivered id continues the sequence: delivered;
- any other live event means a message was lost (pub/sub is at-most-once): :data:`GAP`, and
  the adapter resyncs (tells the client, then re-reads history from the last delivered id).
"""
from __future__ import annotations

import re
from typing import Any, Final

STREAM_ID = re.compile(r"[0-9]{1,20}-[0-9]{1,20}")  # fullmatch: ASCII digits, nothing after


class _Gap:
    def __repr__(self) -> str:
        return "GAP"


GAP: Final = _Gap()


def id_key(event_id: str) -> tuple[int, int]:
    """Stream ids ordered as Redis orders them."""
    ms, seq = event_id.split("-")
    return int(ms), int(seq)


MAX_ID_PART = 2**64 - 1  # both halves of a Redis stream id are unsigned 64-bit


def is_stream_id(value: object) -> bool:
    """True for a string Redis accepts as a stream id (``<ms>-<seq>``, each at most 2^64 - 1)."""
    return (isinstance(value, str) and STREAM_ID.fullmatch(value) is not None
            and all(int(part) <= MAX_ID_PART for part in value.split("-")))


class Resume:
    """Delivery state of one subscriber on one stream: the last event it was given."""

    def __init__(self, last_delivered: str | None) -> None:
        self.last = last_delivered

    def history(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The events of a history read (oldest first) not delivered yet; they count as delivered."""
        out = [e for e in events if self._after_last(e["id"])]
        if out:
            self.last = out[-1]["id"]
        return out

    def live(self, event: dict[str, Any]) -> list[dict[str, Any]] | _Gap:
        """Deliver a live event now, never (a duplicate of history), or say GAP (one was lost:
        re-read the history from ``last``)."""
        if not self._after_last(event["id"]):
            return []
        if (event.get("prev") or None) != self.last:
            return GAP
        self.last = event["id"]
        return [event]

    def _after_last(self, event_id: str) -> bool:
        return self.last is None or id_key(event_id) > id_key(self.last)
