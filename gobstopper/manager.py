"""Rooms and broadcast: which connections get a message, and handing it to their outboxes.

A broadcast encodes its payload once, picks the members (a room, everyone, minus
``exclude``, filtered by ``predicate``) from a snapshot that joins and leaves cannot
disturb, and puts the message in each member's bounded outbox. It never awaits a
client's socket, and one member's failure never reaches the others.

With a broker shared by other nodes (workers, hosts), a broadcast is delivered to this
node's members at once and published once to the broker; every other node that has
members in the room delivers it to its own (``cluster.py`` does everything that goes
through the broker).

Topics are node-level messages for layers above the manager (the message layer's
channels and events): ``publish_topic()`` hands bytes to the topic's handler on every
other node, each of which picks its own recipients.

Delivery, local or from another node, for the manager and the layers above it, is one
loop (``deliver``): a ``Push`` is encoded once per form (the frame every member gets,
and a binary form for members that take binary pushes, made on first need).
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any

from ._util import Throttle
from .brokers.base import Broker, BrokerHealth
from .cluster import ALL, Cluster, TopicHandler, room_channel
from .commands import CONTROL, LIMITS, USER_ROOM, control_command, read_command
from .config import Config
from .delivery import Delivery, Exclude, Payload, Push, connection_ids, deliver, encode
from .envelope import Envelope
from .errors import BrokerUnavailable, CloseCode
from .member import Connection
from .outbox import DeliveryStats, Outbox
from .presence import PresenceDiff, PresenceState, Record, check_meta, entry, state_of
from .presence import state_of_records as _state_of_records
from .presence.tracker import PresenceTracker
from .websocket import WebSocket, WebSocketState

__all__ = [
    "CONTROL",
    "LIMITS",
    "USER_ROOM",
    "Connection",
    "Delivery",
    "Push",
    "TopicHandler",
    "WebSocketManager",
    "control_command",
]

logger = logging.getLogger("gobstopper.manager")


class WebSocketManager:
    """Connections, rooms, and bounded broadcast.

    Examples:
        ```python
        @app.websocket("/ws/chat/<room>")
        async def chat(ws: WebSocket, room: str) -> None:
            await ws.accept()
            async with app.manager.connect(ws) as conn:
                await conn.join(room)
                async for message in ws:
                    await app.manager.broadcast(message.text, room=room, exclude=conn)
        ```
    """

    def __init__(self, config: Config | None = None, broker: Broker | None = None) -> None:
        self.config = config or Config.load()
        self._connections: dict[str, Connection] = {}
        self._rooms: dict[str, dict[str, Connection]] = {}
        #: How this node reaches the others; None: this process only.
        self.broker = broker
        #: This node's side of the cluster: what goes through the broker (topics for the
        #: layers above the manager, channel history, presence).
        self.cluster = Cluster(
            broker, self.config.max_message_bytes, self._from_other_node, self._rooms.__contains__
        )
        # Slow consumers and the outboxes' drops, on the logger the docs name for them.
        self._throttle = Throttle(logging.getLogger("gobstopper.outbox"))
        self.stats = DeliveryStats(
            lambda: (c.outbox.held_bytes for c in self._connections.values())
        )
        # Members as tuples, rebuilt only after a change: a broadcast iterates a
        # snapshot, so joins, leaves and departures during it are safe and cheap.
        self._room_snapshots: dict[str, tuple[Connection, ...]] = {}
        self._all_snapshot: tuple[Connection, ...] | None = None
        self.cluster.on_topic(CONTROL, self._on_control)
        # Publishers from outside (an emitter) keep within every node's message limit.
        self.cluster.advertise(LIMITS, f"max_message_bytes {self.config.max_message_bytes}")
        #: Live presence of the watched rooms (``watch_presence``).
        self.presence_tracker = PresenceTracker(
            self.cluster,
            self._records,
            self._connections,
            getattr(broker, "presence_ttl", None) or self.config.presence_ttl,
        )
        #: The message layer's endpoints on this manager, by name: each ``RPC`` adds
        #: itself, so that what addresses one from outside (the HTTP API) finds it. Typed
        #: loosely because the manager sits below the message layer and never imports it.
        self.endpoints: dict[str, Any] = {}

    # -- cluster --------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the broker and receive other nodes' messages (the app calls this)."""
        await self.cluster.start(
            lambda: [(c.id, c.entry, tuple(c.rooms)) for c in tuple(self._connections.values())]
        )
        await self.presence_tracker.start()

    async def stop(self) -> None:
        """Withdraw this node from the cluster and stop the broker (the app calls this)."""
        await self.presence_tracker.stop()
        await self.cluster.stop()

    @property
    def clustered(self) -> bool:
        """Whether other nodes share this manager's broker (then predicates cannot travel)."""
        return self.cluster.clustered

    def broker_health(self) -> BrokerHealth | None:
        """The broker's state (connected, since when, reconnections), None without one."""
        return self.cluster.health()

    # -- connections ------------------------------------------------------------------

    @asynccontextmanager
    async def connect(
        self,
        ws: WebSocket,
        id: str | None = None,
        *,
        user: str | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> AsyncIterator[Connection]:
        """Manage ``ws`` for the duration of the block; it leaves every room on exit.

        Accepts the connection if the handler has not. On a normal exit, what is queued
        for it is flushed (at most ``WS_SHUTDOWN_GRACE`` seconds) before it is released.

        Args:
            ws: the connection.
            id: its id; a random one when None.
            user: the user it belongs to (several connections may); None: the user of
                ``ws.identity`` (an auth hook's ``Identity``), if any. It joins the room
                ``user:<user>``, so that the user's connections can be reached (and
                closed: ``disconnect_user``) on every node, and presence lists it
                under that user.
            meta: what presence shows of it (JSON-able, at most
                ``GOBSTOPPER_PRESENCE_META_BYTES``); None: ``ws.identity``'s.

        Raises:
            ValueError: ``id`` is already connected to this manager, holds ``\x1f``, or
                ``meta`` is not JSON-able or too big.
        """
        identity = ws.identity
        if user is None and identity is not None:
            user = identity.user
        if meta is None and identity is not None:
            meta = identity.meta
        if meta:
            check_meta(meta, self.config.presence_meta_bytes)
        if ws.connection_state is WebSocketState.CONNECTING:
            await ws.accept()
        conn = self.add(ws, id, user=user, meta=meta)
        try:
            if user is not None:
                await conn.join(USER_ROOM + user)
            yield conn
            if not conn.closed:
                await conn.outbox.flush(self.config.shutdown_grace)
        finally:
            self.remove(conn)

    def add(
        self,
        ws: WebSocket,
        id: str | None = None,
        *,
        user: str | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> Connection:
        """Register an accepted ``ws`` (prefer ``connect()``, which always cleans up and
        joins the user's room)."""
        if id is not None and "\x1f" in id:
            raise ValueError(f"connection id {id!r} holds \\x1f, which presence entries use")
        if ws.closed:
            raise ws.closed_error()  # the client left first: an ordinary end
        if ws.connection_state is not WebSocketState.CONNECTED:
            raise RuntimeError("accept() the connection before adding it to a manager")
        conn_id = uuid.uuid4().hex if id is None else id
        if conn_id in self._connections:
            raise ValueError(f"connection id {conn_id!r} is already connected")
        conn = Connection(conn_id, ws, self)
        conn.user = user
        if meta:
            conn._meta = _normal(meta, self.config.presence_meta_bytes)
        conn.entry = entry(conn_id, user, conn._meta)
        self._connections[conn_id] = conn
        self._all_snapshot = None
        self.cluster.added(conn_id)
        ws.add_close_callback(lambda _ws: self.remove(conn))
        # A handler's own ws.close() first delivers what was queued for it.
        ws.add_before_close(lambda: conn.outbox.flush(self.config.shutdown_grace))
        return conn

    def remove(self, conn: Connection) -> None:
        """Forget ``conn``: leave its rooms, drop its queue. O(rooms of the connection)."""
        if self._connections.get(conn.id) is not conn:
            return
        del self._connections[conn.id]
        self._all_snapshot = None
        for room in conn.rooms:
            if self._discard_member(room, conn):
                self.cluster.departed(room, conn.entry)
                self.presence_tracker.left(room, conn.id)
        conn.rooms.clear()
        conn.outbox.close()
        self.cluster.removed(conn.id)

    def get(self, conn_id: str) -> Connection | None:
        return self._connections.get(conn_id)

    def __len__(self) -> int:
        return len(self._connections)

    def __contains__(self, conn_id: object) -> bool:
        return conn_id in self._connections

    # -- rooms ----------------------------------------------------------------------------

    async def join(self, conn: Connection, room: str) -> None:
        """Add ``conn`` to ``room`` (created on first join). Joining twice is harmless.

        Raises:
            ValueError: ``conn`` is not managed here, or ``room`` is another user's room
                (``user:<user>`` belongs to the connections of that user).
        """
        if self._connections.get(conn.id) is not conn:
            raise ValueError(f"connection {conn.id!r} is not managed here (closed?)")
        if room.startswith(USER_ROOM) and room != USER_ROOM + (conn.user or ""):
            # What is sent to a user's room must reach that user's connections only.
            raise ValueError(f"{room!r} is the room of a user's connections: connect(user=)")
        members = self._rooms.setdefault(room, {})
        if conn.id in members:
            return
        first = not members
        members[conn.id] = conn
        conn.rooms.add(room)
        self._room_snapshots.pop(room, None)
        tracker = self.presence_tracker
        opened = tracker.joined(room, conn.id, (conn.user, conn._meta))
        try:
            await self.cluster.joined(room, first, lambda: self._entry_in(room, conn))
        finally:
            # Cancelled too (a handler stopped, a timeout): a first join that never tells
            # the tracker would leave the room's replica unloaded, and every later
            # subscriber here waiting for it.
            tracker.subscribed(opened, self._entry_in(room, conn), first)

    def _entry_in(self, room: str, conn: Connection) -> str | None:
        """``conn``'s presence entry if it is a member of ``room``, else None."""
        return conn.entry if conn.id in self._rooms.get(room, ()) else None

    async def leave(self, conn: Connection, room: str) -> None:
        """Remove ``conn`` from ``room``; a room left empty is deleted."""
        if room in conn.rooms:
            conn.rooms.discard(room)
            self._discard_member(room, conn)
            # The tracker's note to the other nodes goes out after this node's presence
            # write (its sender runs later, in order): a node that reads after the note
            # sees the same.
            self.presence_tracker.left(room, conn.id)
            await self.cluster.left(room, conn.entry)

    def _discard_member(self, room: str, conn: Connection) -> bool:
        """Take ``conn`` out of ``room``; whether it was there."""
        members = self._rooms.get(room)
        if members is None or members.pop(conn.id, None) is None:
            return False
        self._room_snapshots.pop(room, None)
        if not members:
            del self._rooms[room]
        return True

    async def set_meta(self, conn: Connection, meta: Mapping[str, Any]) -> None:
        """Replace ``conn``'s presence meta: its entry in every room's presence, on every
        node, is rewritten, and rooms that watch presence see an ``update``.

        Raises:
            ValueError: not JSON-able, or over ``GOBSTOPPER_PRESENCE_META_BYTES``.
        """
        normal = _normal(meta, self.config.presence_meta_bytes)
        if self._connections.get(conn.id) is not conn:
            return  # gone: nothing shows it any more
        old = conn.entry
        conn._meta = normal
        conn.entry = entry(conn.id, conn.user, conn._meta)
        if conn.entry != old:
            record = (conn.user, conn._meta)
            for room in conn.rooms:
                self.cluster.rewritten(room, old, conn.entry)
                self.presence_tracker.changed(room, conn.id, record, conn.entry)

    def _records(self, room: str) -> dict[str, Record]:
        """This node's members of ``room`` as presence records."""
        return {c.id: (c.user, c._meta) for c in self._rooms.get(room, {}).values()}

    # -- presence ---------------------------------------------------------------------------

    async def presence(self, room: str) -> PresenceState:
        """Who is in ``room`` across the cluster: its users with the metas of their
        connections, and how many connections (with a user or not).

        Read from the broker (the members of a node that died without a word are gone
        within ``GOBSTOPPER_PRESENCE_TTL``); without a shared broker, this node's.

        Raises:
            BrokerUnavailable: the broker cannot be asked now.
        """
        if not self.cluster.clustered:
            return _state_of_records(self._records(room))
        assert self.broker is not None
        return state_of(await self.broker.presence(room_channel(room)))

    def watch_presence(
        self, match: Callable[[str], bool], listener: Callable[[str, PresenceDiff], None]
    ) -> None:
        """Keep a live replica of the presence of every room ``match(room)`` accepts that
        has members here, and call ``listener(room, diff)`` with each user-level change
        (``join``, ``update``, ``leave``: see ``PresenceDiff``). Each node calls its own
        listeners once per change; a listener must not block (it runs as the change is
        seen). Rooms with members already are watched from now on.

        Every node of a cluster must watch the same rooms: a node tells the others of
        its members' changes only in the rooms it watches.
        """
        self.presence_tracker.watch(match, listener)
        self.presence_tracker.rescan(self.rooms())

    def rooms(self) -> list[str]:
        """Names of the rooms that have members."""
        return list(self._rooms)

    def members(self, room: str) -> list[str]:
        """Ids of the connections in ``room``."""
        return list(self._rooms.get(room, ()))

    def count(self, room: str | None = None) -> int:
        """Members of ``room`` on this node, or all its connections when ``room`` is None."""
        if room is None:
            return len(self._connections)
        return len(self._rooms.get(room, ()))

    async def cluster_members(self, room: str | None = None) -> list[str]:
        """Ids of ``room``'s members (every connection when None) on every node.

        Members of a node that stopped without saying so are dropped once its presence
        expires (``GOBSTOPPER_PRESENCE_TTL``). Without a shared broker: this node's.

        Raises:
            BrokerUnavailable: the broker cannot be asked now.
        """
        if not self.cluster.clustered:
            return list(self._connections) if room is None else self.members(room)
        return await self.cluster.members(room)

    async def cluster_count(self, room: str | None = None) -> int:
        """How many ``cluster_members(room)`` there are."""
        return len(await self.cluster_members(room))

    def rooms_of(self, conn: Connection | str) -> frozenset[str]:
        found = self._connections.get(conn) if isinstance(conn, str) else conn
        return frozenset(found.rooms) if found is not None else frozenset()

    def _members(self, room: str | None) -> tuple[Connection, ...]:
        if room is None:
            if self._all_snapshot is None:
                self._all_snapshot = tuple(self._connections.values())
            return self._all_snapshot
        snapshot = self._room_snapshots.get(room)
        if snapshot is None:
            snapshot = tuple(self._rooms.get(room, {}).values())
            if snapshot:
                self._room_snapshots[room] = snapshot
        return snapshot

    # -- delivery --------------------------------------------------------------------------

    def encode(self, data: Payload) -> tuple[str | bytes, int]:
        """Encode a payload once: str is text, bytes-like is binary, anything else JSON.

        Raises:
            MessageTooBig: the encoded message is over ``MAX_WS_MESSAGE_BYTES``.
            TypeError: the object cannot be encoded as JSON.
        """
        return encode(data, self.config.max_message_bytes)

    async def broadcast(
        self,
        data: Payload,
        *,
        room: str | None = None,
        exclude: Exclude = None,
        predicate: Callable[[Connection], bool] | None = None,
        local: bool = False,
    ) -> Delivery:
        """Queue ``data`` for every member of ``room`` (every connection when None), on
        every node of the cluster.

        Args:
            data: str (text), bytes (binary) or a JSON-able object, encoded once.
            room: the room; None means every connection.
            exclude: a connection or id, or several, that must not get it (the sender).
            predicate: only connections for which it returns True get it. A function
                cannot travel to other nodes: with a shared broker, pass ``local=True``.
            local: deliver to this node's members only.

        Returns:
            A ``Delivery``: the number of this node's connections it was queued for,
            and whether it reached the broker (``published``, ``error``). When the
            broker is unreachable, this node's members still get it.

        Raises:
            MessageTooBig: the encoded message is over the limit; nobody gets it.
            ValueError: a ``predicate`` with a shared broker and ``local=False``.
        """
        payload, size = self.encode(data)
        ids, clustered = self.audience(exclude, predicate, local)
        cluster = self.cluster
        sent = self.deliver(self._members(room), Push(payload, size), ids, predicate)
        if not clustered:
            return Delivery(sent)
        note = cluster.envelope(payload, room=room, exclude=ids)
        return Delivery.of(sent, await cluster.publish(_channel(room), note))

    async def send_to(self, conn_id: str, data: Payload) -> bool:
        """Queue ``data`` for one connection by id, on whichever node it is connected.

        Returns:
            True if it was queued here or handed to the broker for the node that has
            the connection; False if no node has it.

        Raises:
            BrokerUnavailable: it is not here and the broker cannot be reached.
        """
        payload, size = self.encode(data)
        conn = self._connections.get(conn_id)
        if conn is not None:
            return conn.outbox.put(payload, size)
        cluster = self.cluster
        if not cluster.clustered:
            return False
        node = await cluster.node_of(conn_id)
        if node is None:
            return False
        published, error = await cluster.publish(
            "node:" + node, cluster.envelope(payload, target=conn_id)
        )
        if error is not None:
            raise BrokerUnavailable(self.broker.health().url if self.broker else "", error)
        return published

    async def disconnect(
        self, conn_id: str, code: int = CloseCode.NORMAL_CLOSURE, reason: str = ""
    ) -> bool:
        """Close one connection by id, on whichever node it is connected (under RSGI the
        client sees no code: RSGI cannot send one).

        Example: ``await app.manager.disconnect("ann#1", 4003, "banned")``.

        Returns:
            True if it was closed here or the command was handed to the node that has
            it; False if no node has it.

        Raises:
            ValueError: ``code`` is not 1000 or an application code (3000-4999), or the
                reason is over 123 bytes (a close frame's limit).
            BrokerUnavailable: it is not here and the broker cannot be reached.
        """
        command = control_command(code, reason)
        conn = self._connections.get(conn_id)
        if conn is not None:
            conn.ws.fail(code, reason)
            return True
        if not self.cluster.clustered:
            return False
        delivery = await self.cluster.publish_topic(CONTROL, command, to=conn_id)
        if delivery.error is not None:
            raise BrokerUnavailable(self.broker.health().url if self.broker else "", delivery.error)
        return delivery.published

    async def disconnect_user(
        self, user: str, code: int = CloseCode.NORMAL_CLOSURE, reason: str = ""
    ) -> Delivery:
        """Close every connection of ``user`` (``connect(..., user=...)``), on every node.

        Returns:
            A ``Delivery``: the connections closed here, and whether the other nodes
            with connections of the user were told.

        Raises:
            ValueError: as ``disconnect``.
        """
        command = control_command(code, reason)
        room = USER_ROOM + user
        closed = 0
        for conn in self._members(room):
            if conn.user == user:
                conn.ws.fail(code, reason)
                closed += 1
        if not self.cluster.clustered:
            return Delivery(closed)
        remote = await self.cluster.publish_topic(CONTROL, command, room=room)
        return Delivery(closed, remote.published, remote.error)

    def _on_control(self, note: Envelope) -> None:
        """A command from another node or process (``CONTROL``) for a connection here, or
        for the members of a room (a user's connections)."""
        if note.target is not None:
            conn = self._connections.get(note.target)
            conns: tuple[Connection, ...] = () if conn is None else (conn,)
        elif note.room is not None and note.room.startswith(USER_ROOM):
            user = note.room[len(USER_ROOM) :]
            conns = tuple(c for c in self._members(note.room) if c.user == user)
        else:
            return
        try:
            found = read_command(note.payload)
        except Exception as exc:  # whatever another process sent, this node goes on
            self._throttle.warning("skipped a control command: %s", exc)
            return
        if found is not None:
            code, reason = found
            for conn in conns:
                conn.ws.fail(code, reason)

    def audience(
        self,
        exclude: Exclude,
        predicate: Callable[[Connection], bool] | None,
        local: bool,
    ) -> tuple[frozenset[str], bool]:
        """Who a message must skip (ids), and whether it goes to the other nodes too.

        Raises:
            ValueError: a ``predicate`` with a shared broker and ``local=False`` (a
                function cannot travel to other nodes).
        """
        clustered = self.cluster.clustered and not local
        if clustered and predicate is not None:
            raise ValueError(
                "a predicate filters only this node's members: pass local=True, or send to a room"
            )
        return connection_ids(exclude), clustered

    def _from_other_node(self, channel: str, note: Envelope, payload: str | bytes) -> None:
        """A message another node published: deliver it to the members here it is for,
        as its envelope says (``target``, else ``room``, else the channel's room, else
        everyone on ``all``)."""
        if note.target is not None:
            conn = self._connections.get(note.target)
            members: tuple[Connection, ...] = () if conn is None else (conn,)
        elif note.room is not None:
            members = self._members(note.room)
        elif channel.startswith("room:"):
            members = self._members(channel[5:])  # the room the channel is for
        elif channel == ALL:
            members = self._members(None)
        else:
            return  # no recipient named, on a node's own channel
        push = Push(payload, len(note.payload))
        self.deliver(members, push, frozenset(note.exclude) if note.exclude else frozenset())

    def deliver(
        self,
        members: Iterable[Connection],
        push: Push,
        exclude: frozenset[str] = frozenset(),
        predicate: Callable[[Connection], bool] | None = None,
    ) -> int:
        """Queue ``push`` for ``members`` (see ``delivery.deliver``); how many took it."""
        return deliver(members, push, exclude, predicate, self.stats)

    def _slow(self, outbox: Outbox, why: str) -> None:
        """Close a connection as a slow consumer."""
        ws = outbox.websocket
        if ws.closed:
            return
        self.stats.slow_closed += 1
        self._throttle.warning(
            "closing slow consumer on %s: %s (%d bytes, %d messages queued)",
            ws.path,
            why,
            outbox.queued_bytes,
            outbox.queued_messages,
            extra={"event": "slow_consumer", "path": ws.path, "client": ws.client_address},
        )
        ws.fail(CloseCode.TRY_AGAIN_LATER, "slow consumer")

    # -- accounting and shutdown -----------------------------------------------------------

    @property
    def queued_bytes(self) -> int:
        """Bytes queued or in flight across all connections."""
        return sum(c.outbox.queued_bytes for c in self._connections.values())

    @property
    def queued_messages(self) -> int:
        return sum(c.outbox.queued_messages for c in self._connections.values())

    async def shutdown(self, grace: float | None = None, handshake: float = 1.0) -> None:
        """Flush every queue (at most ``grace`` seconds), then close every connection (1001),
        waiting at most ``handshake`` seconds for the clients' replies."""
        wait = self.config.shutdown_grace if grace is None else grace
        conns = list(self._connections.values())
        if not conns:
            return
        if wait > 0:
            await asyncio.gather(*(c.outbox.flush(wait) for c in conns))
        await asyncio.gather(
            *(
                c.ws.close_within(
                    CloseCode.GOING_AWAY, "server shutting down", 1.0 if wait else 0.1, handshake
                )
                for c in conns
                if not c.closed
            )
        )


def _channel(room: str | None) -> str:
    return ALL if room is None else room_channel(room)


def _normal(meta: Mapping[str, Any], limit: int) -> dict[str, Any]:
    """``meta`` as every node reads it: through JSON (keys are strings, tuples lists),
    so that this node shows what the others do.

    Raises:
        ValueError: as ``check_meta``.
    """
    found: dict[str, Any] = json.loads(check_meta(meta, limit))
    return found
