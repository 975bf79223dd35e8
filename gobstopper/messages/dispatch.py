"""Dispatch: from an inbound frame to the answers it calls for.

A ``Dispatcher`` holds the method table (methods, streams, event handlers and the
``rpc.*`` built-ins, each a ``binding.Method``). For every frame a connection sends it
decodes the frame with the connection's codec, checks each request (one, or a batch)
against ``protocol``, applies the method's guard and rate limit, binds the parameters
and runs the method, and sends what must be answered in one frame.

A plain call runs inline: the connection's next message waits for it, so answers come
in order. A stream, or a method registered ``concurrent``, runs as a task of its own
beside the connection's other messages; the connection holds at most ``max_tasks`` of
them, and ``rpc.cancel`` (``cancel``) stops one by its request id.

What a connection needs between messages lives on its ``Peer``: the codec, the running
tasks and the rate-limit buckets. Errors are always answered as JSON-RPC errors; an
unexpected exception is logged and answered ``INTERNAL_ERROR`` without its details.

A connection whose credential expired or was refused has ``ended``: from then on no
frame of it is dispatched (nothing runs, nothing is answered), the rest of a batch is
answered ``UNAUTHORIZED`` without running, and only the ``rpc.close`` event is still
sent before the close.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import typing
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

from .._util import TaskSet
from ..auth import EXPIRED
from ..connection import CLOSE_TIMEOUT_S
from ..errors import CloseCode, ConnectionClosed, MessageTooBig
from ..manager import Connection
from ..security import RateLimiter
from . import protocol
from .binding import NO_DATA, Kind, Method, bind, convert, describe
from .codec import Codec, DecodeError
from .events import Event
from .protocol import (
    INTERNAL_ERROR,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    RATE_LIMITED,
    REQUEST_CANCELLED,
    TOO_MANY_TASKS,
    UNAUTHORIZED,
    RPCError,
)

if TYPE_CHECKING:
    from .rpc import RPC

__all__ = ["CLOSE_FLUSH", "Dispatcher", "NotificationKey", "Peer"]

logger = logging.getLogger("gobstopper.rpc")

#: Seconds an ended connection's queue (its ``rpc.close`` event last) may take to go out
#: before it is closed anyway: a client that does not read is not served meanwhile.
CLOSE_FLUSH = 1.0


class Peer:
    """One connection served by an endpoint: what dispatch keeps for it between messages.

    Attributes:
        conn: its ``Connection`` with the manager (``ws``: its WebSocket).
        codec: the encoding it chose.
        tasks: its running streams and concurrent calls, by request id (a
            ``NotificationKey`` for a notification's).
        buckets: its rate-limit buckets, by method name.
        closing: close with this code and reason once answered (a rate limit that
            closes, a refused refresh).
        answer_in_queue: the answer to the frame being handled must follow the pushes
            queued for the connection before it (a subscription's replay): it goes
            through the connection's queue, not straight to the socket.
        after_answer: called once that answer is queued (or would have been: a
            notification): what must come after it (a subscription going live).
        before_answer: called right before that answer is encoded, with no pause
            between (or once it is known there is none): what the answer must show as
            of the moment it is queued (a presence state).
        unanswered: awaited when the answer could not be queued (over the message
            limit, answered with an error instead): what must be undone (a
            subscription the client is told it does not have).
        ended: its credential expired or was refused (``end``): nothing more of it is
            dispatched, and nothing more is sent to it but the ``rpc.close`` event.
    """

    __slots__ = (
        "after_answer",
        "answer_in_queue",
        "before_answer",
        "buckets",
        "closing",
        "codec",
        "conn",
        "ended",
        "tasks",
        "unanswered",
        "ws",
    )

    def __init__(self, conn: Connection, codec: Codec) -> None:
        self.conn = conn
        self.ws = conn.ws
        self.codec = codec
        self.tasks: dict[Any, asyncio.Task[None]] = {}
        self.buckets: dict[str, RateLimiter] = {}
        self.closing: tuple[int, str] | None = None
        self.answer_in_queue = False
        self.after_answer: list[Callable[[], None]] = []
        self.before_answer: list[Callable[[], None]] = []
        self.unanswered: list[Callable[[], Awaitable[None]]] = []
        self.ended = False

    async def send(self, frame: str | bytes) -> None:
        """Send one encoded frame (str: text, bytes: binary).

        Raises:
            MessageTooBig: over the WebSocket's message limit.
            ConnectionClosed: the connection is closed.
        """
        if isinstance(frame, str):
            await self.ws.send_text(frame)
        else:
            await self.ws.send_bytes(frame)

    def end(self, code: int, reason: str) -> None:
        """Serve this connection no more, at once: queue the ``rpc.close`` event (``code``,
        ``reason``) as the last thing it is sent (pushes after it are dropped), and cancel
        its streams and concurrent calls. Then ``close_ended``. Once only."""
        if self.ended:
            return
        self.ended = True
        data = {"code": code, "reason": reason}
        frame = self.codec.encode(protocol.event_push(protocol.CLOSING_EVENT, data, None))
        size = len(frame) if isinstance(frame, bytes) else len(frame.encode())
        self.conn.outbox.put(frame, size)
        self.conn.outbox.seal()
        for task in tuple(self.tasks.values()):
            task.cancel()

    async def close_ended(self, code: int, reason: str) -> None:
        """Close an ended connection once its queue is sent, ``CLOSE_FLUSH`` seconds at most
        (not the shutdown grace a normal close waits: it is no longer entitled to it)."""
        await self.conn.outbox.flush(CLOSE_FLUSH)
        await self.ws.close_within(code, reason, CLOSE_TIMEOUT_S)

    def __repr__(self) -> str:
        return f"<Peer {self.conn.id} {self.codec.name}>"


class NotificationKey:
    """The key of a running notification in ``Peer.tasks``: it has no request id, so
    nobody can cancel it (each key is its own)."""

    __slots__ = ()


class Dispatcher:
    """The method table and what runs a connection's requests.

    Args:
        endpoint: the endpoint an ``Event`` answers through (``Event.reply``,
            ``Event.to_room``...).
        max_tasks: streams and concurrent calls one connection may have running.
    """

    def __init__(self, endpoint: RPC, max_tasks: int = 100) -> None:
        self.endpoint = endpoint
        self.max_tasks = max_tasks
        self.methods: dict[str, Method] = {}
        self._cancel_answers = TaskSet(logger, "answering a cancelled request")

    # -- the method table -----------------------------------------------------------------

    def register(self, key: str, fn: Callable[..., Any], kind: Kind, **options: Any) -> None:
        """Register ``fn`` as the method, stream or event handler ``key``.

        Args:
            options: ``binding.Method``'s ``requires``, ``limit``, ``close_on_limit``,
                ``concurrent``.

        Raises:
            TypeError: the name is taken or reserved (``rpc.*``), or a type hint cannot
                be validated (``binding.describe``).
        """
        if key.startswith(protocol.RESERVED_PREFIX):
            raise TypeError(f"{key!r}: names starting with 'rpc.' are reserved")
        if key in self.methods:
            raise TypeError(f"RPC method or event {key!r} is already registered")
        self.methods[key] = describe(key, fn, kind, **options)

    def register_builtin(
        self, key: str, fn: Callable[..., Any], hints: dict[str, Any], **options: Any
    ) -> None:
        """Register one of the protocol's own ``rpc.*`` methods: ``fn`` takes the caller's
        ``Peer`` as ``peer``, and its parameters ``hints`` (``options``: as ``register``)."""
        signature = inspect.signature(fn)
        self.methods[key] = Method(fn, "builtin", signature, hints, frozenset(("peer",)), **options)

    # -- one frame --------------------------------------------------------------------------

    async def receive(self, peer: Peer, raw: str | bytes) -> None:
        """Answer one inbound frame; then close the connection if it must (``closing``:
        1008 over a rate limit that closes, 4001/4003 after a refused refresh). An ended
        connection's frames are dropped unread, and so is an answer due when it ended."""
        if peer.ended or _expired(peer):
            return
        try:
            reply = await self.dispatch(peer, raw)
            in_queue, peer.answer_in_queue = peer.answer_in_queue, False
            if peer.before_answer:
                _run(peer.before_answer)  # no pause from here until it is queued
            if reply is not None and not peer.ended:
                await self.send_reply(peer, reply, in_queue)
        finally:
            # Most frames leave no hooks: looked at before anything is called or made.
            if peer.before_answer:
                _run(peer.before_answer)
            if peer.unanswered:
                peer.unanswered = []
            if peer.after_answer:
                _run(peer.after_answer)
        if peer.closing is None:
            return
        if peer.ended:
            await peer.close_ended(*peer.closing)
        else:
            await peer.ws.close(*peer.closing)

    async def dispatch(self, peer: Peer, raw: str | bytes) -> Any:
        """The answer to one inbound frame (an object, or a list for a batch), or None
        when nothing is to be answered (notifications, or tasks that answer later)."""
        try:
            payload = peer.codec.decode(raw)
        except DecodeError:
            return protocol.error(None, RPCError(PARSE_ERROR, "Parse error"))
        try:
            batch = protocol.parse_batch(payload)
        except RPCError as exc:
            return protocol.error(None, exc)
        if batch is None:
            return await self.call(peer, payload)
        replies = []
        for item in batch:
            if peer.ended or peer.closing is not None:
                # What a refused refresh (or a closing limit) decided holds for the rest.
                reply = _not_run(peer, item)
            else:
                reply = await self.call(peer, item)
            if reply:
                replies.append(reply)
        return replies or None

    async def call(self, peer: Peer, request: Any) -> Any:
        """Run one decoded request: its answer, or None (a notification, or a task that
        answers when it ends)."""
        if not protocol.is_request(request):
            rid = protocol.invalid_request_id(request)
            return protocol.error(rid, RPCError(INVALID_REQUEST, "Invalid Request"))
        notification = "id" not in request
        rid = request.get("id")
        name: str = request["method"]
        try:
            method = self.methods.get(name)
            if method is None:
                raise RPCError(METHOD_NOT_FOUND, "Method not found", name)
            if method.requires is not None and not method.requires(peer.ws.state):
                raise RPCError(protocol.ACCESS_DENIED, "Access denied", name)
            if method.limit is not None:
                self._take_token(peer, name, method)
            params = request.get("params")
            if method.kind == "event":
                args: list[Any] = [Event(self.endpoint, peer.conn, name, params)]
                if method.data_hint is not NO_DATA:
                    args.append(convert("data", params, method.data_hint))
                kwargs: dict[str, Any] = {}
            else:
                args, kwargs = bind(method, params, peer)
            if method.concurrent:
                if method.kind == "stream" and notification:
                    return None  # nowhere to send the items
                self._start_task(peer, None if notification else rid, method, args, kwargs)
                return None  # the task answers
            result = await method.fn(*args, **kwargs)
        except RPCError as exc:
            return None if notification else protocol.error(rid, exc)
        except ConnectionClosed:
            raise
        except Exception:
            logger.exception("RPC method %r failed", name)
            return None if notification else protocol.error(rid, _internal_error())
        return None if notification else protocol.result(rid, result)

    async def send_reply(self, peer: Peer, reply: Any, in_queue: bool = False) -> None:
        """Send an answer (or a batch's); one the encoding cannot carry, or over the
        message limit, is replaced by an internal error (logged). ``in_queue``: behind
        the pushes queued for the connection (see ``Peer.answer_in_queue``)."""
        try:
            frame = peer.codec.encode(reply)
        except TypeError:
            reply = _encodable(reply, peer.codec)
            frame = peer.codec.encode(reply)
        if in_queue:
            size = len(frame) if isinstance(frame, bytes) else len(frame.encode())
            if size > peer.ws.max_message_bytes:
                # The outbox would send it anyway, and the client close over it.
                logger.warning("an answer of %d bytes is over the message limit", size)
                frame = peer.codec.encode(protocol.error(_id_of(reply), _too_big()))
                size = len(frame) if isinstance(frame, bytes) else len(frame.encode())
                peer.conn.outbox.put(frame, size)
                undo, peer.unanswered = peer.unanswered, []
                for then in undo:
                    await then()
                return
            # Behind the replay, in order; a queue too full takes the slow-consumer path.
            peer.conn.outbox.put(frame, size)
            return
        try:
            await peer.send(frame)
        except MessageTooBig as exc:
            logger.warning("an answer of %d bytes is over the message limit", exc.size)
            await peer.send(peer.codec.encode(protocol.error(_id_of(reply), _too_big())))

    def _take_token(self, peer: Peer, name: str, method: Method) -> None:
        assert method.limit is not None
        bucket = peer.buckets.get(name)
        if bucket is None:
            calls, period = method.limit
            bucket = peer.buckets[name] = RateLimiter(calls / period, calls)
        if not bucket.allow():
            if method.close_on_limit:
                peer.closing = (CloseCode.POLICY_VIOLATION, "rate limit exceeded")
            raise RPCError(RATE_LIMITED, "Rate limit exceeded", name)

    # -- tasks: streams and concurrent calls ----------------------------------------------

    def cancel(self, peer: Peer, rid: Any) -> bool:
        """Cancel the running stream or concurrent call that answers request ``rid``;
        False when there is none (it never ran, or has answered already)."""
        task = peer.tasks.get(rid)
        if task is None or task.done():
            return False
        task.cancel()
        return True

    async def stop(self, peer: Peer) -> None:
        """Cancel every task of a connection that is gone, and wait until they stop."""
        tasks = tuple(peer.tasks.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def _start_task(
        self, peer: Peer, rid: Any, method: Method, args: list[Any], kwargs: dict[str, Any]
    ) -> None:
        """Run a stream or a concurrent call (a request when ``rid`` is given, else a
        notification) beside the connection's other messages.

        Raises:
            RPCError: ``TOO_MANY_TASKS``, or ``INVALID_REQUEST`` for an id in use.
        """
        if len(peer.tasks) >= self.max_tasks:
            raise RPCError(TOO_MANY_TASKS, "Too many running requests", {"limit": self.max_tasks})
        key = NotificationKey() if rid is None else rid
        if key in peer.tasks:
            raise RPCError(INVALID_REQUEST, "Invalid Request", f"id {rid!r} is in use")
        task = asyncio.ensure_future(self._run_task(peer, rid, method, args, kwargs))
        peer.tasks[key] = task
        task.add_done_callback(lambda t: self._task_done(peer, key, rid, t))

    def _task_done(self, peer: Peer, key: Any, rid: Any, task: asyncio.Task[None]) -> None:
        if peer.tasks.get(key) is task:
            del peer.tasks[key]
        # Cancelled before it ever ran (a cancel in the same batch): nothing answered it.
        if task.cancelled() and rid is not None and not peer.ws.closed:
            cancelled = protocol.error(rid, RPCError(REQUEST_CANCELLED, "Request cancelled"))
            self._cancel_answers.spawn(self._send_reply_if_open(peer, cancelled))

    async def _send_reply_if_open(self, peer: Peer, reply: Any) -> None:
        with contextlib.suppress(ConnectionClosed):
            await self.send_reply(peer, reply)

    async def _run_task(
        self, peer: Peer, rid: Any, method: Method, args: list[Any], kwargs: dict[str, Any]
    ) -> None:
        """A stream or a concurrent call: runs beside the connection's other messages."""
        reply: dict[str, Any]
        try:
            if method.kind == "stream":
                items = 0
                stream: AsyncIterator[Any] = method.fn(*args, **kwargs)
                try:
                    async for item in stream:
                        # Awaited: a stream runs no faster than its caller reads.
                        await self._send_item(peer, rid, item)
                        items += 1
                finally:
                    await typing.cast(Any, stream).aclose()
                reply = protocol.result(rid, items)
            else:
                reply = protocol.result(rid, await method.fn(*args, **kwargs))
        except asyncio.CancelledError:
            if peer.ws.closed:
                raise
            reply = protocol.error(rid, RPCError(REQUEST_CANCELLED, "Request cancelled"))
        except RPCError as exc:
            reply = protocol.error(rid, exc)
        except ConnectionClosed:
            return
        except Exception:
            logger.exception("RPC method failed (request %r)", rid)
            reply = protocol.error(rid, _internal_error())
        if rid is None:
            return  # a notification: nobody to answer
        if peer.tasks.get(rid) is asyncio.current_task():
            del peer.tasks[rid]  # answering: too late to cancel, and the id is free again
        await self._send_reply_if_open(peer, reply)

    async def _send_item(self, peer: Peer, rid: Any, item: Any) -> None:
        """One stream item; one that cannot go ends the stream with an internal error."""
        try:
            frame = peer.codec.encode(protocol.stream_item(rid, item))
        except TypeError as exc:
            logger.error("stream %r yielded an item that cannot be encoded: %s", rid, exc)
            raise RPCError(INTERNAL_ERROR, "Internal error") from None
        try:
            await peer.send(frame)
        except MessageTooBig as exc:
            logger.error("stream %r yielded an item of %d bytes, over the limit", rid, exc.size)
            raise RPCError(
                INTERNAL_ERROR, "Internal error", "item over the message limit"
            ) from None


def _internal_error() -> RPCError:
    return RPCError(INTERNAL_ERROR, "Internal error")


def _too_big() -> RPCError:
    return RPCError(INTERNAL_ERROR, "Internal error", "answer over the message limit")


def _id_of(reply: Any) -> Any:
    """The request id an answer replacing ``reply`` takes (None for a batch's)."""
    return reply.get("id") if isinstance(reply, dict) else None


def _run(hooks: list[Callable[[], None]]) -> None:
    """Call and empty ``hooks`` (in place: each runs once, whichever caller gets there)."""
    while hooks:
        hooks.pop(0)()


def _expired(peer: Peer) -> bool:
    """Whether the credential has expired, though its timer has not fired yet (a paused
    VM, a busy loop): then it ends now (a cheap look at every frame)."""
    identity = peer.ws.identity
    if identity is None or identity.expires_at is None or not identity.expired():
        return False
    lease = peer.ws.lease
    if lease is not None:
        lease.expire()
    return True


def _not_run(peer: Peer, request: Any) -> Any:
    """The answer to a batch item left unrun because the connection is closing."""
    if not protocol.is_request(request) or "id" not in request:
        return None
    code, reason = peer.closing or (CloseCode.UNAUTHORIZED, EXPIRED)
    if code == CloseCode.POLICY_VIOLATION:
        return protocol.error(request["id"], RPCError(RATE_LIMITED, "Rate limit exceeded"))
    return protocol.error(request["id"], RPCError(UNAUTHORIZED, "Unauthorized", reason))


def _encodable(reply: Any, codec: Codec) -> Any:
    """Replace answers the encoding cannot carry by internal errors (logged)."""

    def check(item: Any) -> Any:
        try:
            codec.encode(item)
        except TypeError as exc:
            logger.error("RPC answer to request %r cannot be encoded: %s", item.get("id"), exc)
            return protocol.error(item.get("id"), _internal_error())
        return item

    return [check(r) for r in reply] if isinstance(reply, list) else check(reply)
