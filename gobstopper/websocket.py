"""The WebSocket a handler holds.

Inbound messages are read by a chain of server receives kept always pending (granian
answers pings and notices a departed client only while a receive is pending), into a
small bounded buffer; when the buffer is full reading stops and TCP slows the client.
There is no reader task: each finished receive starts the next one from its callback.
"""

from __future__ import annotations

import asyncio
import enum
import inspect
import json
import logging
import time
import weakref
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Sequence
from types import SimpleNamespace
from typing import Any

from .config import Config, RateLimitPolicy
from .datastructures import Address, Headers, QueryParams, parse_cookies
from .errors import CloseCode, ConnectionClosed, ConnectionClosedOK, MessageTooBig
from .metrics import Metrics
from .security import RateLimiter
from .transport.base import BYTES, CLOSE, TEXT, ScopeInfo, TransportClosed, WebSocketTransport

__all__ = ["Message", "MessageType", "State", "WebSocket", "WebSocketState"]

logger = logging.getLogger("gobstopper.websocket")
access = logging.getLogger("gobstopper.access")
_now = time.monotonic


def _weak_receive_callback(ws: WebSocket) -> Callable[[Any], None]:
    ref = weakref.ref(ws)

    def on_receive(fut: Any) -> None:
        target = ref()
        if target is not None:
            target._on_receive(fut)

    return on_receive


def _retrieve(fut: Any) -> None:
    """Done-callback of a send nobody awaits: fetch its outcome, so none goes unnoticed."""
    if not fut.cancelled():
        fut.exception()


_MAX_REASON_BYTES = 123  # RFC 6455: a close frame payload is at most 125 bytes
_UNSENDABLE_CODES = frozenset({1004, 1005, 1006, 1015})
# How long close() waits for the server to take the close frame (a stalled client
# can hold the socket's send side for ever).
_CLOSE_TIMEOUT_S = 5.0


def _sendable(code: int) -> bool:
    """RFC 6455 7.4: 1000-1014 less the reserved ones, and the 3000-4999 ranges."""
    return (1000 <= code <= 1014 and code not in _UNSENDABLE_CODES) or 3000 <= code <= 4999


class MessageType(enum.IntEnum):
    """Kind of a received message."""

    CLOSE = CLOSE
    BYTES = BYTES
    TEXT = TEXT


class WebSocketState(enum.Enum):
    """Where a connection is in its life."""

    CONNECTING = "connecting"
    CONNECTED = "connected"
    CLOSED = "closed"


class State(SimpleNamespace):
    """A free namespace for the application (``ws.state.user = ...``)."""


class Message:
    """A received message.

    Attributes:
        type: ``MessageType.TEXT``, ``BYTES`` or ``CLOSE``.
        data: ``str`` for text, ``bytes`` for binary, ``None`` for close.
        code: the close code for a close message, else ``None``.
    """

    __slots__ = ("code", "data", "type")

    def __init__(
        self, type: MessageType, data: str | bytes | None, code: int | None = None
    ) -> None:
        self.type = type
        self.data = data
        self.code = code

    @property
    def text(self) -> str:
        """The text of a text message (``TypeError`` for any other kind)."""
        if not isinstance(self.data, str):
            raise TypeError(f"expected a text message, got {self.type.name.lower()}")
        return self.data

    @property
    def bytes(self) -> bytes:
        """The payload of a binary message (``TypeError`` for any other kind)."""
        if not isinstance(self.data, bytes):
            raise TypeError(f"expected a binary message, got {self.type.name.lower()}")
        return self.data

    def json(self) -> Any:
        """Decode a text or binary message as JSON.

        Raises:
            ValueError: not JSON, not UTF-8, a number over Python's digit limit, or
                nesting too deep to decode (the message is at fault, not the server).
        """
        if self.data is None:
            raise TypeError("a close message has no payload")
        try:
            return json.loads(self.data)
        except RecursionError:
            raise ValueError("JSON nested too deeply") from None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Message) and (self.type, self.data, self.code) == (
            other.type,
            other.data,
            other.code,
        )

    def __hash__(self) -> int:
        return hash((self.type, self.data, self.code))

    def __repr__(self) -> str:
        if self.type is MessageType.CLOSE:
            return f"Message(CLOSE, code={self.code})"
        return f"Message({self.type.name}, {self.data!r:.60})"


