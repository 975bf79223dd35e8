"""The WebSocket a handler holds: accept, receive, send, close.

The machinery that runs on the server's callbacks (reading ahead into a bounded buffer,
the bounded close) and the contract the app, the manager and the outbox use live in
``connection.py``; this module adds the API a handler calls. ``Message``,
``MessageType`` and ``State`` come from ``message.py``, ``WebSocketState`` from
``connection.py``; all are re-exported here.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Iterable, Sequence
from typing import Any

from .auth import Identity, Lease
from .config import Config
from .connection import CLOSE_TIMEOUT_S, ServerConnection, WebSocketState, sendable
from .errors import CloseCode, ConnectionClosed, ConnectionClosedOK, MessageTooBig, closed_ok
from .message import Message, MessageType, State, text_size
from .metrics import Metrics
from .transport.base import ScopeInfo, TransportClosed, WebSocketTransport

__all__ = ["Message", "MessageType", "State", "WebSocket", "WebSocketState"]

access = logging.getLogger("gobstopper.access")

_MAX_REASON_BYTES = 123  # RFC 6455: a close frame payload is at most 125 bytes


class WebSocket(ServerConnection):
    """A WebSocket connection as seen by a handler.

    Examples:
        ```python
        @app.websocket("/ws/echo")
        async def echo(ws: WebSocket) -> None:
            await ws.accept()
            async for message in ws:
                await ws.send_text(message.text)
        ```
    """

    __slots__ = ("_state", "identity", "lease", "path_params", "subprotocol")

    def __init__(
        self,
        transport: WebSocketTransport,
        info: ScopeInfo,
        config: Config,
        path_params: dict[str, Any] | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        super().__init__(transport, info, config, metrics)
        self.path_params: dict[str, Any] = path_params if path_params is not None else {}
        self._state: State | None = None
        self.subprotocol: str | None = None
        #: Who the connection belongs to, as the auth hook said (an ``Identity``
        #: returned by it; replaced by a refresh), or None.
        self.identity: Identity | None = None
        #: The hooks that admitted it and the timer of its expiry, when an auth hook
        #: returned an ``Identity`` (see ``gobstopper.auth``); else None.
        self.lease: Lease | None = None

    # -- connection info --------------------------------------------------------------

    @property
    def state(self) -> State:
        """A free namespace for the application (``ws.state.user = ...``)."""
        if self._state is None:
            self._state = State()
        return self._state

    @property
    def interface(self) -> str:
        """The server interface serving this connection: ``"rsgi"`` or ``"asgi"``."""
        return self._info.interface

    @property
    def requested_subprotocols(self) -> list[str]:
        return self._info.subprotocols

    # -- handshake ----------------------------------------------------------------------

    async def accept(
        self, subprotocol: str | None = None, headers: Sequence[tuple[str, str]] | None = None
    ) -> None:
        """Complete the handshake.

        Args:
            subprotocol: the subprotocol to answer with (ASGI only).
            headers: extra response headers (ASGI only).

        Raises:
            UnsupportedByServer: a subprotocol or headers were asked for under RSGI.
            RuntimeError: the connection was already accepted or closed.
        """
        self._life.check_accept()
        try:
            await self._transport.accept(subprotocol, headers or ())
        except TransportClosed as exc:
            self._mark_closed(exc.code, exc.reason)
            raise ConnectionClosed.for_code(exc.code, exc.reason) from None
        if self._life.closed:  # closed by another task meanwhile
            raise self.closed_error()
        self.subprotocol = subprotocol
        self._life.accept()
        if self._metrics is not None:
            self._metrics.accepted += 1
            self._metrics.open_connections += 1
        if access.isEnabledFor(logging.INFO):
            access.info(
                "websocket accepted %s",
                self.path,
                extra={"event": "connect", "path": self.path, "client": self.client_address},
            )
        self._arm()

    # -- receiving ----------------------------------------------------------------------

    async def receive(self) -> Message:
        """Wait for the next message.

        Returns a ``CLOSE`` message once when the connection ends, then raises.

        Raises:
            ConnectionClosed: the connection was already closed (carries the code).
            RuntimeError: not accepted yet, or another coroutine is already receiving.
        """
        while True:
            if self._buffer:
                msg = self._buffer.popleft()
                if self._pending is None:
                    self._arm()  # reading had stopped on a full buffer
                return msg
            life = self._life
            if life.closed:
                if life.hand_close():
                    return Message(MessageType.CLOSE, None, life.code)
                raise self.closed_error()
            if life.state is WebSocketState.CONNECTING:
                raise RuntimeError("accept() the connection before receiving")
            if self._waiter is not None or self._reading_now:
                raise RuntimeError("another coroutine is already waiting in receive()")
            if self._on_demand and self._pending is None:
                direct = await self._read_now()
                if direct is not None:
                    return direct
                continue
            waiter = asyncio.get_running_loop().create_future()
            self._waiter = waiter
            try:
                await waiter
            finally:
                self._waiter = None

    async def _receive_data(self) -> Message:
        msg = await self.receive()
        if msg.type is MessageType.CLOSE:
            raise self.closed_error()
        return msg

    async def receive_text(self) -> str:
        """Wait for a text message (``TypeError`` for binary, ``ConnectionClosed`` on close)."""
        return (await self._receive_data()).text

    async def receive_bytes(self) -> bytes:
        """Wait for a binary message (``TypeError`` for text, ``ConnectionClosed`` on close)."""
        return (await self._receive_data()).bytes

    async def receive_json(self) -> Any:
        """Wait for a text or binary message and decode it as JSON.

        Raises:
            ValueError: the message is not valid JSON (the connection stays open).
            ConnectionClosed: the connection closed.
        """
        return (await self._receive_data()).json()

    def __aiter__(self) -> AsyncIterator[Message]:
        return self._iter()

    async def _iter(self) -> AsyncIterator[Message]:
        """Yield messages; end on a normal close, raise ``ConnectionClosedError`` otherwise."""
        while True:
            try:
                msg = await self.receive()  # not _receive_data: one frame less per idle handler
            except ConnectionClosedOK:
                return
            if msg.type is MessageType.CLOSE:
                if closed_ok(self._life.code):
                    return  # the usual end: no exception to make and catch
                raise self.closed_error()
            yield msg

    async def iter_text(self) -> AsyncIterator[str]:
        """Yield text messages until the connection closes normally."""
        async for msg in self:
            yield msg.text

    async def iter_bytes(self) -> AsyncIterator[bytes]:
        """Yield binary messages until the connection closes normally."""
        async for msg in self:
            yield msg.bytes

    async def iter_json(self) -> AsyncIterator[Any]:
        """Yield decoded JSON messages until the connection closes normally."""
        async for msg in self:
            yield msg.json()

    async def wait_closed(self) -> int:
        """Wait until the connection is closed, by either side; return the close code."""
        code = self._life.code
        if code is not None:
            return code
        if self._closed_future is None:
            self._closed_future = asyncio.get_running_loop().create_future()
        self.read_ahead()  # the close arrives as a message: read on for it
        return await asyncio.shield(self._closed_future)

    # -- sending ------------------------------------------------------------------------

    def _check_open(self) -> None:
        life = self._life
        if life.closed:
            raise self.closed_error()
        if life.state is not WebSocketState.CONNECTED:
            raise RuntimeError("accept() the connection before sending")

    async def send_text(self, data: str) -> None:
        """Send one text message, and wait until the server has flushed it.

        Raises:
            MessageTooBig: ``data`` is over ``MAX_WS_MESSAGE_BYTES``; nothing was sent.
            ConnectionClosed: the connection is closed.
        """
        self._check_open()
        size = text_size(data, self._limit)
        if size > self._limit:
            raise MessageTooBig(size, self._limit)
        await self._sent(self._transport.send_text(data), size)

    async def send_bytes(self, data: bytes | bytearray | memoryview) -> None:
        """Send one binary message, and wait until the server has flushed it.

        Raises:
            MessageTooBig: ``data`` is over ``MAX_WS_MESSAGE_BYTES``; nothing was sent.
            ConnectionClosed: the connection is closed.
        """
        self._check_open()
        size = data.nbytes if isinstance(data, memoryview) else len(data)
        if size > self._limit:
            raise MessageTooBig(size, self._limit)
        await self._sent(self._transport.send_bytes(data), size)

    async def _sent(self, sending: Awaitable[None], size: int) -> None:
        """Wait for a send to be flushed; count it, or record the close it ran into."""
        try:
            await sending
        except TransportClosed as exc:
            self._mark_closed(exc.code, exc.reason)
            raise self.closed_error() from None
        if self._metrics is not None:
            self._metrics.messages_out += 1
            self._metrics.bytes_out += size

    async def send_json(self, obj: Any) -> None:
        """Encode ``obj`` as compact JSON and send it as one text message."""
        await self.send_text(json.dumps(obj, separators=(",", ":"), ensure_ascii=False))

    async def send_stream(
        self,
        source: bytes | bytearray | memoryview | Iterable[bytes] | AsyncIterable[bytes] | Any,
        chunk_size: int | None = None,
    ) -> int:
        """Send a large payload as binary messages of at most ``chunk_size`` bytes.

        Each message is awaited before the next is read, so the sender never runs ahead
        of the socket. The receiver gets several messages: it must join them itself.

        Args:
            source: bytes-like, a file-like object with ``read(n)`` (sync or async), or a
                (async) iterable of bytes; pieces larger than ``chunk_size`` are split.
            chunk_size: defaults to ``WS_SEND_CHUNK_BYTES``; at most the message limit.

        Returns:
            The number of messages sent.

        Raises:
            ValueError: ``chunk_size`` is not positive or is over the message limit.
            TypeError: ``source`` yields something that is not bytes.
        """
        size = self._config.send_chunk_bytes if chunk_size is None else chunk_size
        if size <= 0 or size > self._limit:
            raise ValueError(f"chunk_size={size} must be between 1 and {self._limit}")
        sent = 0
        if isinstance(source, (bytes, bytearray, memoryview)):
            view = memoryview(source).cast("B")
            for start in range(0, view.nbytes, size):
                await self.send_bytes(view[start : start + size])
                sent += 1
            return sent
        read = getattr(source, "read", None)
        if read is not None:
            while True:
                piece = read(size)
                if inspect.isawaitable(piece):
                    piece = await piece
                if not piece:
                    return sent
                sent += await self._send_piece(piece, size)
        if isinstance(source, AsyncIterable):
            async for piece in source:
                sent += await self._send_piece(piece, size)
            return sent
        if isinstance(source, Iterable) and not isinstance(source, str):
            for piece in source:
                sent += await self._send_piece(piece, size)
            return sent
        raise TypeError(f"send_stream() cannot send a {type(source).__name__}")

    async def _send_piece(self, piece: Any, size: int) -> int:
        if not isinstance(piece, (bytes, bytearray, memoryview)):
            raise TypeError(f"send_stream() source yielded {type(piece).__name__}, expected bytes")
        view = memoryview(piece).cast("B")
        count = 0
        for start in range(0, view.nbytes, size):
            await self.send_bytes(view[start : start + size])
            count += 1
        return count

    # -- closing ------------------------------------------------------------------------

    async def close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Close the connection, or refuse it before accept.

        Before accept, an HTTP status (400-599) answers the upgrade with that status;
        a WebSocket close code answers 403. After accept, ``code`` and ``reason`` reach
        the client under ASGI; under RSGI the client sees 1005 whatever the code.
        Closing twice is harmless.

        Raises:
            ValueError: ``code`` cannot be sent, or ``reason`` is over 123 bytes.
        """
        if self._life.state is WebSocketState.CONNECTING:
            await self._refuse(code if 400 <= code <= 599 else 403, reason)
            return
        if not sendable(code):
            raise ValueError(f"close code {code} cannot be sent")
        if len(reason.encode()) > _MAX_REASON_BYTES:
            raise ValueError(f"close reason is over {_MAX_REASON_BYTES} bytes")
        if not self._life.closed:
            for before in tuple(self._before_close or ()):  # e.g. flush a manager's queue
                if self._life.closed:
                    break  # closed meanwhile: the rest no longer apply
                await before()
        await self.close_within(code, reason, CLOSE_TIMEOUT_S)

    def __repr__(self) -> str:
        return f"<WebSocket {self.path} {self._life.state.value}>"
