"""JSON-RPC 2.0 (https://www.jsonrpc.org/specification) over a gobstopper WebSocket:
methods, streaming methods, named events and channels, on one connection.

Example::

    rpc = RPC(app.manager)

    @rpc.method()
    async def add(a: int, b: int) -> int:
        return a + b

    @app.websocket("/rpc")
    async def endpoint(ws: WebSocket) -> None:
        await rpc.serve(ws)

The wire protocol is in ``docs/protocol.md``. Pushes from the server are JSON-RPC
notifications whose methods start with ``rpc.`` (a prefix the specification reserves):
``rpc.event``, ``rpc.message`` and ``rpc.stream``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import typing
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import msgspec
import msgspec.inspect
import msgspec.structs

from ..envelope import Envelope
from ..errors import CloseCode, ConnectionClosed, MessageTooBig
from ..manager import Connection, Delivery, Push, WebSocketManager, connection_ids
from ..security import RateLimiter
from ..websocket import State, WebSocket, WebSocketState
from . import channels
from .codec import CODECS, JSON, MSGPACK, Codec, DecodeError, json_bytes, json_loads
from .events import Event
from .guards import Guard, all_of, any_of, equals, has

__all__ = [
    "ACCESS_DENIED",
    "RATE_LIMITED",
    "REQUEST_CANCELLED",
    "RPC",
    "TOO_MANY_SUBSCRIPTIONS",
    "TOO_MANY_TASKS",
    "Event",
    "Guard",
    "RPCError",
    "all_of",
    "any_of",
    "equals",
    "has",
]

logger = logging.getLogger("gobstopper.rpc")

F = TypeVar("F", bound=Callable[..., Any])

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
ACCESS_DENIED = -32001  # a guard said no
RATE_LIMITED = -32002  # the caller is over the method's rate limit
TOO_MANY_SUBSCRIPTIONS = -32003  # the connection holds max_subscriptions already
TOO_MANY_TASKS = -32004  # the connection runs max_tasks streams and concurrent calls already
REQUEST_CANCELLED = -32800  # the caller cancelled a stream or a concurrent call
MAX_BATCH = 100  # requests in one batch; more is an invalid request

_NO_DATA: Any = object()  # an event handler that declares no data parameter

#: The room of every connection with a subscription: channel messages travel to the nodes
#: that have members in it. (A space: no channel's room can have this name.)
SUBSCRIBERS_ROOM = "channel subscribers"

#: The room a channel's (or pattern's) subscribers join: presence comes with it.
CHANNEL_ROOM = "channel:"


class RPCError(Exception):
    """An error answered to the caller: raise it from a method on purpose.

    Args:
        code: a JSON-RPC error code; applications use codes outside -32768..-32000.
        message: a short description.
        data: anything the encoding can carry that helps the caller.
    """

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def as_dict(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


Kind = Literal["call", "stream", "event", "builtin"]


@dataclass(frozen=True)
class _Method:
    fn: Callable[..., Any]
    kind: Kind
    signature: inspect.Signature  # the whole function's
    hints: dict[str, Any]  # parameters validated, by name
    inject: frozenset[str]  # parameters the framework fills: ws, conn
    requires: Guard | None = None
    limit: tuple[int, float] | None = None  # calls per period, per connection
    close_on_limit: bool = False
    concurrent: bool = False
    data_hint: Any = _NO_DATA  # events: the type of their data, when declared

    public: inspect.Signature | None = None  # the parameters a request fills
    # The fast path: the parameters as two msgspec structs (named, and positional as an
    # array), validated and bound in one C call. None when the signature has *args,
    # **kwargs, positional-only or keyword-only parameters, or defaults msgspec refuses.
    structs: tuple[type[msgspec.Struct], type[msgspec.Struct], tuple[str, ...]] | None = None

    def __post_init__(self) -> None:
        params = [p for n, p in self.signature.parameters.items() if n not in self.inject]
        object.__setattr__(self, "public", self.signature.replace(parameters=params))
        if self.kind == "event":
            return
        if any(p.kind is not inspect.Parameter.POSITIONAL_OR_KEYWORD for p in params):
            return
        fields: list[Any] = []
        for p in params:
            hint = self.hints.get(p.name, Any)
            empty = p.default is inspect.Parameter.empty
            fields.append((p.name, hint) if empty else (p.name, hint, p.default))
        try:
            named = msgspec.defstruct(
                "Params", fields, forbid_unknown_fields=True, omit_defaults=False
            )
            positional = msgspec.defstruct("Params", fields, array_like=True)
        except (TypeError, ValueError):
            return
        names = tuple(p.name for p in params)
        object.__setattr__(self, "structs", (named, positional, names))


class _Peer:
    """One connection served by an RPC: its codec, subscriptions and running calls."""

    __slots__ = ("buckets", "closing", "codec", "conn", "subscriptions", "tasks", "ws")

    def __init__(self, conn: Connection, codec: Codec) -> None:
        self.conn = conn
        self.ws = conn.ws
        self.codec = codec
        self.subscriptions: set[str] = set()
        self.tasks: dict[Any, asyncio.Task[None]] = {}
        self.buckets: dict[str, RateLimiter] = {}
        self.closing = False  # over a rate limit that closes: after the answer, close

    async def send(self, frame: str | bytes) -> None:
        if isinstance(frame, str):
            await self.ws.send_text(frame)
        else:
            await self.ws.send_bytes(frame)


class _Anonymous:
    """The key of a running notification in a connection's tasks: nobody can cancel it."""

    __slots__ = ()