_KINDS = (MessageType.CLOSE, MessageType.BYTES, MessageType.TEXT)


def _text_size(data: str, limit: int) -> int:
    """Byte size of ``data`` in UTF-8, computed only when it could matter for ``limit``."""
    n = len(data)
    if n * 4 <= limit:  # even all 4-byte characters would fit
        return n
    return len(data.encode("utf-8", "surrogatepass"))


class WebSocket:
    """A WebSocket connection as seen by a handler.

    Example::

        @app.websocket("/ws/echo")
        async def echo(ws: WebSocket) -> None:
            await ws.accept()
            async for message in ws:
                await ws.send_text(message.text)
    """

    def __init__(
        self,
        transport: WebSocketTransport,
        info: ScopeInfo,
        config: Config,
        path_params: dict[str, Any] | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self._transport = transport
        self._metrics = metrics
        self._heartbeat = config.heartbeat_message or None
        # The default burst covers a buffer's worth of messages read back to back after
        # the handler was busy: the bucket sees reads, not arrivals.
        burst = config.rate_limit_burst or max(
            2 * config.rate_limit, config.receive_queue_messages, 1
        )
        self._rate = RateLimiter(config.rate_limit, burst) if config.rate_limit > 0 else None
        self._pong: Any = None
        # What the server's receive futures call back: it holds this WebSocket only
        # weakly, because granian keeps some callbacks after their connection is gone,
        # and a bound method would keep the whole connection (handler, queues) alive.
        self._receive_callback = _weak_receive_callback(self)
        #: When the last message arrived (``time.monotonic()``), for idle timeouts.
        self.last_received = _now()
        #: Whether the handshake was accepted.
        self.accepted = False
        #: Who ended the connection: ``client`` (a close frame, or the network) or
        #: ``server`` (the handler, a limit, a shutdown).
        self.closed_by = "server"
        self._info = info
        self._config = config
        self._limit = config.max_message_bytes
        self.path_params: dict[str, Any] = path_params or {}
        self.state = State()
        self._state = WebSocketState.CONNECTING
        self._buffer: deque[Message] = deque()
        self._buffer_max = config.receive_queue_messages
        self._pending: Any = None
        # With a transport that reads on demand, a receive is kept pending only once
        # someone waits for the close (wait_closed); the handler otherwise reads directly.
        self._on_demand = transport.reads_on_demand
        self._keep_reading = not self._on_demand
        self._reading_now = False
        self._waiter: asyncio.Future[None] | None = None
        self._closed_future: asyncio.Future[int] | None = None
        self._close_code: int | None = None
        self._close_reason = ""
        self._close_returned = False
        self._background: set[asyncio.Task[None]] = set()
        self._close_callbacks: list[Callable[[WebSocket], None]] = []
        self._closing: asyncio.Future[None] | None = None
        self._before_close: list[Callable[[], Awaitable[object]]] = []
        self._handshake_waiter: asyncio.Future[None] | None = None
        self._headers: Headers | None = None
        self._query: QueryParams | None = None
        self.subprotocol: str | None = None

    # -- connection info --------------------------------------------------------------

    @property
    def path(self) -> str:
        return self._info.path

    @property
    def query_string(self) -> str:
        return self._info.query_string

    @property
    def query_params(self) -> QueryParams:
        if self._query is None:
            self._query = QueryParams(self._info.query_string)
        return self._query

    @property
    def headers(self) -> Headers:
        if self._headers is None:
            self._headers = Headers(self._info.headers)
        return self._headers

    @property
    def cookies(self) -> dict[str, str]:
        return parse_cookies(self.headers.get("cookie"))

    @property
    def client(self) -> Address | None:
        """The client's address (``host``, ``port``), when the server gives it."""
        return Address.parse(self._info.client)

    @property
    def scheme(self) -> str:
        return self._info.scheme

    @property
    def interface(self) -> str:
        """The server interface serving this connection: ``"rsgi"`` or ``"asgi"``."""
        return self._info.interface

    @property
    def requested_subprotocols(self) -> list[str]:
        return self._info.subprotocols

    @property
    def connection_state(self) -> WebSocketState:
        return self._state

    @property
    def close_code(self) -> int | None:
        """The close code once closed (1005 when RSGI does not tell the client's code)."""
        return self._close_code

    @property
    def closed(self) -> bool:
        return self._state is WebSocketState.CLOSED

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
        if self._state is not WebSocketState.CONNECTING:
            raise RuntimeError(f"cannot accept a connection that is {self._state.value}")
        try:
            await self._transport.accept(subprotocol, headers or ())
        except TransportClosed as exc:
            self._mark_closed(exc.code, exc.reason)
            raise ConnectionClosed.for_code(exc.code, exc.reason) from None
        self.subprotocol = subprotocol
        self._state = WebSocketState.CONNECTED
        self.accepted = True
        if self._metrics is not None:
            self._metrics.accepted += 1
            self._metrics.open_connections += 1
        access.info(
            "websocket accepted %s",
            self.path,
            extra={"event": "connect", "path": self.path, "client": self._info.client},
        )
        self._arm()

    # -- receiving ----------------------------------------------------------------------

    def _arm(self) -> None:
        """Keep one server receive pending while there is room in the buffer."""
        if (
            self._pending is None
            and self._keep_reading
            and self._close_code is None
            and len(self._buffer) < self._buffer_max
        ):
            fut = self._transport.receive()
            self._pending = fut
            fut.add_done_callback(self._receive_callback)

    def _on_receive(self, fut: Any) -> None:
        self._pending = None
        if fut.cancelled():
            self._reader_stopped()
            return
        if self._close_code is not None:
            self._read_after_close(fut)
            return
        try:
            kind, data = self._transport.unpack(fut)
        except TransportClosed as exc:
            if self._close_code is None:
                self.closed_by = "client"
            self._mark_closed(exc.code, exc.reason)
            return
        except Exception:
            logger.exception("receive failed on %s", self.path)
            self._fail(CloseCode.INTERNAL_ERROR, "internal error")
            return
        msg = self._take(kind, data)
        if msg is not None:
            self._buffer.append(msg)
            self._wake()
        elif self._close_code is not None:
            self._wake()
        self._arm()

    def _take(self, kind: int, data: Any) -> Message | None:
        """A received message, checked; None when there is nothing for the handler (the
        connection closed, or the message was a heartbeat or over the rate limit)."""
        if kind == CLOSE:
            if self._close_code is None:
                self.closed_by = "client"
            self._mark_closed(data, "")
            return None
        size = _text_size(data, self._limit) if kind == TEXT else len(data)
        self.last_received = _now()
        metrics = self._metrics
        if metrics is not None:
            metrics.messages_in += 1
            metrics.bytes_in += size
        rate = self._rate
        if rate is not None and not rate.allow(self.last_received):
            self._over_rate()
            return None
        if self._heartbeat is not None and kind == TEXT and data == self._heartbeat:
            self._reply(self._config.heartbeat_reply)
            return None
        if size > self._limit:
            logger.info(
                "closing %s: inbound message of %d bytes exceeds MAX_WS_MESSAGE_BYTES=%d",
                self.path,
                size,
                self._limit,
            )
            self._fail(CloseCode.MESSAGE_TOO_BIG, "message too big")
            return None
        return Message(_KINDS[kind], data)

    def _over_rate(self) -> None:
        if self._metrics is not None:
            self._metrics.rate_limited += 1
        if self._config.rate_limit_policy is RateLimitPolicy.DROP:
            return
        logger.info(
            "closing %s: over WS_RATE_LIMIT=%g messages per second",
            self.path,
            self._config.rate_limit,
            extra={"event": "rate_limit", "path": self.path, "client": self._info.client},
        )
        self._fail(CloseCode.POLICY_VIOLATION, "rate limit exceeded")

    def _reply(self, text: str) -> None:
        """Answer a heartbeat at once, outside any queue (its order does not matter);
        at most one answer in flight, so a client that never reads cannot pile them up."""
        if self._pong is not None and not self._pong.done():
            return
        try:
            fut = self._transport.start_send(text)
        except TransportClosed:
            return
        self._pong = fut
        fut.add_done_callback(_retrieve)

    async def _read_now(self) -> Message | None:
        """Read one message straight from the server (``reads_on_demand`` transports)."""
        self._reading_now = True
        try:
            kind, data = await self._transport.receive_now()
        except TransportClosed as exc:
            if self._close_code is None:
                self.closed_by = "client"
            self._mark_closed(exc.code, exc.reason)
            return None
        except Exception:
            logger.exception("receive failed on %s", self.path)
            self._fail(CloseCode.INTERNAL_ERROR, "internal error")
            return None
        finally:
            self._reading_now = False
        if self._close_code is not None:
            return None  # we closed meanwhile: what the client sent before is dropped
        return self._take(kind, data)

    def _read_after_close(self, fut: Any) -> None:
        """After our close frame: read on until the client's reply, if someone waits for it."""
        try:
            kind, _ = self._transport.unpack(fut)
        except Exception:  # closing anyway: whatever ended the read, stop reading
            kind = CLOSE
        waiter = self._handshake_waiter
        if kind != CLOSE and waiter is not None and not waiter.done():
            nxt = self._transport.receive()  # a message sent before our close: dropped
            self._pending = nxt
            nxt.add_done_callback(self._receive_callback)
            return
        self._reader_stopped()

    def _reader_stopped(self) -> None:
        waiter = self._handshake_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _mark_closed(self, code: int, reason: str) -> None:
        if self._close_code is not None:
            return
        self._close_code = code
        self._close_reason = reason
        self._state = WebSocketState.CLOSED
        self._wake()
        if self._closed_future is not None and not self._closed_future.done():
            self._closed_future.set_result(code)
        for callback in self._close_callbacks:
            try:
                callback(self)
            except Exception:
                logger.exception("close callback %r failed", callback)
        self._close_callbacks.clear()
        self._before_close.clear()

    def _add_close_callback(self, callback: Callable[[WebSocket], None]) -> None:
        """Call ``callback(ws)`` once, as soon as the connection is known to be closed."""
        if self._close_code is not None:
            callback(self)
        else:
            self._close_callbacks.append(callback)

    def _fail(self, code: CloseCode, reason: str) -> None:
        """Close from a callback because of a policy or an error."""
        self._mark_closed(code, reason)  # at once: the handler must see this code
        task = asyncio.get_running_loop().create_task(
            self._close_bounded(code, reason, _CLOSE_TIMEOUT_S)
        )
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _closed_error(self) -> ConnectionClosed:
        assert self._close_code is not None
        return ConnectionClosed.for_code(self._close_code, self._close_reason)

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
            if self._close_code is not None:
                if not self._close_returned:
                    self._close_returned = True
                    return Message(MessageType.CLOSE, None, self._close_code)
                raise self._closed_error()
            if self._state is WebSocketState.CONNECTING:
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
            raise self._closed_error()
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
                msg = await self._receive_data()
            except ConnectionClosedOK:
                return
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
        if self._close_code is not None:
            return self._close_code
        if self._closed_future is None:
            self._closed_future = asyncio.get_running_loop().create_future()
        self._read_ahead()  # the close arrives as a message: read on for it
        return await asyncio.shield(self._closed_future)

    def _read_ahead(self) -> None:
        """Keep a read pending from now on, also where reads are on demand (uvicorn)."""
        if not self._keep_reading:
            self._keep_reading = True
            self._arm()

    # -- sending ------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._close_code is not None:
            raise self._closed_error()
        if self._state is not WebSocketState.CONNECTED:
            raise RuntimeError("accept() the connection before sending")

    async def send_text(self, data: str) -> None:
        """Send one text message, and wait until the server has flushed it.

        Raises:
            MessageTooBig: ``data`` is over ``MAX_WS_MESSAGE_BYTES``; nothing was sent.
            ConnectionClosed: the connection is closed.
        """
        self._check_open()
        size = _text_size(data, self._limit)
        if size > self._limit:
            raise MessageTooBig(size, self._limit)
        try:
            await self._transport.send_text(data)
        except TransportClosed as exc:
            self._mark_closed(exc.code, exc.reason)
            raise self._closed_error() from None
        if self._metrics is not None:
            self._metrics.messages_out += 1
            self._metrics.bytes_out += size

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
        try:
            await self._transport.send_bytes(data)
        except TransportClosed as exc:
            self._mark_closed(exc.code, exc.reason)
            raise self._closed_error() from None
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
        if self._state is WebSocketState.CONNECTING:
            status = code if 400 <= code <= 599 else 403
            self._mark_closed(status, reason)  # a refused handshake records its HTTP status
            await self._transport.reject(status)
            return
        if not _sendable(code):
            raise ValueError(f"close code {code} cannot be sent")
        if len(reason.encode()) > _MAX_REASON_BYTES:
            raise ValueError(f"close reason is over {_MAX_REASON_BYTES} bytes")
        if self._close_code is None:
            for before in self._before_close:  # e.g. flush what a manager has queued
                await before()
        await self._close_bounded(code, reason, _CLOSE_TIMEOUT_S)

    async def _close_bounded(
        self, code: int, reason: str, timeout: float, handshake: float = 0.0
    ) -> None:
        """Close once, waiting at most ``timeout`` for the server to take the frame and,
        when ``handshake`` > 0, that long for the client's reply (used at shutdown, so
        that the frame is out before the server stops its sockets)."""
        self._mark_closed(code, reason)
        # One close per connection: later callers (the app finishing the handler, a
        # shutdown) wait for the first, so no second close frame races it.
        if self._closing is None:
            self._closing = asyncio.ensure_future(
                self._send_close(code, reason, timeout, handshake)
            )
        await asyncio.shield(self._closing)

    async def _send_close(self, code: int, reason: str, timeout: float, handshake: float) -> None:
        if self._transport.cancel_receive_before_close:
            pending = self._stop_reading()
            if isinstance(pending, asyncio.Future):
                await asyncio.wait((pending,), timeout=timeout)
        try:
            await asyncio.wait_for(self._transport.close(code, reason), timeout)
        except asyncio.TimeoutError:
            logger.warning("close frame for %s not sent within %.1fs", self.path, timeout)
        if handshake > 0 and self._pending is not None:
            self._handshake_waiter = asyncio.get_running_loop().create_future()
            await asyncio.wait((self._handshake_waiter,), timeout=handshake)
        self._stop_reading()

    def _stop_reading(self) -> Any:
        """Cancel the pending receive, if any, and return it."""
        pending, self._pending = self._pending, None
        if pending is not None and not pending.done():
            pending.cancel()
            return pending
        return None

    async def _finish(self, code: int) -> None:
        """Called by the app once the handler has returned: make sure the socket is closed."""
        if self._state is WebSocketState.CONNECTING:
            await self.close(403)
            self._transport.release()
            return
        if self._background:  # a close started from a callback (e.g. 1009) goes first
            await asyncio.gather(*self._background, return_exceptions=True)
        self._mark_closed(code, "")
        recorded = self._close_code
        final = recorded if recorded is not None and _sendable(recorded) else code
        await self._close_bounded(final, self._close_reason, _CLOSE_TIMEOUT_S)
        self._transport.release()

    def __repr__(self) -> str:
        return f"<WebSocket {self.path} {self._state.value}>"
