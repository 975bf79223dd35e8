"""JSON-RPC 2.0 (https://www.jsonrpc.org/specification) over a gobstopper WebSocket:
methods, streaming methods, named events and channels, on one connection.

Examples:
    ```python
    rpc = RPC(app.manager)

    @rpc.method()
    async def add(a: int, b: int) -> int:
        return a + b

    @app.websocket("/rpc")
    async def endpoint(ws: WebSocket) -> None:
        await rpc.serve(ws)
    ```

The wire protocol is in ``docs/protocol.md``. Pushes from the server are JSON-RPC
notifications whose methods start with ``rpc.`` (a prefix the specification reserves):
``rpc.event``, ``rpc.message`` and ``rpc.stream``.

``RPC`` is the facade: the decorators, ``serve()``, the built-in ``rpc.*`` methods and
the push API. The work is done by one module per job: ``protocol`` (the messages),
``binding`` (parameters from type hints), ``dispatch`` (the method table, batches,
tasks, rate limits), ``subscriptions`` (who a channel reaches) and ``pushes`` (publish
and emit, on this node and the others).
"""

from __future__ import annotations

import inspect
import logging
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from .._util import TaskSet
from ..delivery import Exclude
from ..errors import BrokerUnavailable, CloseCode, ConnectionClosed, MessageTooBig
from ..history.base import Position
from ..manager import Connection, Delivery, WebSocketManager
from ..presence import PresenceState
from ..websocket import State, WebSocket, WebSocketState
from . import channels, credentials, protocol
from .binding import Kind
from .codec import CODECS
from .control import ConnectionControl
from .dispatch import Dispatcher, Peer
from .events import Event
from .guards import Guard, all_of, any_of, equals, has
from .history import History, parse_since
from .negotiation import negotiate
from .openrpc import Discovery
from .presence import ChannelPresence
from .protocol import (
    ACCESS_DENIED,
    INTERNAL_ERROR,
    INVALID_PARAMS,
    RATE_LIMITED,
    REQUEST_CANCELLED,
    TOO_MANY_SUBSCRIPTIONS,
    TOO_MANY_TASKS,
    RPCError,
)
from .pushes import CHANNEL_ROOM, Pushes
from .subscriptions import SubscriptionIndex

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

#: The ids a push skips when it skips nobody.
_NOBODY: frozenset[str] = frozenset()


