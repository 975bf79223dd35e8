"""The history contract: where the publications of a channel are kept, with positions.

A store keeps, per channel, the last publications (at most ``size``, none older than
``ttl`` seconds), each with an offset: 1 for a channel's first publication, then one
more per publication, assigned by the store atomically with the append, so that every
node publishing to a channel agrees on one order. The store's epoch names its
continuity: it changes whenever the store may have lost publications or offsets (an
in-memory store that restarted, a Redis whose keys were flushed or expired), so that a
position ``(offset, epoch)`` from before such a loss is recognised as unusable, never
taken for a position of the new sequence.

A store moves bytes and positions: it knows nothing of WebSockets or JSON-RPC. One
contract test suite (tests/unit/test_history.py) runs against every store.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

__all__ = ["HistoryStore", "Position", "Publication", "Window"]


@dataclass(frozen=True, slots=True)
class Position:
    """Where a channel's stream is: the offset of a publication (0 before the first)
    in the sequence named by ``epoch``."""

    offset: int
    epoch: str


@dataclass(frozen=True, slots=True)
class Publication:
    """One kept publication: its offset and the bytes published."""

    offset: int
    data: bytes


@dataclass(frozen=True, slots=True)
class Window:
    """What a read found.

    Attributes:
        publications: the publications asked for, in offset order.
        position: the channel's position now (the last offset assigned, its epoch).
        first: the oldest offset the store still keeps (``position.offset + 1`` when
            it keeps none): a reader that last saw offset ``n`` missed nothing kept
            away iff ``n + 1 >= first``.
    """

    publications: list[Publication]
    position: Position
    first: int

    def follows(self, since: Position) -> bool:
        """Whether the publications after ``since`` are all still here: same epoch, not
        ahead of the stream, and not fallen out of the window."""
        return (
            since.epoch == self.position.epoch
            and 0 <= since.offset <= self.position.offset
            and since.offset + 1 >= self.first
        )


class HistoryStore(abc.ABC):
    """Keeps channels' recent publications, with positions. One per cluster view: every
    node that appends to a channel must see the same store (one Redis, one hub)."""

    @abc.abstractmethod
    async def append(self, channel: str, data: bytes, size: int, ttl: float) -> Position:
        """Keep ``data`` as ``channel``'s next publication (at most ``size`` kept, each
        for ``ttl`` seconds) and return its position.

        Raises:
            BrokerUnavailable: the store cannot be reached; nothing was kept.
        """

    @abc.abstractmethod
    async def read(
        self, channel: str, since: int | None = None, limit: int | None = None
    ) -> Window:
        """The kept publications of ``channel`` after offset ``since`` (all kept when
        None), the oldest first; with ``limit`` and no ``since``, the last ``limit``;
        with both, the first ``limit`` after ``since``.

        Raises:
            BrokerUnavailable: the store cannot be reached.
        """
