"""The in-memory history store: a bounded ring of publications per channel.

It lives as long as its process (or, for nodes sharing a ``MemoryHub``, as long as the
hub): a restart loses everything, and the new store's epochs differ from the old ones,
so a position from before the restart is recognised as unusable. Each channel's stream
has an epoch of its own, drawn when the stream is created; a stream whose publications
have all expired is dropped (bounded memory with endless channel names), and the one
created again later has a new epoch for the same reason.
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from dataclasses import dataclass, field

from .base import HistoryStore, Position, Publication, Window

__all__ = ["MemoryHistory"]

# Appends and reads between two sweeps of streams whose publications all expired.
_SWEEP_EVERY = 1024


@dataclass(slots=True)
class _Stream:
    epoch: str
    top: int = 0
    kept: deque[tuple[int, float, bytes]] = field(default_factory=deque)  # offset, expiry, data
    expires: float = 0.0  # when the last publication expires

    def trim(self, now: float) -> None:
        kept = self.kept
        while kept and kept[0][1] <= now:
            kept.popleft()


class MemoryHistory(HistoryStore):
    """Channel history in this process (shared by the nodes of one ``MemoryHub``)."""

    def __init__(self) -> None:
        self._streams: dict[str, _Stream] = {}
        self._calls = 0

    async def append(self, channel: str, data: bytes, size: int, ttl: float) -> Position:
        return self.append_now(channel, data, size, ttl)

    def append_now(self, channel: str, data: bytes, size: int, ttl: float) -> Position:
        """``append`` without waiting: the offset is assigned before this returns, so
        publications made one after the other keep their order."""
        now = time.monotonic()
        self._calls += 1
        if self._calls % _SWEEP_EVERY == 0:
            self._sweep(now)
        stream = self._streams.get(channel)
        if stream is None:
            stream = self._streams[channel] = _Stream(uuid.uuid4().hex[:16])
        stream.trim(now)
        stream.top += 1
        expiry = now + ttl
        stream.kept.append((stream.top, expiry, bytes(data)))
        while len(stream.kept) > size:
            stream.kept.popleft()
        stream.expires = expiry
        return Position(stream.top, stream.epoch)

    async def read(
        self, channel: str, since: int | None = None, limit: int | None = None
    ) -> Window:
        now = time.monotonic()
        self._calls += 1  # reads too: a stream a read made is swept as well
        if self._calls % _SWEEP_EVERY == 0:
            self._sweep(now)
        stream = self._streams.get(channel)
        if stream is None:
            # Never published (or dropped): a stream to come; its epoch is fixed now, so
            # that a position handed out before the first publication stays valid.
            stream = self._streams[channel] = _Stream(uuid.uuid4().hex[:16], expires=now)
        stream.trim(now)
        kept = stream.kept
        first = kept[0][0] if kept else stream.top + 1
        found = [Publication(offset, data) for offset, _, data in kept]
        if since is not None:
            found = [p for p in found if p.offset > since]
            if limit is not None:
                found = found[:limit]
        elif limit is not None:
            found = found[-limit:] if limit > 0 else []
        return Window(found, Position(stream.top, stream.epoch), first)

    def _sweep(self, now: float) -> None:
        for channel in [c for c, s in self._streams.items() if s.expires <= now]:
            stream = self._streams[channel]
            stream.trim(now)
            if not stream.kept:
                del self._streams[channel]
