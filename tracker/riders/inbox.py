"""A rider's inbox: the pub/sub channel through which anything the server tells a rider reaches
its socket, on whichever process it is connected (offers, assignments, notices)."""
from __future__ import annotations

# An inbox notice asking the connection to re-read and re-tell what it would after a gap.
RECHECK = '{"type":"_recheck"}'


def inbox_channel(rider_id: str) -> str:
    """The pub/sub channel whose messages reach the rider's socket, wherever it is connected."""
    return f"rider:{rider_id}:inbox"
