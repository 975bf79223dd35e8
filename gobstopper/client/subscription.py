"""What the client hands out besides results: its call error, channel messages and their
positions, the subscription that queues them, and what ``history()`` returns.

A channel that keeps history on the server numbers its publications: a ``Position``
(offset, epoch). A subscription to such a channel by its exact name tracks the position
of the last message it queued, so that the client can resume after it on a new
connection, and says so (``RecoveryFailed``, in its stream) when the server could not
replay what was missed.
"""

from __future__ import annotations

import asyncio
import collections
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..history.base import Position
from ..messages import protocol
from ..messages.channels import is_pattern

if TYPE_CHECKING:
    from .channels import Channels

__all__ = [
    "CallError",
    "ChannelMessage",
    "History",
    "Position",
    "RecoveryFailed",
    "Subscription",
]


class CallError(Exception):
    """The server answered a call with a JSON-RPC error.

    Attributes:
        code: the JSON-RPC error code (e.g. -32601 method not found, or the app's own).
        message: the error's message.
        data: the error's data, if any.
    """

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(f"{code}: {message}" + (f" ({data!r})" if data is not None else ""))
        self.code = code
        self.message = message
        self.data = data


@dataclass(frozen=True)
class ChannelMessage:
    """A message published to a channel: its name, its data and, when the channel keeps
    history, its ``offset`` and ``epoch`` (None otherwise)."""

    channel: str
    data: Any
    offset: int | None = None
    epoch: str | None = None

    @property
    def position(self) -> Position | None:
        """The message's ``Position``, or None for a channel without history."""
        if self.offset is None or self.epoch is None:
            return None
        return Position(self.offset, self.epoch)


class RecoveryFailed(Exception):
    """A subscription's stream lost continuity: messages published while the client was
    away (or after the ``since`` it asked for) could not be replayed.

    Raised once by the subscription's iterator (``async for``, ``get()``) at the point
    where continuity broke: after the messages queued before it, before those after.
    The subscription stays active; iterate again for the live messages.

    Attributes:
        channel: the subscription's channel.
        position: the position the live messages continue after (None when the channel
            no longer keeps history).
    """

    def __init__(self, channel: str, position: Position | None) -> None:
        super().__init__(f"{channel}: missed messages could not be recovered")
        self.channel = channel
        self.position = position


@dataclass(frozen=True)
class History:
    """What ``Client.history()`` returns.

    Attributes:
        publications: the kept publications, oldest first, with their offsets and epoch.
        position: the channel's position (its last publication's).
        recovered: None without ``since``; else whether the publications after it were
            still kept (False: ``publications`` is empty).
    """

    publications: list[ChannelMessage]
    position: Position
    recovered: bool | None = None

    @classmethod
    def parse(cls, channel: str, reply: Any) -> History:
        """Read an ``rpc.history`` answer for ``channel``.

        Raises:
            ValueError: the answer is not of that shape.
        """
        found = protocol.read_position(reply)
        items = reply.get("publications") if isinstance(reply, dict) else None
        if found is None or not isinstance(items, list):
            raise ValueError(f"not an {protocol.HISTORY} answer: {reply!r}")
        offset, epoch = found
        publications = []
        for item in items:
            at = item.get("offset") if isinstance(item, dict) else None
            if not isinstance(at, int) or isinstance(at, bool):
                raise ValueError(f"not a publication of {channel!r}: {item!r}")
            publications.append(ChannelMessage(channel, item.get("data"), at, epoch))
        recovered = reply.get("recovered")
        return cls(
            publications,
            Position(offset, epoch),
            recovered if isinstance(recovered, bool) else None,
        )


_END = None  # what the queue holds after the last item


