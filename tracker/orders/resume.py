"""Channel resume, sans-I/O: replay history, then switch to live with no gap and no duplicate.

The channel adapter subscribes to the live channel FIRST, then reads the durable history
after the client's ``last_event_id``, then calls :meth:`Resume.history`; live events that
arrive meanwhile go to :meth:`Resume.live` and are buffered until the history is in. Every
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
    """Delivery state of one subscriber on one stream."""

    def __init__(self, last_delivered: str | None) -> None:
        self.last = last_delivered
        self.synced = False
        self._buffer: list[dict[str, Any]] = []

    def history(self, events: list[dict[str, Any]]) -> list[dict[str, Any]] | _Gap:
        """Deliver the history read after subscribing, then whatever live events waited."""
        out = [e for e in events if self._after_last(e["id"])]
        if out:
            self.last = out[-1]["id"]
        self.synced = True
        buffered, self._buffer = self._buffer, []
        for event in buffered:
            more = self.live(event)
            if more is GAP:
                return GAP
            out.extend(more)  # type: ignore[arg-type]
        return out

    def live(self, event: dict[str, Any]) -> list[dict[str, Any]] | _Gap:
        """Deliver a live event now, later (still syncing), never (duplicate), or say GAP."""
        if not self.synced:
            self._buffer.append(event)
            return []
        if not self._after_last(event["id"]):
            return []
        if (event.get("prev") or None) != self.last:
            return GAP
        self.last = event["id"]
        return [event]

    def restart(self) -> None:
        """After a gap: forget buffered live events; history is re-read from ``last``."""
        self.synced = False
        self._buffer = []

    def _after_last(self, event_id: str) -> bool:
        return self.last is None or id_key(event_id) > id_key(self.last)
