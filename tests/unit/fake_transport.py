"""An in-process transport for unit tests of the WebSocket's own logic (no sockets)."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from typing import Any

from gobstopper import Config, WebSocket
from gobstopper.transport.base import CLOSE, ScopeInfo, TransportClosed, WebSocketTransport


class SyncFuture:
    """A future whose done-callbacks run at once when it is resolved, so tests need no
    event-loop turns to see the WebSocket react to an incoming message."""

    def __init__(self) -> None:
        self._result: tuple[int, Any] | None = None
        self._cancelled = False
        self._callbacks: list[Any] = []

    def set_result(self, value: tuple[int, Any]) -> None:
        self._result = value
        for cb in self._callbacks:
            cb(self)

    def add_done_callback(self, cb: Any) -> None:
        if self.done():
            cb(self)
        else:
            self._callbacks.append(cb)

    def done(self) -> bool:
        return self._result is not None or self._cancelled

    def cancelled(self) -> bool:
        return self._cancelled

    def cancel(self) -> bool:
        if self.done():
            return False
        self._cancelled = True
        for cb in self._callbacks:
            cb(self)
        return True

    def result(self) -> tuple[int, Any]:
        assert self._result is not None
        return self._result


class FakeTransport(WebSocketTransport):
    interface = "fake"
    delivers_close_codes = True

    def __init__(self) -> None:
        self.sent: list[str | bytes] = []
        self.accepted = False
        self.rejected: int | None = None
        self.closed: tuple[int, str] | None = None
        self.receives_started = 0
        self._incoming: deque[tuple[int, Any]] = deque()
        self._pending: SyncFuture | None = None
        self.peer_gone = False
        self.closed_event = asyncio.Event()

    # Test side.
    def push(self, kind: int, data: Any) -> None:
        if self._pending is not None and not self._pending.done():
            pending, self._pending = self._pending, None
            pending.set_result((kind, data))
        else:
            self._incoming.append((kind, data))

    # Transport side.
    async def accept(self, subprotocol: str | None, headers: Sequence[tuple[str, str]]) -> None:
        self.accepted = True

    async def reject(self, status: int) -> None:
        self.rejected = status

    def receive(self) -> Any:
        self.receives_started += 1
        fut = SyncFuture()
        if self._incoming:
            fut.set_result(self._incoming.popleft())
        else:
            self._pending = fut
        return fut

    def unpack(self, fut: Any) -> tuple[int, Any]:
        kind, data = fut.result()
        if kind == -1:
            raise TransportClosed(data)
        return kind, data

    async def send_text(self, data: str) -> None:
        if self.peer_gone:
            raise TransportClosed(1006)
        self.sent.append(data)

    async def send_bytes(self, data: bytes | bytearray | memoryview) -> None:
        if self.peer_gone:
            raise TransportClosed(1006)
        self.sent.append(bytes(data))

    async def close(self, code: int, reason: str) -> None:
        if self.closed is None:
            self.closed = (code, reason)
            self.closed_event.set()


def make(**config: int) -> tuple[WebSocket, FakeTransport]:
    transport = FakeTransport()
    info = ScopeInfo("fake", "/ws", "", [], "127.0.0.1:1", "ws")
    return WebSocket(transport, info, Config.load({}, **config)), transport


__all__ = ["CLOSE", "FakeTransport", "make"]