class Subscription:
    """A subscription to a channel or pattern: an async iterator of ``ChannelMessage``.

    Messages wait in a queue of ``maxsize``; when a reader falls that far behind, the
    oldest are dropped (counted in ``dropped``). Leave with ``close()`` or ``async with``.

    For a channel name (not a pattern) that keeps history on the server, ``position`` is
    the position of the last message queued here (or, before any, the one the server's
    subscribe answer gave): persist it and pass it back as ``subscribe(..., since=...)``
    to resume. On every reconnection the client resubscribes from it; when the server
    cannot replay what was missed, iterating raises ``RecoveryFailed`` once, at that point
    of the stream, and then goes on with the live messages.
    """

    def __init__(
        self, client: Channels, pattern: str, maxsize: int, position: Position | None = None
    ) -> None:
        self.client = client
        self.pattern = pattern
        self.dropped = 0
        #: The position of the last message queued (channels with history, exact names).
        self.position: Position | None = position if not is_pattern(pattern) else None
        self._maxsize = maxsize
        self._items: collections.deque[ChannelMessage | RecoveryFailed | None] = collections.deque()
        self._messages = 0  # the ChannelMessages among _items: what maxsize bounds
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False

    def deliver(self, message: ChannelMessage | None) -> None:
        """Queue a message (None: the end), dropping the oldest message when full. A
        message at or before ``position`` in the same epoch was queued already (a replay
        this subscription did not need): it is skipped."""
        if message is not None and not is_pattern(self.pattern):
            at = message.position
            if at is not None:
                last = self.position
                if last is not None and last.epoch == at.epoch and at.offset <= last.offset:
                    return
                self.position = at
        self._put(message)

    def break_continuity(self, position: Position | None) -> None:
        """Mark the stream broken here: the reader gets ``RecoveryFailed`` at this point.
        ``position`` (what live messages continue after) becomes the subscription's."""
        self.position = position
        self._put(RecoveryFailed(self.pattern, position))

    def _put(self, item: ChannelMessage | RecoveryFailed | None) -> None:
        if isinstance(item, ChannelMessage):
            if 0 < self._maxsize <= self._messages:
                self._drop_oldest()
            self._messages += 1
        self._items.append(item)
        waiter, self._waiter = self._waiter, None
        if waiter is not None:
            waiter.set_result(None)

    def _drop_oldest(self) -> None:
        # The oldest message, not a marker: a break in continuity is never lost.
        for i, item in enumerate(self._items):
            if isinstance(item, ChannelMessage):
                del self._items[i]
                self._messages -= 1
                self.dropped += 1
                return

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> ChannelMessage:
        while not self._items:
            if self._closed:
                raise StopAsyncIteration
            if self._waiter is None:
                self._waiter = asyncio.get_running_loop().create_future()
            # asyncio.wait, not await: a reader that gives up (get()'s timeout) must not
            # cancel what another reader waits on.
            await asyncio.wait((self._waiter,))
        item = self._items.popleft()
        if item is _END:
            self._items.appendleft(item)  # every later read ends too
            raise StopAsyncIteration
        if isinstance(item, RecoveryFailed):
            raise item
        self._messages -= 1
        return item

    async def get(self, timeout: float | None = None) -> ChannelMessage:
        """The next message.

        Raises:
            ClientTimeout: none within ``timeout`` seconds (a TimeoutError; its message
                says whether the client was disconnected when it ended, and why).
            StopAsyncIteration: the subscription has ended.
            RecoveryFailed: continuity broke here (once; the next call goes on).
        """
        try:
            return await asyncio.wait_for(self.__anext__(), timeout)
        except asyncio.TimeoutError:
            what = f"no message on {self.pattern!r} within {timeout}s"
            raise self.client._timeout(what, timeout) from None

    async def close(self) -> None:
        """Unsubscribe (if no other subscription of the client holds the same pattern)."""
        if not self._closed:
            await self.client.unsubscribe(self)

    def end(self) -> None:
        """No more messages: the iterator stops once the queue is read."""
        if not self._closed:
            self._closed = True
            self._put(_END)

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