class RPC:
    """An endpoint: a table of methods and events, channels, and the loop that serves them.

    Args:
        manager: the connection manager (``app.manager``) whose rooms and broker carry
            events and channel messages to every node. A private one when None.
        name: distinguishes several endpoints on one manager (a second endpoint with
            the same name on one manager is a ``ValueError``); the HTTP API finds the
            endpoint by it.
        max_subscriptions: channels and patterns one connection may subscribe to.
        max_tasks: streams and concurrent calls one connection may have running; past
            it a new one is answered ``TOO_MANY_TASKS``.
        can_subscribe: ``(state, pattern) -> bool``: whether a connection may subscribe.
        client_publish: whether clients may publish (``rpc.publish``): False, True, or
            ``(state, channel) -> bool``.
        encodings: the encodings clients may choose (``?encoding=msgpack``).
        title: the API's name in its OpenRPC document (``rpc.discover``).
        version: the API's version in that document.
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
        title: str = "gobstopper",
        version: str = "0.0.0",
    ) -> None:
        self.manager = manager if manager is not None else WebSocketManager()
        if name in self.manager.endpoints:
            raise ValueError(f"this manager has an endpoint named {name!r} already")
        #: The endpoint's name: what the HTTP API's commands call it (``"endpoint"``).
        self.name = name
        self.max_subscriptions = max_subscriptions
        self.can_subscribe = can_subscribe
        self.client_publish = client_publish
        self.encodings = tuple(encodings)
        for encoding in self.encodings:
            if encoding not in CODECS:
                raise ValueError(f"unknown encoding {encoding!r}: choose from {sorted(CODECS)}")
        self._connections: dict[str, Connection] = {}  # this endpoint's, on this node
        self._subscriptions: SubscriptionIndex[Connection] = SubscriptionIndex()
        self._pushes = Pushes(
            self.manager,
            "messages:" + name,
            self.encodings,
            self._subscriptions,
            self._connections,
        )
        self._dispatcher = Dispatcher(self, max_tasks)
        #: Subscribe and unsubscribe commands for this endpoint's connections, from here,
        #: other nodes and processes (an emitter, the HTTP API).
        self._control = ConnectionControl(self.manager, name, self._pushes, self._connections)
        #: The OpenRPC document of this endpoint (``docs/openrpc.md``).
        self.discovery = Discovery(self._dispatcher.methods, title, version)
        builtins: list[tuple[str, Callable[..., Any], dict[str, Any]]] = [
            (protocol.SUBSCRIBE, self._subscribe, {"channel": str, "since": Any}),
            (protocol.HISTORY, self._history, {"channel": str, "limit": int | None, "since": Any}),
            (protocol.UNSUBSCRIBE, self._unsubscribe, {"channel": str}),
            (protocol.PUBLISH, self._client_publish, {"channel": str, "echo": bool}),
            (protocol.CANCEL, self._cancel, {"id": str | int | float | None}),
            (protocol.INFO, self._info, {}),
            (protocol.PRESENCE, self._read_presence, {"channel": str}),
            (protocol.DISCOVER, self.discovery.answer, {}),
        ]
        for key, fn, hints in builtins:
            self._dispatcher.register_builtin(key, fn, hints)
        # Each refresh runs the auth hooks: a few a second at most.
        self._dispatcher.register_builtin(
            protocol.REFRESH, credentials.refresh, {"token": str}, limit=credentials.REFRESH_LIMIT
        )
        self._expiries = TaskSet(logger, "closing an expired connection")
        self.manager.endpoints[name] = self
        self._presence = ChannelPresence(self.manager, self._pushes)

    @property
    def max_tasks(self) -> int:
        """Streams and concurrent calls one connection may have running."""
        return self._dispatcher.max_tasks

    @max_tasks.setter
    def max_tasks(self, value: int) -> None:
        self._dispatcher.max_tasks = value

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
            self._dispatcher.register(
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

        Examples:
            ```python
            @rpc.on("sum_event")
            async def on_sum(event: Event, numbers: list[int]) -> None:
                await event.reply("sum_result", sum(numbers))
            ```

        Raises:
            TypeError: not async, or the name is taken or reserved.
        """

        def decorator(fn: F) -> F:
            if not inspect.iscoroutinefunction(typing.cast(Any, fn)):
                raise TypeError(f"event handler {fn!r} must be an async function")
            self._dispatcher.register(
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

    # -- serving --------------------------------------------------------------------------

    async def serve(
        self,
        ws: WebSocket,
        *,
        id: str | None = None,
        user: str | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> None:
        """Serve ``ws`` until it closes: accept it if needed, register it with the manager
        (as ``id``, or a random id, and as one of ``user``'s connections with ``meta``,
        by default those of ``ws.identity``: see ``WebSocketManager.connect``), answer
        its requests, deliver its pushes.

        The client picks the encoding with ``?encoding=msgpack`` (JSON otherwise); an
        unknown one is refused with HTTP 400 (before accept) or closed with 1003. An
        ``id`` already connected to this worker is refused with HTTP 409 (or closed with
        1008 if the handler accepted first): give each connection its own id.

        When ``ws.identity`` expires, the client is asked for a new credential first
        (``rpc.refresh_due``, answered by ``rpc.refresh``), and told (the ``rpc.close``
        event) before it is closed with 4001; see ``docs/auth.md``.
        """
        codec = await negotiate(ws, self.encodings)
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
        async with self.manager.connect(ws, id=id, user=user, meta=meta) as conn:
            peer = Peer(conn, codec)
            conn.binary_pushes = codec.binary
            self._connections[conn.id] = conn
            credentials.watch(peer, self._expiries)
            receive = self._dispatcher.receive
            try:
                async for message in ws:
                    if message.data is not None:
                        await receive(peer, message.data)
            except ConnectionClosed:
                pass
            finally:
                await self._forget(peer)

    async def _forget(self, peer: Peer) -> None:
        """A connection has gone: drop its subscriptions and stop its tasks (the manager
        takes it out of its rooms)."""
        self._connections.pop(peer.conn.id, None)
        self._subscriptions.forget(peer.conn)
        self._pushes.history.forget(peer.conn)
        await self._dispatcher.stop(peer)

    # -- built-in methods ------------------------------------------------------------------

    async def _subscribe(self, peer: Peer, channel: str, since: Any = None) -> dict[str, Any]:
        if not channels.valid_pattern(channel):
            why = f"not a channel or pattern: {channel!r}"
            raise RPCError(INVALID_PARAMS, "Invalid params", why)
        position = None if since is None else parse_since(since)
        conn = peer.conn
        if channel not in self._subscriptions.subscriptions(conn):
            if self._count(conn) >= self.max_subscriptions:
                limit = {"limit": self.max_subscriptions}
                raise RPCError(TOO_MANY_SUBSCRIPTIONS, "Too many subscriptions", limit)
            self._check_access(peer, channel)
        presence = self._presence
        tracked = presence.tracks(channel)
        if tracked:
            # Diffs before its answer are older than the state the answer gives: they
            # are not sent to it.
            presence.joining(channel, conn.id)
        answered = False
        try:
            try:
                started, finish = await self._pushes.subscribe(conn, channel, position)
            except BrokerUnavailable as exc:
                logger.warning("subscribing to %r: history unavailable: %s", channel, exc)
                raise RPCError(INTERNAL_ERROR, "Internal error", "history unavailable") from None
            if finish is not None:
                # Replayed publications were queued for it: the answer goes behind them,
                # then what was held meanwhile, then it is live.
                peer.answer_in_queue = True
                peer.after_answer.append(finish)
            answer = {"channel": channel, "subscriptions": self._count(conn), **started}
            if tracked:
                await presence.ready(channel)
                # The state is taken as the answer is queued (the rest of a batch may
                # run first), and diffs go to this connection from then on: every one
                # queued before the answer is older than its state, every one after newer.
                peer.answer_in_queue = True
                peer.before_answer.append(lambda: presence.answer(answer, channel, conn.id))
                peer.unanswered.append(lambda: self._pushes.unsubscribe(conn, channel))
                answered = True
            return answer
        finally:
            if tracked and not answered:
                presence.joined(channel, conn.id)

    async def _history(
        self, peer: Peer, channel: str, limit: int | None = None, since: Any = None
    ) -> dict[str, Any]:
        if not channels.valid_channel(channel):
            raise RPCError(INVALID_PARAMS, "Invalid params", f"not a channel name: {channel!r}")
        self._check_access(peer, channel)
        if limit is not None and limit < 0:
            raise RPCError(INVALID_PARAMS, "Invalid params", "limit must be 0 or more")
        position = None if since is None else parse_since(since)
        try:
            return (await self.history(channel, since=position, limit=limit)).as_dict()
        except ValueError as exc:
            raise RPCError(INVALID_PARAMS, "Invalid params", str(exc)) from None
        except BrokerUnavailable as exc:
            logger.warning("reading the history of %r: %s", channel, exc)
            raise RPCError(INTERNAL_ERROR, "Internal error", "history unavailable") from None

    def _count(self, conn: Connection) -> int:
        """The subscriptions ``conn`` holds, those being resumed included."""
        return self._subscriptions.count(conn) + self._pushes.history.resuming(conn)

    def _check_access(self, peer: Peer, channel: str) -> None:
        if self.can_subscribe is not None and not self.can_subscribe(peer.ws.state, channel):
            raise RPCError(ACCESS_DENIED, "Access denied", channel)

    async def _read_presence(self, peer: Peer, channel: str) -> dict[str, Any]:
        if not channels.valid_channel(channel):
            raise RPCError(INVALID_PARAMS, "Invalid params", f"not a channel name: {channel!r}")
        self._check_access(peer, channel)
        try:
            state = await self.presence(channel)
        except BrokerUnavailable as exc:
            logger.warning("reading the presence of %r: %s", channel, exc)
            raise RPCError(INTERNAL_ERROR, "Internal error", "presence unavailable") from None
        return state.as_dict(channel)

    async def _unsubscribe(self, peer: Peer, channel: str) -> dict[str, Any]:
        await self._pushes.unsubscribe(peer.conn, channel)
        return {"channel": channel, "subscriptions": self._subscriptions.count(peer.conn)}

    async def _client_publish(
        self, peer: Peer, channel: str, data: Any = None, echo: bool = False
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
        except BrokerUnavailable as exc:  # a channel with history whose store is away
            logger.warning("publishing to %r: %s", channel, exc)
            raise RPCError(INTERNAL_ERROR, "Internal error", "history unavailable") from None
        return int(delivery)

    async def _info(self, peer: Peer) -> dict[str, Any]:
        return {
            "id": peer.conn.id,
            "encoding": peer.codec.name,
            "subscriptions": sorted(self._subscriptions.subscriptions(peer.conn)),
        }

    async def _cancel(self, peer: Peer, id: str | int | float | None) -> bool:
        return self._dispatcher.cancel(peer, id)

    # -- pushes ----------------------------------------------------------------------------

    async def publish(
        self,
        channel: str,
        data: Any = None,
        *,
        exclude: Exclude = None,
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
        manager = self.manager
        if exclude is None and predicate is None:  # the usual publication: to everyone
            ids, clustered = _NOBODY, manager.cluster.clustered and not local
        else:
            ids, clustered = manager.audience(exclude, predicate, local)
        return await self._pushes.publish(channel, data, ids, predicate, clustered)

    async def emit(
        self,
        event: str,
        data: Any = None,
        *,
        room: str | None = None,
        to: str | None = None,
        exclude: Exclude = None,
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
            ValueError: both ``room`` and ``to``, a predicate that cannot travel, or an
                event name starting with ``rpc.`` (the protocol's own: ``rpc.close``).
            MessageTooBig: over ``MAX_WS_MESSAGE_BYTES``.
        """
        protocol.check_event_name(event)
        if room is not None and to is not None:
            raise ValueError("pass room or to, not both")
        ids, clustered = self.manager.audience(exclude, predicate, local)
        return await self._pushes.emit(event, data, sender, room, to, ids, predicate, clustered)

    # -- history -----------------------------------------------------------------------------

    def keep_history(self, pattern: str, *, size: int = 100, ttl: float = 300.0) -> None:
        """Keep the last ``size`` publications of every channel ``pattern`` matches, each
        for ``ttl`` seconds. Their pushes then carry a position (``offset``, ``epoch``),
        and a client that reconnects resumes from its last one (``rpc.subscribe`` with
        ``since``), missing nothing kept, or is told it cannot (``recovered: false``).
        The first pattern registered that matches a channel decides.

        Example: ``rpc.keep_history("chat.*", size=1000, ttl=300)``

        Raises:
            ValueError: not a channel or pattern, or a size or ttl that is not positive.
        """
        self._pushes.history.keep(pattern, size, ttl)

    async def history(
        self, channel: str, *, since: Position | None = None, limit: int | None = None
    ) -> History:
        """Read ``channel``'s kept publications: the last ``limit`` (all kept when None),
        or with ``since``, the first ``limit`` after it.

        Raises:
            ValueError: ``channel`` keeps no history.
            BrokerUnavailable: the store cannot be read.
        """
        return await self._pushes.history.read(channel, since, limit)

    async def subscribe_connection(self, conn_id: str, channel: str) -> bool:
        """Subscribe a connection of this endpoint to ``channel`` (a name or a pattern) on
        the server's side, on whichever node it is connected: it gets the channel's
        publications from then on as if it had subscribed (without an answer; limits
        and ``can_subscribe`` are not asked: the server decides).

        Returns:
            True if subscribed here or handed to the node that has the connection;
            False if no node has it.

        Raises:
            ValueError: not a channel name or pattern.
            BrokerUnavailable: it is not here and the broker cannot be reached.
        """
        return await self._control.command(conn_id, "subscribe", channel)

    async def unsubscribe_connection(self, conn_id: str, channel: str) -> bool:
        """Undo ``subscribe_connection`` (or the client's own subscription), wherever the
        connection is. Returns and raises as ``subscribe_connection``."""
        return await self._control.command(conn_id, "unsubscribe", channel)

    def subscriptions(self, conn_id: str) -> frozenset[str]:
        """The channels and patterns a connection of this node subscribes to."""
        conn = self._connections.get(conn_id)
        if conn is None:
            return frozenset()
        return frozenset(self._subscriptions.subscriptions(conn))

    # -- presence ------------------------------------------------------------------------

    def track_presence(self, pattern: str) -> None:
        """Push the presence changes of every channel ``pattern`` matches to its
        subscribers (``rpc.presence_diff``), and answer their ``rpc.subscribe`` with the
        channel's presence. A subscriber with a user (``Identity``, ``serve(user=)``) is
        listed under it; a second connection of a user is an ``update``, not a
        ``join``. Call it the same way on every node.

        Example: ``rpc.track_presence("chat.*")``

        Raises:
            ValueError: not a channel name or pattern.
        """
        self._presence.track(pattern)

    def tracks_presence(self, channel: str) -> bool:
        """Whether ``channel`` (a name, not a pattern) tracks presence."""
        return self._presence.tracks(channel)

    async def presence(self, channel: str) -> PresenceState:
        """Who subscribes to ``channel`` (that exact name), across the cluster: users with
        the metas of their connections, and the count of connections.

        Raises:
            ValueError: not a channel name.
            BrokerUnavailable: the broker cannot be asked now.
        """
        return await self._presence.read(channel)

    async def subscribers(self, channel: str) -> list[str]:
        """Ids of the connections subscribed to ``channel`` (that exact name or pattern),
        on every node (through the manager's presence)."""
        return await self.manager.cluster_members(CHANNEL_ROOM + channel)