def _retrieve(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.debug("an answer could not be sent: %r", task.exception())


def _packer(raw: bytes) -> Callable[[], bytes | None]:
    """The msgpack form of a JSON push, made when a msgpack subscriber first needs it."""

    def pack() -> bytes | None:
        try:
            return typing.cast(bytes, MSGPACK.encode(json_loads(raw)))
        except (TypeError, ValueError, OverflowError) as exc:
            logger.warning("a push msgpack cannot carry was not sent: %s", exc)
            return None

    return pack


class RPC:
    """An endpoint: a table of methods and events, channels, and the loop that serves them.

    Args:
        manager: the connection manager (``app.manager``) whose rooms and broker carry
            events and channel messages to every node. A private one when None.
        name: distinguishes several endpoints on one manager.
        max_subscriptions: channels and patterns one connection may subscribe to.
        max_tasks: streams and concurrent calls one connection may have running; past
            it a new one is answered ``TOO_MANY_TASKS``.
        can_subscribe: ``(state, pattern) -> bool``: whether a connection may subscribe.
        client_publish: whether clients may publish (``rpc.publish``): False, True, or
            ``(state, channel) -> bool``.
        encodings: the encodings clients may choose (``?encoding=msgpack``).
    """

    def __init__(
        self,
        manager: WebSocketManager | None = None,
        *,
        name: str = "rpc",
        max_subscriptions: int = 100,
        max_tasks: int = 100,
        can_subscribe: Callable[[State, str], bool] | None = None,
        client_publish: bool | Callable[[State, str], bool] = False,
        encodings: Iterable[str] = ("json", "msgpack"),
    ) -> None:
        self.manager = manager if manager is not None else WebSocketManager()
        self.max_subscriptions = max_subscriptions
        self.max_tasks = max_tasks
        self.can_subscribe = can_subscribe
        self.client_publish = client_publish
        self.encodings = tuple(encodings)
        for encoding in self.encodings:
            if encoding not in CODECS:
                raise ValueError(f"unknown encoding {encoding!r}: choose from {sorted(CODECS)}")
        self._methods: dict[str, _Method] = {}
        self._peers: dict[str, _Peer] = {}
        # Subscribers by channel name and by pattern, in subscription order (dicts as
        # ordered sets); what a channel's publication reaches is cached as one tuple
        # until the next subscription change, as the manager does for rooms.
        self._exact: dict[str, dict[_Peer, None]] = {}
        self._wild: dict[str, dict[_Peer, None]] = {}
        self._matches: dict[str, tuple[str, ...]] = {}  # channel -> local patterns it matches
        self._targets: dict[str, tuple[Connection, ...]] = {}  # channel -> its subscribers, once
        self._topic = "messages:" + name
        self.manager.on_topic(self._topic, self._on_topic)
        builtins: list[tuple[str, Callable[..., Any], dict[str, Any]]] = [
            ("rpc.subscribe", self._subscribe, {"channel": str}),
            ("rpc.unsubscribe", self._unsubscribe, {"channel": str}),
            ("rpc.publish", self._client_publish, {"channel": str, "echo": bool}),
            ("rpc.cancel", self._cancel, {"id": str | int | float | None}),
            ("rpc.info", self._info, {}),
        ]
        for key, fn, hints in builtins:
            self._methods[key] = _Method(
                fn, "builtin", inspect.signature(fn), hints, frozenset(("peer",))
            )

    # -- registration -----------------------------------------------------------------

    def method(
        self,
        name: str | None = None,
        *,
        requires: Guard | None = None,
        limit: int | None = None,
        period: float = 1.0,
        close_on_limit: bool = False,
        concurrent: bool = False,
    ) -> Callable[[F], F]:
        """Register an async function, or an async generator (a stream), as a method.

        Parameters are validated from their type hints by msgspec (``int``, ``str``,
        ``list[X]``, ``X | None``, dataclasses, ``TypedDict``, ``msgspec.Struct``...);
        an object parameter arrives converted. Parameters named ``ws`` and ``conn``
        get the caller's WebSocket and ``Connection``.

        Args:
            name: the method's name (default: the function's).
            requires: a guard on the caller's ``ws.state``; when it fails the caller
                gets ``ACCESS_DENIED``.
            limit: calls allowed per ``period`` seconds per connection; past it the
                caller gets ``RATE_LIMITED`` (and the connection is closed with 1008
                when ``close_on_limit``).
            concurrent: run each call as its own task, so that a slow call does not
                hold up the connection's next messages (answers may then come out of
                order; ``rpc.cancel`` can stop it). Streams always run so.

        Raises:
            TypeError: not async, the name is taken or reserved, or a hint is not
                one msgspec can validate.
        """

        def decorator(fn: F) -> F:
            kind: Kind
            if inspect.isasyncgenfunction(fn):
                kind = "stream"
            elif inspect.iscoroutinefunction(typing.cast(Any, fn)):
                kind = "call"
            else:
                raise TypeError(f"RPC method {fn!r} must be an async function or generator")
            self._register(
                name or fn.__name__,
                fn,
                kind,
                requires=requires,
                limit=None if limit is None else (limit, period),
                close_on_limit=close_on_limit,
                concurrent=concurrent or kind == "stream",
            )
            return fn

        return decorator

    def on(
        self,
        event: str,
        *,
        requires: Guard | None = None,
        limit: int | None = None,
        period: float = 1.0,
        close_on_limit: bool = False,
    ) -> Callable[[F], F]:
        """Register a handler for the named event ``event``.

        The handler takes an ``Event`` and, optionally, a second parameter that gets
        the event's data validated against its type hint. What it returns answers the
        client when the event was sent as a request (with an ``id``).

        Example::

            @rpc.on("sum_event")
            async def on_sum(event: Event, numbers: list[int]) -> None:
                await event.reply("sum_result", sum(numbers))

        Raises:
            TypeError: not async, or the name is taken or reserved.
        """

        def decorator(fn: F) -> F:
            if not inspect.iscoroutinefunction(typing.cast(Any, fn)):
                raise TypeError(f"event handler {fn!r} must be an async function")
            self._register(
                event,
                fn,
                "event",
                requires=requires,
                limit=None if limit is None else (limit, period),
                close_on_limit=close_on_limit,
                concurrent=False,
            )
            return fn

        return decorator

    def _register(self, key: str, fn: Callable[..., Any], kind: Kind, **options: Any) -> None:
        if key.startswith("rpc."):
            raise TypeError(f"{key!r}: names starting with 'rpc.' are reserved")
        if key in self._methods:
            raise TypeError(f"RPC method or event {key!r} is already registered")
        signature = inspect.signature(fn)
        try:
            hints = typing.get_type_hints(fn)
        except NameError as exc:  # a hint naming a type defined where it cannot be seen
            raise TypeError(f"{key!r}: cannot resolve its type hints: {exc}") from None
        hints.pop("return", None)
        data_hint = _NO_DATA
        if kind == "event":
            names = list(signature.parameters)
            if not names:
                raise TypeError(f"event handler {fn!r} must take the Event")
            hints.pop(names[0], None)
            if len(names) > 1:
                data_hint = hints.get(names[1], Any)
            hints = {}
            inject: frozenset[str] = frozenset()
        else:
            inject = frozenset(n for n in ("ws", "conn") if n in signature.parameters)
            for n in inject:
                hints.pop(n, None)
        for param, hint in [*hints.items(), *([("data", data_hint)] if kind == "event" else [])]:
            if hint is _NO_DATA:
                continue
            try:
                info = msgspec.inspect.type_info(hint)  # fails now, not at the first call
            except TypeError as exc:
                raise TypeError(f"{key!r}: cannot validate parameter {param!r}: {exc}") from None
            if isinstance(info, msgspec.inspect.CustomType):
                raise TypeError(
                    f"{key!r}: cannot validate parameter {param!r} of type {hint!r}: use "
                    "builtins, a dataclass, a TypedDict or a msgspec.Struct"
                )
        self._methods[key] = _Method(
            fn, kind, signature, hints, inject, data_hint=data_hint, **options
        )

    # -- serving --------------------------------------------------------------------------

    async def serve(self, ws: WebSocket, *, id: str | None = None) -> None:
        """Serve ``ws`` until it closes: accept it if needed, register it with the manager
        (as ``id``, or a random id), answer its requests, deliver its pushes.

        The client picks the encoding with ``?encoding=msgpack`` (JSON otherwise); an
        unknown one is refused with HTTP 400 (before accept) or closed with 1003. An
        ``id`` already connected to this worker is refused with HTTP 409 (or closed with
        1008 if the handler accepted first): give each connection its own id.
        """
        codec = await self._negotiate(ws)
        if codec is None:
            return
        if id is not None and id in self.manager:
            # One connection per id on a worker: the newcomer is refused (a client retries
            # with backoff, so a reconnection gets in once the old socket is noticed gone).
            logger.info("refused a second connection with id %r", id)
            if ws.connection_state is WebSocketState.CONNECTING:
                await ws.close(409)
            else:
                await ws.close(CloseCode.POLICY_VIOLATION, "id already connected")
            return
        async with self.manager.connect(ws, id=id) as conn:
            peer = _Peer(conn, codec)
            conn.binary_pushes = codec.binary
            self._peers[conn.id] = peer
            try:
                async for message in ws:
                    if message.data is not None:
                        await self._receive(peer, message.data)
            except ConnectionClosed:
                pass
            finally:
                await self._forget(peer)

    async def _negotiate(self, ws: WebSocket) -> Codec | None:
        name = ws.query_params.get("encoding") or "json"
        if name in self.encodings:
            return CODECS[name]
        if ws.connection_state is WebSocketState.CONNECTING:
            await ws.close(400)
        else:
            await ws.send_text(
                _json_text(_error(None, RPCError(INVALID_REQUEST, "Unknown encoding", name)))
            )
            await ws.close(CloseCode.UNSUPPORTED_DATA, "unknown encoding")
        return None

    async def _forget(self, peer: _Peer) -> None:
        self._peers.pop(peer.conn.id, None)
        for pattern in tuple(peer.subscriptions):
            self._unindex(peer, pattern)
        peer.subscriptions.clear()
        tasks = tuple(peer.tasks.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _receive(self, peer: _Peer, raw: str | bytes) -> None:
        reply = await self._dispatch(raw, peer, peer.ws, peer.codec)
        if reply is not None:
            await self._send_reply(peer, reply)
        if peer.closing:
            await peer.ws.close(CloseCode.POLICY_VIOLATION, "rate limit exceeded")

    async def _send_reply(self, peer: _Peer, reply: Any) -> None:
        try:
            frame = peer.codec.encode(reply)
        except (TypeError, ValueError, OverflowError):
            reply = _encodable(reply, peer.codec)
            frame = peer.codec.encode(reply)
        try:
            await peer.send(frame)
        except MessageTooBig as exc:
            logger.warning("an answer of %d bytes is over the message limit", exc.size)
            rid = reply.get("id") if isinstance(reply, dict) else None
            too_big = RPCError(INTERNAL_ERROR, "Internal error", "answer over the message limit")
            await peer.send(peer.codec.encode(_error(rid, too_big)))

    async def handle(self, raw: str | bytes, ws: WebSocket | None = None) -> str | None:
        """One inbound JSON message: the JSON reply to send, or None (notifications only).

        For tests and custom loops; ``serve()`` is the whole endpoint (events,
        channels and streams need it).
        """
        reply = await self._dispatch(raw, None, ws, JSON)
        if reply is None:
            return None
        try:
            return typing.cast(str, JSON.encode(reply))
        except (TypeError, ValueError, OverflowError):
            return typing.cast(str, JSON.encode(_encodable(reply, JSON)))

    async def _dispatch(
        self, raw: str | bytes, peer: _Peer | None, ws: WebSocket | None, codec: Codec
    ) -> Any:
        try:
            payload = codec.decode(raw)
        except (DecodeError, RecursionError):
            return _error(None, RPCError(PARSE_ERROR, "Parse error"))
        if isinstance(payload, list):
            if not payload or len(payload) > MAX_BATCH:
                why = "empty batch" if not payload else f"over {MAX_BATCH} requests"
                return _error(None, RPCError(INVALID_REQUEST, "Invalid Request", why))
            replies = [r for r in [await self._one(item, peer, ws) for item in payload] if r]
            return replies or None
        return await self._one(payload, peer, ws)

    async def _one(self, request: Any, peer: _Peer | None, ws: WebSocket | None) -> Any:
        if (
            not isinstance(request, dict)
            or request.get("jsonrpc") != "2.0"
            or not isinstance(request.get("method"), str)
            or ("params" in request and not isinstance(request["params"], (list, dict)))
            or ("id" in request and not _valid_id(request["id"]))
        ):
            rid = (
                request.get("id")
                if isinstance(request, dict) and _valid_id(request.get("id"))
                else None
            )
            return _error(rid, RPCError(INVALID_REQUEST, "Invalid Request"))
        notification = "id" not in request
        rid = request.get("id")
        name: str = request["method"]
        try:
            method = self._methods.get(name)
            if method is None or (peer is None and method.kind in ("event", "builtin")):
                raise RPCError(METHOD_NOT_FOUND, "Method not found", name)
            if method.requires is not None and (ws is None or not method.requires(ws.state)):
                raise RPCError(ACCESS_DENIED, "Access denied", name)
            if method.limit is not None and ws is not None:
                self._take_token(peer, ws, name, method)
            params = request.get("params")
            if method.kind == "event":
                assert peer is not None
                args: list[Any] = [Event(self, peer.conn, name, params)]
                if method.data_hint is not _NO_DATA:
                    args.append(_convert("data", params, method.data_hint))
                kwargs: dict[str, Any] = {}
            else:
                args, kwargs = _bind(method, params, ws, peer)
            if method.kind == "stream" and notification:
                return None  # nowhere to send the items
            if method.concurrent and peer is not None:
                self._start_task(peer, None if notification else rid, method, args, kwargs)
                return None  # the task answers
            if method.kind == "stream":
                raise RPCError(INVALID_REQUEST, "Invalid Request", "streams need serve()")
            result = await method.fn(*args, **kwargs)
        except RPCError as exc:
            return None if notification else _error(rid, exc)
        except ConnectionClosed:
            raise
        except Exception:
            logger.exception("RPC method %r failed", name)
            return None if notification else _error(rid, RPCError(INTERNAL_ERROR, "Internal error"))
        return None if notification else {"jsonrpc": "2.0", "result": result, "id": rid}

    def _start_task(
        self,
        peer: _Peer,
        rid: Any,
        method: _Method,
        args: list[Any],
        kwargs: dict[str, Any],
    ) -> None:
        """Run a stream or a concurrent call (a request when ``rid`` is given, else a
        notification) beside the connection's other messages."""
        if len(peer.tasks) >= self.max_tasks:
            raise RPCError(TOO_MANY_TASKS, "Too many running requests", {"limit": self.max_tasks})
        key = _Anonymous() if rid is None else rid
        if key in peer.tasks:
            raise RPCError(INVALID_REQUEST, "Invalid Request", f"id {rid!r} is in use")
        task = asyncio.ensure_future(self._run_task(peer, rid, method, args, kwargs))
        peer.tasks[key] = task
        task.add_done_callback(lambda t: self._task_done(peer, key, rid, t))

    def _task_done(self, peer: _Peer, key: Any, rid: Any, task: asyncio.Task[None]) -> None:
        if peer.tasks.get(key) is task:
            del peer.tasks[key]
        # Cancelled before it ever ran (a cancel in the same batch): nothing answered it.
        if task.cancelled() and rid is not None and not peer.ws.closed:
            cancelled = _error(rid, RPCError(REQUEST_CANCELLED, "Request cancelled"))
            answer = asyncio.ensure_future(self._send_reply(peer, cancelled))
            answer.add_done_callback(_retrieve)

    async def _run_task(
        self, peer: _Peer, rid: Any, method: _Method, args: list[Any], kwargs: dict[str, Any]
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
                reply = {"jsonrpc": "2.0", "result": items, "id": rid}
            else:
                result = await method.fn(*args, **kwargs)
                reply = {"jsonrpc": "2.0", "result": result, "id": rid}
        except asyncio.CancelledError:
            if peer.ws.closed:
                raise
            reply = _error(rid, RPCError(REQUEST_CANCELLED, "Request cancelled"))
        except RPCError as exc:
            reply = _error(rid, exc)
        except ConnectionClosed:
            return
        except Exception:
            logger.exception("RPC method failed (request %r)", rid)
            reply = _error(rid, RPCError(INTERNAL_ERROR, "Internal error"))
        if rid is None:
            return  # a notification: nobody to answer
        if peer.tasks.get(rid) is asyncio.current_task():
            del peer.tasks[rid]  # answering: too late to cancel, and the id is free again
        with contextlib.suppress(ConnectionClosed):
            await self._send_reply(peer, reply)

    async def _send_item(self, peer: _Peer, rid: Any, item: Any) -> None:
        """One stream item; one that cannot go ends the stream with an internal error."""
        note = _notification("rpc.stream", {"id": rid, "item": item})
        try:
            frame = peer.codec.encode(note)
        except (TypeError, ValueError, OverflowError) as exc:
            logger.error("stream %r yielded an item that cannot be encoded: %s", rid, exc)
            raise RPCError(INTERNAL_ERROR, "Internal error") from None
        try:
            await peer.send(frame)
        except MessageTooBig as exc:
            logger.error("stream %r yielded an item of %d bytes, over the limit", rid, exc.size)
            raise RPCError(
                INTERNAL_ERROR, "Internal error", "item over the message limit"
            ) from None

    def _take_token(self, peer: _Peer | None, ws: WebSocket, name: str, method: _Method) -> None:
        assert method.limit is not None
        buckets = peer.buckets if peer is not None else _loose_buckets(ws)
        bucket = buckets.get(name)
        if bucket is None:
            calls, period = method.limit
            bucket = buckets[name] = RateLimiter(calls / period, calls)
        if not bucket.allow():
            if method.close_on_limit and peer is not None:
                peer.closing = True
            raise RPCError(RATE_LIMITED, "Rate limit exceeded", name)

    # -- built-in methods ------------------------------------------------------------------

    async def _subscribe(self, peer: _Peer, channel: str) -> dict[str, Any]:
        if not channels.valid_pattern(channel):
            why = f"not a channel or pattern: {channel!r}"
            raise RPCError(INVALID_PARAMS, "Invalid params", why)
        if channel not in peer.subscriptions:
            if len(peer.subscriptions) >= self.max_subscriptions:
                raise RPCError(
                    TOO_MANY_SUBSCRIPTIONS,
                    "Too many subscriptions",
                    {"limit": self.max_subscriptions},
                )
            if self.can_subscribe is not None and not self.can_subscribe(peer.ws.state, channel):
                raise RPCError(ACCESS_DENIED, "Access denied", channel)
            peer.subscriptions.add(channel)
            index = self._wild if channels.is_pattern(channel) else self._exact
            subscribers = index.setdefault(channel, {})
            if not subscribers and index is self._wild:
                self._matches.clear()  # a new pattern: matches computed before are stale
            subscribers[peer] = None
            self._targets.clear()
            with contextlib.suppress(ValueError):  # the connection may have gone meanwhile
                if len(peer.subscriptions) == 1:
                    # Publications reach the nodes with subscribers: they are in this room.
                    await peer.conn.join(SUBSCRIBERS_ROOM)
                await peer.conn.join(CHANNEL_ROOM + channel)  # presence, cluster-wide
        return {"channel": channel, "subscriptions": len(peer.subscriptions)}

    async def _unsubscribe(self, peer: _Peer, channel: str) -> dict[str, Any]:
        if channel in peer.subscriptions:
            peer.subscriptions.discard(channel)
            self._unindex(peer, channel)
            await peer.conn.leave(CHANNEL_ROOM + channel)
            if not peer.subscriptions:
                await peer.conn.leave(SUBSCRIBERS_ROOM)
        return {"channel": channel, "subscriptions": len(peer.subscriptions)}

    def _unindex(self, peer: _Peer, channel: str) -> None:
        index = self._wild if channels.is_pattern(channel) else self._exact
        subscribers = index.get(channel)
        if subscribers is None:
            return
        subscribers.pop(peer, None)
        self._targets.clear()
        if not subscribers:
            del index[channel]
            if index is self._wild:
                self._matches.clear()

    async def _client_publish(
        self, peer: _Peer, channel: str, data: Any = None, echo: bool = False
    ) -> int:
        allowed = self.client_publish
        if callable(allowed):
            allowed = allowed(peer.ws.state, channel)
        if not allowed:
            raise RPCError(ACCESS_DENIED, "Access denied", "publishing is not allowed here")
        if not channels.valid_channel(channel):
            raise RPCError(INVALID_PARAMS, "Invalid params", f"not a channel name: {channel!r}")
        try:
            delivery = await self.publish(channel, data, exclude=None if echo else peer.conn.id)
        except (MessageTooBig, TypeError) as exc:
            raise RPCError(INVALID_PARAMS, "Invalid params", str(exc)) from None
        return int(delivery)

    async def _info(self, peer: _Peer) -> dict[str, Any]:
        return {
            "id": peer.conn.id,
            "encoding": peer.codec.name,
            "subscriptions": sorted(peer.subscriptions),
        }

    async def _cancel(self, peer: _Peer, id: str | int | float | None) -> bool:
        task = peer.tasks.get(id)
        if task is None or task.done():
            return False
        task.cancel()
        return True

    # -- pushes ----------------------------------------------------------------------------

    async def publish(
        self,
        channel: str,
        data: Any = None,
        *,
        exclude: Connection | str | Iterable[Connection | str] | None = None,
        predicate: Callable[[Connection], bool] | None = None,
        local: bool = False,
    ) -> Delivery:
        """Send ``data`` to every subscriber of ``channel`` (exact or by pattern), on
        every node. Each subscriber gets it once, however many of its patterns match.

        Args:
            channel: a channel name (no wildcards).
            exclude: connections or ids that must not get it.
            predicate: only connections for which it returns True get it; with a
                shared broker it cannot travel: pass ``local=True``.
            local: this node's subscribers only.

        Returns:
            A ``Delivery``: subscribers reached on this node, and whether the other
            nodes were (``published``, ``error``).

        Raises:
            ValueError: not a channel name, or a predicate with a shared broker.
            MessageTooBig: the message is over ``MAX_WS_MESSAGE_BYTES``.
            TypeError: ``data`` cannot be encoded.
        """
        if not channels.valid_channel(channel):
            raise ValueError(f"not a channel name: {channel!r}")
        raw, push = self._push("rpc.message", {"channel": channel, "data": data})
        ids = connection_ids(exclude)
        clustered = self.manager.clustered and not local
        if clustered and predicate is not None:
            raise ValueError("a predicate cannot travel to other nodes: pass local=True")
        sent = self.manager.deliver(self._channel_peers(channel), push, ids, predicate)
        if not clustered:
            return Delivery(sent)
        # Every node with a subscriber (which matches patterns itself), and no other.
        remote = await self.manager.publish_topic(
            self._topic, raw, room=SUBSCRIBERS_ROOM, channel=channel, exclude=ids
        )
        return _merged(sent, remote)

    async def emit(
        self,
        event: str,
        data: Any = None,
        *,
        room: str | None = None,
        to: str | None = None,
        exclude: Connection | str | Iterable[Connection | str] | None = None,
        sender: str | None = None,
        predicate: Callable[[Connection], bool] | None = None,
        local: bool = False,
    ) -> Delivery:
        """Push the named event to clients: one connection (``to``), a room's members,
        or every connection of this endpoint, on every node.

        Args:
            event: the event's name (clients listen with ``on(event, ...)``).
            data: its data.
            room: only this room's members.
            to: only this connection id.
            exclude: connections or ids that must not get it.
            sender: the ``from`` the clients see (None: the server).
            predicate: filter on this node's connections (needs ``local=True`` with a
                shared broker).
            local: this node's connections only.

        Raises:
            ValueError: both ``room`` and ``to``, or a predicate that cannot travel.
            MessageTooBig: over ``MAX_WS_MESSAGE_BYTES``.
        """
        if room is not None and to is not None:
            raise ValueError("pass room or to, not both")
        raw, push = self._push("rpc.event", {"event": event, "data": data, "from": sender})
        ids = connection_ids(exclude)
        clustered = self.manager.clustered and not local
        if clustered and predicate is not None:
            raise ValueError("a predicate cannot travel to other nodes: pass local=True")
        sent = self.manager.deliver(self._event_peers(room, to), push, ids, predicate)
        if not clustered or (to is not None and (sent or to in self.manager)):
            return Delivery(sent)  # ``to`` is here (or was refused here): nobody else has it
        # Only the nodes concerned: those with members in the room, or the target's.
        remote = await self.manager.publish_topic(self._topic, raw, room=room, to=to, exclude=ids)
        return _merged(sent, remote)

    def subscriptions(self, conn_id: str) -> frozenset[str]:
        """The channels and patterns a connection of this node subscribes to."""
        peer = self._peers.get(conn_id)
        return frozenset(peer.subscriptions) if peer is not None else frozenset()

    async def subscribers(self, channel: str) -> list[str]:
        """Ids of the connections subscribed to ``channel`` (that exact name or pattern),
        on every node (through the manager's presence)."""
        return await self.manager.cluster_members(CHANNEL_ROOM + channel)

    def _push(self, method: str, params: dict[str, Any]) -> tuple[bytes, Push]:
        """Encode a push for every encoding offered, before anyone gets it: what one of
        them cannot carry fails here, for everyone (``TypeError``, ``MessageTooBig``)."""
        note = _notification(method, params)
        raw = json_bytes(note)
        packed = None
        if "msgpack" in self.encodings:
            try:
                packed = typing.cast(bytes, MSGPACK.encode(note))
            except (ValueError, OverflowError) as exc:
                raise TypeError(f"msgpack cannot carry this data: {exc}") from None
        limit = self.manager.config.max_message_bytes
        size = max(len(raw), len(packed or b""))
        if size > limit:
            raise MessageTooBig(size, limit)
        return raw, Push(raw.decode(), len(raw), packed)

    def _channel_peers(self, channel: str) -> tuple[Connection, ...]:
        targets = self._targets.get(channel)
        if targets is not None:
            return targets
        found = dict(self._exact.get(channel, {}))
        if self._wild:
            patterns = self._matches.get(channel)
            if patterns is None:
                patterns = tuple(p for p in self._wild if channels.matches(p, channel))
                if len(self._matches) > 10_000:
                    self._matches.clear()  # bounded: channel names may be endless
                self._matches[channel] = patterns
            for pattern in patterns:
                found.update(self._wild.get(pattern, {}))  # a peer matching twice: once
        targets = tuple(peer.conn for peer in found)
        if len(self._targets) > 10_000:
            self._targets.clear()
        self._targets[channel] = targets
        return targets

    def _event_peers(self, room: str | None, to: str | None) -> Iterable[Connection]:
        if to is not None:
            peer = self._peers.get(to)
            return () if peer is None else (peer.conn,)
        if room is None:
            return tuple(peer.conn for peer in self._peers.values())
        peers = self._peers
        return [p.conn for p in (peers.get(i) for i in self.manager.members(room)) if p is not None]

    def _on_topic(self, note: Envelope) -> None:
        """Another node published a channel message or an event: deliver to ours."""
        raw = note.payload
        push = Push(raw.decode(), len(raw), _packer(raw))
        exclude = frozenset(note.exclude)
        conns: Iterable[Connection]
        if note.channel is not None:
            conns = self._channel_peers(note.channel)
        else:
            conns = self._event_peers(note.room, note.target)
        self.manager.deliver(conns, push, exclude)


def _json_text(obj: Any) -> str:
    return typing.cast(str, JSON.encode(obj))


def _notification(method: str, params: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "method": method, "params": params}


def _merged(sent: int, remote: Delivery) -> Delivery:
    return Delivery(sent, remote.published, remote.error)


def _loose_buckets(ws: WebSocket) -> dict[str, RateLimiter]:
    # handle() without serve(): the buckets live on the connection's state.
    buckets: dict[str, RateLimiter] | None = getattr(ws.state, "_rpc_buckets", None)
    if buckets is None:
        buckets = {}
        ws.state._rpc_buckets = buckets
    return buckets


def _valid_id(value: Any) -> bool:
    return (
        value is None
        or isinstance(value, str)
        or (isinstance(value, (int, float)) and not isinstance(value, bool))
    )


def _convert(name: str, value: Any, hint: Any) -> Any:
    try:
        return msgspec.convert(value, hint)
    except msgspec.ValidationError as exc:
        raise RPCError(INVALID_PARAMS, "Invalid params", f"{name}: {exc}") from None


def _bind(
    method: _Method, params: list[Any] | dict[str, Any] | None, ws: WebSocket | None, peer: Any
) -> tuple[list[Any], dict[str, Any]]:
    extra: dict[str, Any] = {}
    if method.kind == "builtin":
        extra["peer"] = peer
    else:
        if "ws" in method.inject:
            extra["ws"] = ws
        if "conn" in method.inject:
            extra["conn"] = peer.conn if peer is not None else None
    if method.structs is not None:
        named, positional, names = method.structs
        try:
            if isinstance(params, list):
                values = msgspec.convert(params, positional)
            else:
                values = msgspec.convert(params or {}, named)
        except msgspec.ValidationError as exc:
            raise RPCError(INVALID_PARAMS, "Invalid params", str(exc)) from None
        if not extra:  # the struct's fields are the parameters, in order
            return list(msgspec.structs.astuple(values)), {}
        kwargs = {name: getattr(values, name) for name in names}
        kwargs.update(extra)
        return [], kwargs
    public = method.public
    assert public is not None
    try:
        bound = public.bind(*params) if isinstance(params, list) else public.bind(**(params or {}))
    except TypeError as exc:
        raise RPCError(INVALID_PARAMS, "Invalid params", str(exc)) from None
    arguments = bound.arguments
    for name, value in arguments.items():
        hint = method.hints.get(name)
        if hint is None:
            continue
        kind = public.parameters[name].kind
        if kind is inspect.Parameter.VAR_POSITIONAL:
            arguments[name] = tuple(_convert(name, v, hint) for v in value)
        elif kind is inspect.Parameter.VAR_KEYWORD:
            arguments[name] = {k: _convert(name, v, hint) for k, v in value.items()}
        else:
            arguments[name] = _convert(name, value, hint)
    if not extra:
        return list(bound.args), dict(bound.kwargs)
    # The injected parameters take their places in the whole signature.
    merged = {
        n: extra[n] if n in extra else arguments[n]
        for n in method.signature.parameters
        if n in extra or n in arguments
    }
    whole = inspect.BoundArguments(method.signature, merged)
    return list(whole.args), dict(whole.kwargs)


def _encodable(reply: Any, codec: Codec) -> Any:
    """Replace answers the encoding cannot carry by internal errors (logged)."""

    def check(item: Any) -> Any:
        try:
            codec.encode(item)
        except (TypeError, ValueError, OverflowError) as exc:
            logger.error("RPC answer to request %r cannot be encoded: %s", item.get("id"), exc)
            return _error(item.get("id"), RPCError(INTERNAL_ERROR, "Internal error"))
        return item

    return [check(r) for r in reply] if isinstance(reply, list) else check(reply)


def _error(rid: Any, exc: RPCError) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "error": exc.as_dict(), "id": rid}
