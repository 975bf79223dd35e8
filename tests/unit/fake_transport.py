"""An in-process transport for unit tests of the WebSocket's own logic (no sockets)."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from typing import Any

from gobstopper import Config, Connection, WebSocket, WebSocketManager
from gobstopper.transport.base import CLOSE, ScopeInfo, TransportClosed, WebSocketTransport


class SyncFuture:
    """A future whose done-callbacks run at once when it is resolved, so tests need no
    event-loop turns to see the WebSocket react to an incoming message."""

    def __init__(self) -> None:
        self._done = False
        self._result: Any = None
        self._exc: BaseException | None = None
        self._cancelled = False
        self._callbacks: list[Any] = []

    def _finish(self) -> None:
        self._done = True
        callbacks, self._callbacks = self._callbacks, []
        for cb in callbacks:
            cb(self)

    def set_result(self, value: Any) -> None:
        self._result = value
        self._finish()

    def set_exception(self, exc: BaseException) -> None:
        self._exc = exc
        self._finish()

    def add_done_callback(self, cb: Any) -> None:
        if self._done:
            cb(self)
        else:
            # Like granian's futures: one callback slot, a new one replaces the old.
            self._callbacks = [cb]

    def remove_done_callback(self, cb: Any) -> int:
        before = len(self._callbacks)
        self._callbacks = [c for c in self._callbacks if c is not cb]
        return before - len(self._callbacks)

    def done(self) -> bool:
        return self._done

    def cancelled(self) -> bool:
        return self._cancelled

    def cancel(self) -> bool:
        if self._done:
            return False
        self._cancelled = True
        self._finish()
        return True

    def exception(self) -> BaseException | None:
        return self._exc

    def result(self) -> Any:
        if self._exc is not None:
            raise self._exc
        return self._result

    # Awaitable from asyncio code (asyncio.wait, await), like granian's futures.
    _asyncio_future_blocking = False

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    def __await__(self) -> Any:
        if not self._done:
            self._asyncio_future_blocking = True
            yield self
        return self.result()


class FakeTransport(WebSocketTransport):
    interface = "fake"

    def __init__(self) -> None:
        self.sent: list[str | bytes] = []
        self.accepted = False
        self.rejected: int | None = None
        self.closed: tuple[int, str] | None = None
        self.receives_started = 0
        self._incoming: deque[tuple[int, Any]] = deque()
        self._pending: SyncFuture | None = None
        self.peer_gone = False
        self.stalled = False
        self.stalled_sends: list[tuple[str | bytes, SyncFuture]] = []
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

    send_window = 4

    def start_send(self, data: str | bytes) -> Any:
        """Started sends complete at once, unless ``stalled``: then on ``release()``."""
        fut = SyncFuture()
        if self.peer_gone:
            fut.set_exception(TransportClosed(1006))
        elif self.stalled:
            self.stalled_sends.append((data, fut))
        else:
            self.sent.append(data)
            fut.set_result(None)
        return fut

    def release(self, n: int | None = None) -> None:
        """Let ``n`` (default: all) stalled sends complete, in order."""
        count = len(self.stalled_sends) if n is None else n
        for _ in range(count):
            data, fut = self.stalled_sends.pop(0)
            if not fut.done():
                self.sent.append(data)
                fut.set_result(None)

    async def close(self, code: int, reason: str) -> None:
        if self.closed is None:
            self.closed = (code, reason)
            self.closed_event.set()


async def release_until(transport: FakeTransport, count: int, timeout: float = 2.0) -> None:
    """Let stalled sends complete until ``count`` messages were sent; the outbox's drain
    task starts the next ones between loop turns. Fails after ``timeout`` seconds."""

    async def release() -> None:
        while len(transport.sent) < count:
            transport.release()
            await asyncio.sleep(0)  # one loop turn for the drain task

    await asyncio.wait_for(release(), timeout)


def make(transport: FakeTransport | None = None, **config: Any) -> tuple[WebSocket, FakeTransport]:
    """A WebSocket on ``transport`` (a fresh FakeTransport by default)."""
    transport = FakeTransport() if transport is None else transport
    info = ScopeInfo("fake", "/ws", "", [], "127.0.0.1:1", "ws")
    return WebSocket(transport, info, Config.load({}, **config)), transport


def manager(**settings: Any) -> WebSocketManager:
    return WebSocketManager(Config.load({}, **settings))


async def connected(
    mgr: WebSocketManager,
    conn_id: str | None = None,
    transport: FakeTransport | None = None,
    **settings: Any,
) -> tuple[Connection, FakeTransport]:
    """An accepted WebSocket on a fake transport, registered with ``mgr``."""
    ws, transport = make(transport, **settings)
    await ws.accept()
    return mgr.add(ws, conn_id), transport


__all__ = ["CLOSE", "FakeTransport", "connected", "make", "manager", "release_until"]
