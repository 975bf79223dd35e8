"""Offset order for republished publications. Pure logic, no I/O.

JetStream stores a stream's publications one after the other, but republishes them from
the publishers' own server routines: two publications stored as offsets 71 and 72 can
reach a subscriber as 72, 71. A node holds an early arrival until the ones before it
come; if one does not come soon, the broker reads it from the stream (``missing``,
``fill``), so that its subscribers see every stream in offset order, without gaps the
stream could fill.
"""

from __future__ import annotations

from typing import Generic, TypeVar

__all__ = ["StreamOrder"]

T = TypeVar("T")


class StreamOrder(Generic[T]):
    """Puts one stream's publications back in offset order.

    Examples:
        ```python
        order = StreamOrder[str]()
        order.arrive(1, "a")  # (["a"], False)
        order.arrive(3, "c")  # ([], True): 2 is missing, 3 waits
        order.arrive(2, "b")  # (["b", "c"], False)
        ```
    """

    __slots__ = ("_held", "last")

    def __init__(self) -> None:
        self.last = 0  # the last offset handed on; 0: none yet (start anywhere)
        self._held: dict[int, T] = {}

    def arrive(self, offset: int, item: T) -> tuple[list[T], bool]:
        """``item`` at ``offset`` arrived: the items now ready, in order, and whether some
        wait for a missing one."""
        if self.last and offset <= self.last:
            return [], bool(self._held)  # a copy, or one read from the stream already
        if self.last and offset > self.last + 1:
            self._held[offset] = item
            return [], True
        self.last = offset
        return [item, *self._release()], bool(self._held)

    def missing(self) -> range:
        """The offsets the held items wait for (empty: none)."""
        if not self._held:
            return range(0)
        return range(self.last + 1, min(self._held))

    def fill(self, found: dict[int, T]) -> list[T]:
        """Hand on what was read from the stream for the missing offsets (those not found
        are gone from it: skipped), then what waited behind them."""
        ready: list[T] = []
        for offset in self.missing():
            if offset in found:
                ready.append(found[offset])
            self.last = offset
        if self._held:
            first = min(self._held)
            self.last = first
            ready.append(self._held.pop(first))
            ready.extend(self._release())
        return ready

    def _release(self) -> list[T]:
        ready = []
        while self.last + 1 in self._held:
            self.last += 1
            ready.append(self._held.pop(self.last))
        return ready
