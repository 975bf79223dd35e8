"""Rooms and broadcast: which connections get a message, and handing it to their outboxes.

A broadcast encodes its payload once, picks the members (a room, everyone, minus
``exclude``, filtered by ``predicate``) from a snapshot that joins and leaves cannot
disturb, and puts the message in each member's bounded outbox. It never awaits a
client's socket, and one member's failure never reaches the others.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any

from .config import Config
from .errors import CloseCode, MessageTooBig
from .outbox import DeliveryStats, Outbox, Throttle
from .websocket import State, WebSocket, WebSocketState

__all__ = ["Connection", "WebSocketManager"]

logger = logging.getLogger("gobstopper.manager")

Payload = str | bytes | bytearray | memoryview | Any


class Connection:
    """A WebSocket registered with a manager: its id, its rooms and its outbox."""

    __slots__ = ("_manager", "id", "outbox", "rooms", "ws")

    def __init__(self, conn_id: str, ws: WebSocket, manager: WebSocketManager) -> None:
        self.id = conn_id
        self.ws = ws
        self.rooms: set[str] = set()
        self._manager = manager
        self.outbox = Outbox(ws, manager.config, manager._slow, manager.stats, manager._throttle)

    @property
    def state(self) -> State:
        """The WebSocket's free namespace (``conn.state.user``), seen by predicates."""
        return self.ws.state

    @property
    def closed(self) -> bool:
        return self.ws.closed

    async def join(self, room: str) -> None:
        await self._manager.join(self, room)

    async def leave(self, room: str) -> None:
        await self._manager.leave(self, room)

    async def send(self, data: Payload) -> bool:
        """Queue a message for this connection only, in order with broadcasts."""
        payload, size = self._manager.encode(data)
        return self.outbox.put(payload, size)

    def __repr__(self) -> str:
        return f"<Connection {self.id} rooms={sorted(self.rooms)}>"


