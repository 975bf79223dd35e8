"""The server side of a WebSocket: the declared contract, over the one life-cycle state
machine (``Lifecycle``, pure, in ``lifecycle.py`` and re-exported here).

``ServerConnection`` is the base class of ``WebSocket``. Its public names are all that
the code serving a connection (app, manager, outbox) may call on it:

- ``finish(code)``: the app, once the handler has returned (or was refused).
- ``fail(code, reason)``: close from a callback because of a policy or a limit: the
  app's idle sweeper, the manager (slow consumer), the reader itself (size, rate).
- ``close_within(code, reason, timeout, handshake)``: the app and the manager at
  shutdown: bounded, optionally waiting for the client's close handshake.
- ``add_close_callback(cb)``, ``add_before_close(hook)``, ``closed_error()``: the
  manager (forget the connection when it closes; flush its queue before a handler's
  own close; the error for a connection that is already closed).
- ``last_received``, ``has_unread``, ``reads_ahead``, ``reading_now``, ``read_ahead()``:
  the app's idle sweeper.
- ``senders()``, ``send_window``, ``send_group``, ``mark_broken(code)``: the outbox (it takes the
  senders once; a failed send marks the connection broken).
- ``path``, ``client_address``: logs.
- ``connection_state``, ``closed``, ``close_code``, ``accepted``, ``closed_by``: views
  of the ``Lifecycle``, also public API for handlers.

A base class rather than a ``Protocol``: the contract and the machinery behind it (the
chain of reads kept pending, the bounded close) are one piece of code, declared and
implemented once here, and reached without delegation (nothing extra per message).
``websocket.py`` adds what a handler calls and shares these fields.

Inbound messages are read by a chain of server receives kept always pending (granian
answers pings and notices a departed client only while a receive is pending), into a
small bounded buffer; when the buffer is full reading stops and TCP slows the client.
There is no reader task: each finished receive starts the next one from its callback.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from ._util import TaskSet
from .config import Config, RateLimitPolicy
from .datastructures import Scope
from .errors import CloseCode, ConnectionClosed
from .lifecycle import IllegalTransition, Lifecycle, Side, WebSocketState
from .message import Message, MessageType, text_size
from .metrics import Metrics
from .security import RateLimiter
from .transport.base import CLOSE, TEXT, ScopeInfo, TransportClosed, WebSocketTransport

__all__ = [
    "CLOSE_TIMEOUT_S",
    "IllegalTransition",
    "Lifecycle",
    "ServerConnection",
    "Side",
    "WebSocketState",
    "sendable",
]

logger = logging.getLogger("gobstopper.websocket")
_now = time.monotonic

#: How long a close waits for the server to take the close frame (a stalled client can
#: hold the socket's send side for ever).
CLOSE_TIMEOUT_S = 5.0

_UNSENDABLE_CODES = frozenset({1004, 1005, 1006, 1015})
_KINDS = (MessageType.CLOSE, MessageType.BYTES, MessageType.TEXT)


def sendable(code: int) -> bool:
    """Whether ``code`` may go in a close frame (RFC 6455 7.4: 1000-1014 less the
    reserved ones, and the 3000-4999 ranges)."""
    return (1000 <= code <= 1014 and code not in _UNSENDABLE_CODES) or 3000 <= code <= 4999


def _weak_receive_callback(conn: ServerConnection) -> Callable[[Any], None]:
    ref = weakref.ref(conn)

    def on_receive(fut: Any) -> None:
        target = ref()
        if target is not None:
            target._on_receive(fut)

    return on_receive


def _retrieve(fut: Any) -> None:
    """Done-callback of a send nobody awaits: fetch its outcome, so none goes unnoticed."""
    if not fut.cancelled():
        fut.exception()


class ServerConnection(Scope):
    """What the code serving a WebSocket may call on it (see the module docstring).

    Slotted, and what an idle connection may never need (the read-ahead buffer, the
    receive callback, the close callbacks, the task set of a close from a callback) is
    made on first use: thousands of idle connections cost only their fields.
    """

    __slots__ = (
        "__weakref__",
        "_background",
        "_before_close",
        "_buffer",
        "_buffer_max",
        "_close_callbacks",
        "_closed_future",
        "_closing",
        "_config",
        "_handshake_waiter",
        "_heartbeat",
        "_keep_reading",
        "_life",
        "_limit",
        "_metrics",
        "_on_demand",
        "_pending",
        "_pong",
        "_rate",
        "_reading_now",
        "_receive_callback",
        "_transport",
        "_waiter",
        "last_received",
    )

    def __init__(
        self,
        transport: WebSocketTransport,
        info: ScopeInfo,
        config: Config,
        metrics: Metrics | None = None,
    ) -> None:
        super().__init__(info)
        self._transport = transport
        self._config = config
        self._metrics = metrics
        self._life = Lifecycle()
        self._limit = config.max_message_bytes
        self._heartbeat = config.heartbeat_message or None
        self._rate: RateLimiter | None = None
        if config.rate_limit > 0:
            # The default burst covers a buffer's worth of messages read back to back
            # after the handler was busy: the bucket sees reads, not arrivals.
            burst = config.rate_limit_burst or max(
                2 * config.rate_limit, config.receive_queue_messages, 1
            )
            self._rate = RateLimiter(config.rate_limit, burst)
        self._pong: Any = None
        # What the server's receive futures call back (made by the first ``_arm``): it
        # holds this connection only weakly, because granian keeps some callbacks after
        # their connection is gone, and a bound method would keep the whole connection
        # (handler, queues) alive.
        self._receive_callback: Callable[[Any], None] | None = None
        #: When the last message arrived (``time.monotonic()``), for idle timeouts.
        self.last_received = _now()
        self._buffer: deque[Message] | None = None  # made by the first message read ahead
        self._buffer_max = config.receive_queue_messages
        self._pending: Any = None
        # With a transport that reads on demand, a receive is kept pending only once
        # someone waits for the close (wait_closed); the handler otherwise reads directly.
        self._on_demand = transport.reads_on_demand
        self._keep_reading = not self._on_demand
        self._reading_now = False
        self._waiter: asyncio.Future[None] | None = None
        self._closed_future: asyncio.Future[int] | None = None
        # The close under way; True once closed at once (``closes_at_once``).
        self._closing: asyncio.Future[None] | bool | None = None
        self._handshake_waiter: asyncio.Future[None] | None = None
        self._background: TaskSet | None = None  # a close started from a callback
        self._close_callbacks: list[Callable[[ServerConnection], None]] | None = None
        self._before_close: list[Callable[[], Awaitable[object]]] | None = None

    # -- views of the life cycle ------------------------------------------------------------

    @property
    def connection_state(self) -> WebSocketState:
        return self._life.state

    @property
    def max_message_bytes(self) -> int:
        """The largest message it sends or takes (``MAX_WS_MESSAGE_BYTES``)."""
        return self._limit

    @property
    def closed(self) -> bool:
        return self._life.closed

    @property
    def close_code(self) -> int | None:
        """The close code once closed (1005 when RSGI does not tell the client's code)."""
        return self._life.code

    @property
    def accepted(self) -> bool:
        """Whether the handshake was accepted (still True once closed)."""
        return self._life.accepted

    @property
    def closed_by(self) -> Side:
        """Who ended the connection: ``client`` (a close frame, or the network) or
        ``server`` (the handler, a limit, a shutdown)."""
        return self._life.closed_by

    def closed_error(self) -> ConnectionClosed:
        """The error that says this connection is closed, carrying its code.

        Raises:
            RuntimeError: the connection is not closed.
        """
        life = self._life
        if life.code is None:
            raise RuntimeError(f"the connection is {life.state.value}, not closed")
        return ConnectionClosed.for_code(life.code, life.reason)

    # -- for logs, the idle sweeper and the outbox -------------------------------------------

    @property
    def has_unread(self) -> bool:
        """Whether received messages wait for a busy handler (so the client is not idle)."""
        return bool(self._buffer)  # None (never used) or empty: False

    @property
    def reads_ahead(self) -> bool:
        """Whether a receive is kept pending, so that ``last_received`` is current. Not so
        on ``reads_on_demand`` transports (uvicorn) until ``read_ahead()``."""
        return self._keep_reading

    @property
    def reading_now(self) -> bool:
        """Whether the handler is in a direct read (``reads_on_demand`` transports)."""
        return self._reading_now

    def read_ahead(self) -> None:
        """Keep a receive pending from now on, also where reads are on demand."""
        if not self._keep_reading:
            self._keep_reading = True
            self._arm()

    def senders(
        self,
    ) -> tuple[Callable[[str], Any], Callable[[bytes], Any], tuple[type[BaseException], ...]]:
        """The transport's fastest send starters and the errors they raise when the
        connection is gone (``WebSocketTransport.senders``); take them once."""
        return self._transport.senders()

    @property
    def send_window(self) -> int:
        """How many started, unfinished sends an outbox may keep on this connection."""
        return self._transport.send_window

    @property
    def send_group(self) -> int:
        """How many started sends may share one held future (``WebSocketTransport``)."""
        return self._transport.send_group

    def mark_broken(self, code: int) -> None:
        """A send failed: the client is gone. Closed at once, with nothing sent; the
        close callbacks run."""
        self._mark_closed(code, "")

    # -- closing -------------------------------------------------------------------------------

    def add_close_callback(self, callback: Callable[[ServerConnection], None]) -> None:
        """Call ``callback(conn)`` once, as soon as the connection is known to be closed
        (at once if it is already)."""
        if self._life.closed:
            callback(self)
        elif self._close_callbacks is None:
            self._close_callbacks = [callback]
        else:
            self._close_callbacks.append(callback)

    def add_before_close(self, hook: Callable[[], Awaitable[object]]) -> None:
        """Await ``hook()`` before the close frame when the handler closes the connection
        itself (e.g. flush what a manager queued); not when the client or a limit closed it."""
        if self._life.closed:
            return
        if self._before_close is None:
            self._before_close = [hook]
        else:
            self._before_close.append(hook)

    def fail(self, code: int, reason: str) -> None:
        """Close from a callback (no await) because of a policy or a limit. The handler
        sees ``code`` at once; the close frame follows, and ``finish`` waits for it."""
        self._mark_closed(code, reason)
        if self._background is None:
            self._background = TaskSet(logger, "closing a connection")
        self._background.spawn(self.close_within(code, reason, CLOSE_TIMEOUT_S))

    async def close_within(
        self, code: int, reason: str, timeout: float, handshake: float = 0.0
    ) -> None:
        """Close once, waiting at most ``timeout`` seconds for the server to take the frame.

        Later callers (the app finishing the handler, a shutdown) wait for the first
        close, so no second close frame races it.

        Args:
            code: the close code, unless the connection already has one.
            reason: the close reason (reaches the client under ASGI only).
            timeout: how long the server may take to send the close frame.
            handshake: when > 0, how long to wait for the client's reply (at shutdown,
                so that the frame is out before the server stops its sockets).
        """
        self._mark_closed(code, reason)
        closing = self._closing
        if closing is None:
            if handshake <= 0 and self._close_at_once(code, reason):
                return
            closing = self._closing = asyncio.ensure_future(
                self._send_close(code, reason, timeout, handshake)
            )
        if isinstance(closing, asyncio.Future):  # else closed at once already
            await asyncio.shield(closing)

    def _close_at_once(self, code: int, reason: str) -> bool:
        """Close now if the transport closes without waiting (RSGI): no task, no timer.
        False (nothing done) where a close must be awaited, or is under way."""
        transport = self._transport
        if not transport.closes_at_once or self._closing is not None:
            return False
        self._closing = True
        transport.close_now(code, reason)
        self._stop_reading()
        return True

    async def finish(self, code: int) -> None:
        """Make sure the socket is closed once the handler has returned, then release
        the server's objects. An unanswered handshake is refused with 403.

        Args:
            code: the close code if the connection is still open (1000 after a normal
                return, 1011 after an error, 1001 when cancelled); a recorded one wins.
        """
        if self._life.state is WebSocketState.CONNECTING:
            await self._refuse(403, "")
            self._transport.release()
            return
        if self._background is not None:  # a close started from a callback (e.g. 1009) goes first
            await self._background.wait()
        if not self._life.closed:
            self._mark_closed(code, "")
        recorded = self._life.code
        final = recorded if recorded is not None and sendable(recorded) else code
        if not self._close_at_once(final, self._life.reason):
            await self.close_within(final, self._life.reason, CLOSE_TIMEOUT_S)
        self._transport.release()

    async def _refuse(self, status: int, reason: str) -> None:
        self._mark_closed(status, reason)  # a refused handshake records its HTTP status
        await self._transport.reject(status)

    def _mark_closed(self, code: int, reason: str, by: Side = "server") -> None:
        if not self._life.close(code, reason, by):
            return
        self._wake()
        if self._closed_future is not None and not self._closed_future.done():
            self._closed_future.set_result(code)
        callbacks, self._close_callbacks, self._before_close = self._close_callbacks, None, None
        for callback in callbacks or ():
            try:
                callback(self)
            except Exception:
                logger.exception("close callback %r failed", callback)

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

    # -- reading ahead -------------------------------------------------------------------------

    def _arm(self) -> None:
        """Keep one server receive pending while there is room in the buffer."""
        if (
            self._pending is None
            and self._keep_reading
            and not self._life.closed
            and (self._buffer is None or len(self._buffer) < self._buffer_max)
        ):
            fut = self._transport.receive()
            self._pending = fut
            callback = self._receive_callback
            if callback is None:
                callback = self._receive_callback = _weak_receive_callback(self)
            fut.add_done_callback(callback)

    def _on_receive(self, fut: Any) -> None:
        self._pending = None
        if fut.cancelled():
            self._reader_stopped()
            return
        life = self._life
        if life.closed:
            self._read_after_close(fut)
            return
        try:
            kind, data = self._transport.unpack(fut)
        except TransportClosed as exc:
            self._mark_closed(exc.code, exc.reason, "client")
            return
        except Exception:
            logger.exception("receive failed on %s", self.path)
            self.fail(CloseCode.INTERNAL_ERROR, "internal error")
            return
        msg = self._take(kind, data)
        if msg is not None:
            if self._buffer is None:
                self._buffer = deque()
            self._buffer.append(msg)
            self._wake()
        self._arm()  # a close above has woken the handler already

    def _take(self, kind: int, data: Any) -> Message | None:
        """A received message, checked; None when there is nothing for the handler (the
        connection closed, or the message was a heartbeat or over the rate limit)."""
        if kind == CLOSE:
            self._mark_closed(data, "", "client")
            return None
        size = text_size(data, self._limit) if kind == TEXT else len(data)
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
            self.fail(CloseCode.MESSAGE_TOO_BIG, "message too big")
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
        self.fail(CloseCode.POLICY_VIOLATION, "rate limit exceeded")

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
            self._mark_closed(exc.code, exc.reason, "client")
            return None
        except Exception:
            logger.exception("receive failed on %s", self.path)
            self.fail(CloseCode.INTERNAL_ERROR, "internal error")
            return None
        finally:
            self._reading_now = False
        if self._life.closed:
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
            nxt.add_done_callback(_weak_receive_callback(self))
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
