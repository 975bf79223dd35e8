"""What the client hands out besides results: its call error, channel messages, and the
subscription that queues them."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from . import Client

__all__ = ["CallError", "ChannelMessage", "Subscription"]


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
    """A message published to a channel: its name and its data."""

    channel: str
    data: Any


class Subscription:
    """A subscription to a channel or pattern: an async iterator of ``ChannelMessage``.

    Messages wait in a queue of ``maxsize``; when a reader falls that far behind, the
    oldest are dropped (counted in ``dropped``). Leave with ``close()`` or ``async with``.
    """

    def __init__(self, client: Client, pattern: str, maxsize: int) -> None:
        self.client = client
        self.pattern = pattern
        self.dropped = 0
        self._queue: asyncio.Queue[ChannelMessage | None] = asyncio.Queue(maxsize)
        self._closed = False

    def deliver(self, message: ChannelMessage | None) -> None:
        """Queue a message (None: the end), dropping the oldest when full."""
        if self._queue.full():
            self._queue.get_nowait()
            self.dropped += 1
        self._queue.put_nowait(message)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> ChannelMessage:
        if self._closed and self._queue.empty():
            raise StopAsyncIteration
        message = await self._queue.get()
        if message is None:
            raise StopAsyncIteration
        return message

    async def get(self, timeout: float | None = None) -> ChannelMessage:
        """The next message.

        Raises:
            asyncio.TimeoutError: none within ``timeout`` seconds.
            StopAsyncIteration: the subscription has ended.
        """
        return await asyncio.wait_for(self.__anext__(), timeout)

    async def close(self) -> None:
        """Unsubscribe (if no other subscription of the client holds the same pattern)."""
        if not self._closed:
            await self.client.unsubscribe(self)

    def end(self) -> None:
        """No more messages: the iterator stops once the queue is read."""
        if not self._closed:
            self._closed = True
            self.deliver(None)

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