class WebSocketManager:
    """Connections, rooms, and bounded broadcast.

    Example::

        @app.websocket("/ws/chat/<room>")
        async def chat(ws: WebSocket, room: str) -> None:
            await ws.accept()
            async with app.manager.connect(ws) as conn:
                await conn.join(room)
                async for message in ws:
                    await app.manager.broadcast(message.text, room=room, exclude=conn)
    """

    def __init__(self, config: Config | None = None) -> None:
        self.config = config or Config.load()
        self.stats = DeliveryStats()
        self._throttle = Throttle()
        self._connections: dict[str, Connection] = {}
        self._rooms: dict[str, dict[str, Connection]] = {}
        # Members as tuples, rebuilt only after a change: a broadcast iterates a
        # snapshot, so joins, leaves and departures during it are safe and cheap.
        self._room_snapshots: dict[str, tuple[Connection, ...]] = {}
        self._all_snapshot: tuple[Connection, ...] | None = None

    # -- connections ------------------------------------------------------------------

    @asynccontextmanager
    async def connect(self, ws: WebSocket, id: str | None = None) -> AsyncIterator[Connection]:
        """Manage ``ws`` for the duration of the block; it leaves every room on exit.

        Accepts the connection if the handler has not. On a normal exit, what is queued
        for it is flushed (at most ``WS_SHUTDOWN_GRACE`` seconds) before it is released.

        Args:
            ws: the connection.
            id: its id (e.g. a user id); a random one when None.

        Raises:
            ValueError: ``id`` is already connected to this manager.
        """
        if ws.connection_state is WebSocketState.CONNECTING:
            await ws.accept()
        conn = self.add(ws, id)
        try:
            yield conn
            if not conn.closed:
                await conn.outbox.flush(self.config.shutdown_grace)
        finally:
            self.remove(conn)

    def add(self, ws: WebSocket, id: str | None = None) -> Connection:
        """Register an accepted ``ws`` (prefer ``connect()``, which always cleans up)."""
        if ws.closed:
            raise ws._closed_error()  # the client left first: an ordinary end
        if ws.connection_state is not WebSocketState.CONNECTED:
            raise RuntimeError("accept() the connection before adding it to a manager")
        conn_id = uuid.uuid4().hex if id is None else id
        if conn_id in self._connections:
            raise ValueError(f"connection id {conn_id!r} is already connected")
        conn = Connection(conn_id, ws, self)
        self._connections[conn_id] = conn
        self._all_snapshot = None
        ws._add_close_callback(lambda _ws: self.remove(conn))
        # A handler's own ws.close() first delivers what was queued for it.
        ws._before_close.append(lambda: conn.outbox.flush(self.config.shutdown_grace))
        return conn

    def remove(self, conn: Connection) -> None:
        """Forget ``conn``: leave its rooms, drop its queue. O(rooms of the connection)."""
        if self._connections.get(conn.id) is not conn:
            return
        del self._connections[conn.id]
        self._all_snapshot = None
        for room in conn.rooms:
            self._discard_member(room, conn)
        conn.rooms.clear()
        conn.outbox.close()

    def get(self, conn_id: str) -> Connection | None:
        return self._connections.get(conn_id)

    def __len__(self) -> int:
        return len(self._connections)

    def __contains__(self, conn_id: object) -> bool:
        return conn_id in self._connections

    # -- rooms ----------------------------------------------------------------------------

    async def join(self, conn: Connection, room: str) -> None:
        """Add ``conn`` to ``room`` (created on first join). Joining twice is harmless."""
        if self._connections.get(conn.id) is not conn:
            raise ValueError(f"connection {conn.id!r} is not managed here (closed?)")
        members = self._rooms.setdefault(room, {})
        if conn.id not in members:
            members[conn.id] = conn
            conn.rooms.add(room)
            self._room_snapshots.pop(room, None)

    async def leave(self, conn: Connection, room: str) -> None:
        """Remove ``conn`` from ``room``; a room left empty is deleted."""
        if room in conn.rooms:
            conn.rooms.discard(room)
            self._discard_member(room, conn)

    def _discard_member(self, room: str, conn: Connection) -> None:
        members = self._rooms.get(room)
        if members is not None and members.pop(conn.id, None) is not None:
            self._room_snapshots.pop(room, None)
            if not members:
                del self._rooms[room]

    def rooms(self) -> list[str]:
        """Names of the rooms that have members."""
        return list(self._rooms)

    def members(self, room: str) -> list[str]:
        """Ids of the connections in ``room``."""
        return list(self._rooms.get(room, ()))

    def count(self, room: str | None = None) -> int:
        """Members of ``room``, or all connections when ``room`` is None."""
        if room is None:
            return len(self._connections)
        return len(self._rooms.get(room, ()))

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
        payload: str | bytes
        if isinstance(data, str):
            payload = data
            size = len(data) if data.isascii() else len(data.encode("utf-8", "surrogatepass"))
        elif isinstance(data, (bytes, bytearray, memoryview)):
            payload = bytes(data)
            size = len(payload)
        else:
            payload = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
            size = len(payload) if payload.isascii() else len(payload.encode())
        if size > self.config.max_message_bytes:
            raise MessageTooBig(size, self.config.max_message_bytes)
        return payload, size

    async def broadcast(
        self,
        data: Payload,
        *,
        room: str | None = None,
        exclude: Connection | str | Iterable[Connection | str] | None = None,
        predicate: Callable[[Connection], bool] | None = None,
    ) -> int:
        """Queue ``data`` for every member of ``room`` (every connection when None).

        Args:
            data: str (text), bytes (binary) or a JSON-able object, encoded once.
            room: the room; None means every connection of this manager.
            exclude: a connection or id, or several, that must not get it (the sender).
            predicate: only connections for which it returns True get it.

        Returns:
            How many connections it was queued for.

        Raises:
            MessageTooBig: the encoded message is over the limit; nobody gets it.
        """
        payload, size = self.encode(data)
        return self._deliver(self._members(room), payload, size, _ids(exclude), predicate)

    async def send_to(self, conn_id: str, data: Payload) -> bool:
        """Queue ``data`` for one connection by id. Returns False if it is not here."""
        payload, size = self.encode(data)
        conn = self._connections.get(conn_id)
        return conn is not None and conn.outbox.put(payload, size)

    def _deliver(
        self,
        members: tuple[Connection, ...],
        payload: str | bytes,
        size: int,
        exclude: frozenset[str],
        predicate: Callable[[Connection], bool] | None,
    ) -> int:
        sent = 0
        if not exclude and predicate is None:  # the common case, kept lean
            for conn in members:
                if conn.outbox.put(payload, size):
                    sent += 1
            return sent
        for conn in members:
            if exclude and conn.id in exclude:
                continue
            if predicate is not None:
                try:
                    if not predicate(conn):
                        continue
                except Exception:
                    logger.exception("broadcast predicate failed for %s; skipped", conn.id)
                    continue
            if conn.outbox.put(payload, size):
                sent += 1
        return sent

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
        )
        ws._fail(CloseCode.TRY_AGAIN_LATER, "slow consumer")

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
                c.ws._close_bounded(
                    CloseCode.GOING_AWAY, "server shutting down", 1.0 if wait else 0.1, handshake
                )
                for c in conns
                if not c.closed
            )
        )


def _ids(exclude: Connection | str | Iterable[Connection | str] | None) -> frozenset[str]:
    if exclude is None:
        return frozenset()
    if isinstance(exclude, Connection):
        return frozenset((exclude.id,))
    if isinstance(exclude, str):
        return frozenset((exclude,))
    return frozenset(e.id if isinstance(e, Connection) else e for e in exclude)
